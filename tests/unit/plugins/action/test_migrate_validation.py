# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrate action plugin refuses bad input on the controller, before the module is sent."""

from __future__ import annotations

from unittest import mock

import pytest

from ansible_collections.mailops.imap.plugins.action import migrate as action
from ansible_collections.mailops.imap.plugins.module_utils import _argspec
from ansible_collections.mailops.imap.plugins.module_utils._engine import config

SECRET = "pa'ss\"w\\ördX9"
MASTER = "M4sterSecretZ7"

GOOD = {
    "local_user": "alice",
    "remote_user": "alice@old.example.org",
    "remote_password": SECRET,
    "remote_host": "imap.old.example.org",
    "target": {"master_password": MASTER},
}


def args(**changes):
    data = dict(GOOD)
    data.update(changes)
    return data


def problem(**changes) -> str:
    message = action.validate_migrate_args(args(**changes))
    assert message is not None
    assert SECRET not in message and MASTER not in message
    assert "Traceback" not in message
    assert message.endswith(".")
    return message


def test_good_args():
    assert action.validate_migrate_args(args()) is None
    assert action.validate_migrate_args(dict(GOOD, target=None)) is None
    assert action.validate_migrate_args(
        args(
            remote_security="ssl", remote_port=993, folders="all_except", exclude=["^Spam$", "", "Trash"],
            delete_remote="older_than", delete_remote_days=30, sieve=False, special_use_mapping=False,
            delivery="lmtp", validate_certs=False, ca_file="/etc/ssl/ca.pem",
            target={"name": "ns8", "host": "::1", "port": 10143, "security": "none", "master_user": "vmail",
                    "master_password": MASTER, "master_separator": "%", "lmtp_host": "/run/dovecot/lmtp", "lmtp_port": 24},
            config_dir="/tmp/c", state_dir="/tmp/s",
        )
    ) is None


def test_port_out_of_range():
    assert problem(remote_port=70000).startswith("remote_port: 70000 is not a port number")
    assert "target.port" in problem(target={"port": 70000, "master_password": MASTER})
    assert "target.lmtp_port" in problem(target={"lmtp_port": 0})


def test_port_not_a_number():
    assert "remote_port" in problem(remote_port="imap")


def test_unknown_security():
    message = problem(remote_security="tls")
    assert "remote_security" in message and "starttls, ssl, none" in message and "tls" in message
    assert "security" in problem(target={"security": "tls", "master_password": MASTER})


def test_invalid_regex_named():
    message = problem(folders="all_except", exclude=["^Spam$", "Trash("])
    assert "exclude" in message and "entry 2" in message and "Trash(" in message


def test_missing_required():
    message = action.validate_migrate_args({"remote_password": SECRET})
    assert message is not None and SECRET not in message
    for field in ("local_user", "remote_user", "remote_host"):
        assert field in message


def test_unknown_options():
    message = problem(remote_pasword="x", target={"master_pasword": "y"})
    assert message.startswith("Unsupported parameters for (mailops.imap.migrate) module: ")
    assert "remote_pasword" in message and "target.master_pasword" in message


def test_bad_host():
    assert problem(remote_host="imap example.org").startswith("remote_host")
    assert action.validate_migrate_args(args(remote_host="почта.пример.рф")) is None
    assert action.validate_migrate_args(args(remote_host="2001:db8::1")) is None


def test_older_than_needs_days():
    assert "delete_remote_days" in problem(delete_remote="older_than")
    assert "delete_remote_days" in problem(delete_remote="older_than", delete_remote_days=0)


def test_secret_never_echoed_when_it_is_the_bad_value():
    # a password that happens to equal a bad value elsewhere is masked, not shown
    message = problem(remote_password="tlsX", remote_security="tlsX")
    assert "tlsX" not in message


def test_several_problems_reported_together():
    message = problem(remote_security="tls", folders="some")
    assert "remote_security" in message and "folders" in message


# --- the spec matches the engine --------------------------------------------------------------------


def test_spec_covers_task_and_target_fields():
    spec = _argspec.migrate_argument_spec()
    assert set(_argspec.MIGRATE_TASK_OPTIONS) <= set(config.TASK_FIELDS)
    assert set(spec["target"]["options"]) == set(config.TARGET_FIELDS)
    assert set(spec) == set(_argspec.MIGRATE_TASK_OPTIONS) | {"target", "config_dir", "state_dir"}
    for name, option in spec.items():
        if name in ("remote_password",):
            assert option["no_log"] is True
        elif name != "target":
            assert not option.get("no_log"), name
    assert spec["target"]["options"]["master_password"]["no_log"] is True


def test_spec_defaults_match_engine_defaults():
    spec = _argspec.migrate_argument_spec()
    engine = config.Task(local_user="a", remote_user="b", remote_host="c")
    for name in _argspec.MIGRATE_TASK_OPTIONS:
        if "default" in spec[name]:
            expected = list(engine.exclude) if name == "exclude" else getattr(engine, name)
            assert spec[name]["default"] == expected, name
    # an option without a default is required, secret or decided by the engine (ports, days)
    assert {n for n in _argspec.MIGRATE_TASK_OPTIONS if "default" not in spec[n]} == {
        "local_user", "remote_user", "remote_password", "remote_host", "remote_port", "ca_file", "delete_remote_days"}
    target_defaults = {n: o.get("default") for n, o in spec["target"]["options"].items()}
    assert config.parse_target(target_defaults) == config.Target()


def test_spec_is_a_fresh_copy():
    first = _argspec.migrate_argument_spec()
    first["exclude"]["default"].append("x")
    assert _argspec.migrate_argument_spec()["exclude"]["default"] == []


# --- the action plugin --------------------------------------------------------------------------------


def make_action(task_args, check_mode=False):
    task = mock.MagicMock()
    task.args = task_args
    task.async_val = 0
    task.check_mode = check_mode
    task.action = "mailops.imap.migrate"
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    connection.has_native_async = False
    plugin = action.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock())
    plugin._execute_module = mock.MagicMock(return_value={"changed": True, "status": "success"})
    plugin._remove_tmp_path = mock.MagicMock()
    return plugin


def test_run_refuses_before_sending_the_module():
    plugin = make_action(args(remote_port=70000))
    result = plugin.run(task_vars={})
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("remote_port:")
    assert SECRET not in repr(result) and MASTER not in repr(result)
    plugin._execute_module.assert_not_called()


@pytest.mark.parametrize("check_mode", [False, True])
def test_run_sends_the_module(check_mode):
    plugin = make_action(args(), check_mode=check_mode)
    result = plugin.run(task_vars={"x": 1})
    assert result["changed"] is True and result["status"] == "success"
    call = plugin._execute_module.call_args
    assert call.kwargs["module_name"] == "mailops.imap.migrate"
    assert call.kwargs["module_args"] == args()
    assert call.kwargs["wrap_async"] is False
    plugin._remove_tmp_path.assert_called_once()
