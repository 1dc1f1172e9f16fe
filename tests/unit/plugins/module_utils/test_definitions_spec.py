# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument specs of mail_target and sync_task: every definition field, and nothing required with state: absent."""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailops.imap.plugins.module_utils import _definitions_spec as spec
from ansible_collections.mailops.imap.plugins.module_utils._engine import config


def validate(argument_spec, required_if, args):
    return ArgumentSpecValidator(argument_spec, required_if=required_if).validate(args)


def test_every_definition_field_is_an_option():
    target = spec.mail_target_argument_spec()
    assert set(target) == set(config.TARGET_FIELDS) | {"state", "config_dir", "state_dir"}
    task = spec.sync_task_argument_spec()
    assert set(task) == set(config.TASK_FIELDS) | {"state", "validate", "config_dir", "state_dir"}
    assert task["remote_password"]["no_log"] is True and target["master_password"]["no_log"] is True
    assert [name for name, option in task.items() if option.get("required")] == ["name"]
    assert not any(option.get("required") for option in target.values())


def test_fresh_copies():
    first = spec.sync_task_argument_spec()
    first["exclude"]["default"].append("x")
    first["local_user"]["required"] = True
    assert spec.sync_task_argument_spec()["exclude"]["default"] == []
    assert "required" not in spec.sync_task_argument_spec()["local_user"]


def test_state_absent_needs_only_the_name():
    result = validate(spec.sync_task_argument_spec(), spec.sync_task_required_if(), {"name": "alice", "state": "absent"})
    assert not result.error_messages
    result = validate(spec.mail_target_argument_spec(), spec.mail_target_required_if(), {"state": "absent"})
    assert not result.error_messages and result.validated_parameters["name"] == "default"


def test_state_present_needs_the_account_and_the_secret():
    result = validate(spec.sync_task_argument_spec(), spec.sync_task_required_if(), {"name": "alice"})
    message = " ".join(result.error_messages)
    for field in spec.TASK_REQUIRED_WHEN_PRESENT:
        assert field in message
    result = validate(spec.mail_target_argument_spec(), spec.mail_target_required_if(), {})
    assert "master_password" in " ".join(result.error_messages)


def test_defaults_parse_as_the_engine_defaults():
    params = validate(spec.sync_task_argument_spec(), spec.sync_task_required_if(), {
        "name": "alice", "local_user": "a", "remote_user": "b", "remote_password": "c", "remote_host": "h.example.org",
    }).validated_parameters
    assert params["validate"] is False and params["target"] == "default"
    parsed = config.parse_task({field: params[field] for field in config.TASK_FIELDS})
    assert parsed == config.Task(name="alice", local_user="a", remote_user="b", remote_password="c", remote_host="h.example.org")
