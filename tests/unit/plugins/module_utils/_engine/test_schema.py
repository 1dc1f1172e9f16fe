# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schema of task and target fields: argument specs, CSV columns, docs and the role's specs all come from it."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailops.imap.plugins.doc_fragments import fields as fragment
from ansible_collections.mailops.imap.plugins.module_utils import _argspec, _definitions_spec, _units
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, schema
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[5]
Face = schema.Face
ACCOUNT = {"local_user": "alice", "remote_user": "alice@old.example.org", "remote_password": "pw", "remote_host": "imap.example.org"}


# The options of each module that are not fields of its face (its own options, documented in the module).
OWN = {
    Face.MIGRATE: {"target", "task", "accounts", "accounts_file", "parallel", "config_dir", "state_dir"},
    Face.TASK: {"tasks", "purge", "state", "validate", "config_dir", "state_dir"},
    Face.TARGET: {"state", "config_dir", "state_dir"},
}


def _spec_of(face):
    """The argument spec options a module offers for ``face`` (as the modules build them)."""
    if face is Face.MIGRATE:
        spec = _argspec.migrate_argument_spec()
    elif face is Face.ACCOUNT:
        return _argspec.migrate_argument_spec()["accounts"]["options"]
    elif face is Face.TASK:
        spec = _definitions_spec.sync_task_module_argument_spec()
    elif face is Face.TASK_ELEMENT:
        return _definitions_spec.sync_task_module_argument_spec()["tasks"]["options"]
    else:
        spec = _definitions_spec.mail_target_argument_spec()
    return {name: option for name, option in spec.items() if name not in OWN[face]}


MODULE_FACES = (Face.MIGRATE, Face.ACCOUNT, Face.TASK, Face.TASK_ELEMENT, Face.TARGET)


@pytest.mark.parametrize("face", MODULE_FACES)
def test_each_module_offers_exactly_the_fields_of_its_face(face):
    cls = schema.Target if face is Face.TARGET else schema.Task
    offered = _spec_of(face)
    assert list(offered) == [name for name in schema.fields(cls) if face in schema.meta(cls, name).faces]
    for name, option in offered.items():
        field = schema.meta(cls, name)
        assert option["type"] == field.type and option.get("choices") == (list(field.choices) if field.choices else None)
        assert option.get("no_log", False) is field.no_log
        if face in schema.INHERITING:  # a field left out takes the module call's value: no default, not required here
            assert "default" not in option and (option.get("required", False) is (name == "name"))


def test_migrate_target_is_the_mail_target_face():
    assert _argspec.migrate_argument_spec()["target"]["options"] == _spec_of(Face.TARGET)


def test_a_field_outside_a_face_is_refused_by_that_module():
    migrate = ArgumentSpecValidator(_argspec.migrate_argument_spec()).validate(dict(ACCOUNT, schedule="interval"))
    assert "schedule" in " ".join(migrate.error_messages)
    single = ArgumentSpecValidator(_definitions_spec.sync_task_module_argument_spec()).validate(
        dict(ACCOUNT, name="t1", schedule="interval", interval_minutes=5))
    assert not single.error_messages


def test_defaults_of_the_specs_are_the_dataclass_defaults():
    spec = _spec_of(Face.TASK)
    for field in dataclasses.fields(schema.Task):
        if "default" in spec[field.name]:
            assert spec[field.name]["default"] == (list(field.default) if isinstance(field.default, tuple) else field.default)
    assert "default" not in spec["remote_port"] and "default" not in _spec_of(Face.TARGET)["port"]  # by security


def test_needed_fields_are_the_required_ones_after_the_merge():
    # remote_password: required with remote_auth: password only (schema.check_remote_auth); remote_host: unless
    # remote_provider gives it (presets.apply), parse_task refuses it missing
    assert _argspec.REQUIRED_TASK_OPTIONS == ("local_user", "remote_user")
    assert _definitions_spec.TASK_REQUIRED_WHEN_PRESENT == list(_argspec.REQUIRED_TASK_OPTIONS)
    assert _definitions_spec.TARGET_REQUIRED_WHEN_PRESENT == ["master_password"]


def test_csv_columns_are_the_account_face():
    columns = list(_argspec.account_options())
    assert columns == list(schema.fields(schema.Task, Face.ACCOUNT)) == list(_argspec.MIGRATE_TASK_OPTIONS)
    assert "schedule" not in columns and "name" not in columns


def test_secrets_are_no_log_and_never_public():
    for cls, sample in ((schema.Task, schema.Task(**ACCOUNT)), (schema.Target, schema.Target(master_password="x"))):
        secrets = {name for name in schema.fields(cls) if schema.meta(cls, name).no_log}
        assert secrets and not secrets & set(sample.public())
        assert not any(field.repr for field in dataclasses.fields(cls) if field.name in secrets)


def test_every_field_is_documented_and_its_references_exist():
    for cls in (schema.Task, schema.Target):
        for name in schema.fields(cls):
            field = schema.meta(cls, name)
            assert field.doc and all(line.endswith(".") for line in field.doc), name
            for ref in re.findall(r"O\(~([a-z_]+)", " ".join(field.doc)):
                assert ref in schema.fields(cls) and field.faces <= schema.meta(cls, ref).faces, (name, ref)


def _options(text):
    return yaml.safe_load(text)["options"]


def _agrees(docs, spec):
    """The documented options say what the argument spec does (what validate-modules checks, too)."""
    assert set(docs) == set(spec)
    for name, option in spec.items():
        doc = docs[name]
        assert doc["description"], name
        for key in ("type", "elements", "default", "choices", "required"):
            assert doc.get(key) == option.get(key), (name, key)


def test_the_doc_fragments_document_the_specs():
    migrate = _options(fragment.ModuleDocFragment.MIGRATE)
    _agrees({k: v for k, v in migrate.items() if k not in ("target", "accounts")}, _spec_of(Face.MIGRATE))
    _agrees(migrate["target"]["suboptions"], _spec_of(Face.TARGET))
    _agrees(migrate["accounts"]["suboptions"], _spec_of(Face.ACCOUNT))
    sync_task = _options(fragment.ModuleDocFragment.SYNC_TASK)
    _agrees({k: v for k, v in sync_task.items() if k != "tasks"}, _spec_of(Face.TASK))
    _agrees(sync_task["tasks"]["suboptions"], _spec_of(Face.TASK_ELEMENT))
    _agrees(_options(fragment.ModuleDocFragment.TARGET), _spec_of(Face.TARGET))


def test_references_follow_the_face():
    migrate = _options(fragment.ModuleDocFragment.MIGRATE)
    assert "O(target.security=ssl)" in " ".join(migrate["target"]["suboptions"]["port"]["description"])
    assert "O(security=ssl)" in " ".join(_options(fragment.ModuleDocFragment.TARGET)["port"]["description"])
    assert "Required for an inline migration" in " ".join(migrate["local_user"]["description"])
    sync_task = _options(fragment.ModuleDocFragment.SYNC_TASK)
    assert "Required with O(state=present)." in sync_task["local_user"]["description"]


def _generator():
    spec = importlib.util.spec_from_file_location("update_generated", ROOT / "tests" / "update_generated.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_role_argument_specs_are_generated_from_the_schema():
    text = (ROOT / "roles" / "imapsync" / "meta" / "argument_specs.yml").read_text(encoding="utf-8")
    assert _generator().render(text) == text, "roles/imapsync/meta/argument_specs.yml is stale: run python tests/update_generated.py"
    options = yaml.safe_load(text)["argument_specs"]["main"]["options"]
    for key, cls, face in (("imapsync_tasks", schema.Task, Face.ROLE_TASK), ("imapsync_target", schema.Target, Face.ROLE_TARGET)):
        role = options[key]["options"]
        assert list(role) == list(schema.fields(cls, face))
        for name, option in schema.argument_spec(cls, face).items():
            assert {k: v for k, v in role[name].items() if k != "description"} == option


def test_a_stale_role_spec_is_noticed():
    text = (ROOT / "roles" / "imapsync" / "meta" / "argument_specs.yml").read_text(encoding="utf-8")
    stale = text.replace("default: starttls", "default: ssl", 1)
    assert stale != text and _generator().render(stale) == text


@pytest.mark.parametrize("schedule,interval,phrase", [
    ("interval", None, "interval_minutes is required with schedule: interval"),
    ("interval", 0, "from 1 to 1440"),
    ("manual", 1441, "from 1 to 1440"),
])
def test_the_interval_rule_is_the_same_for_definitions_and_timers(schedule, interval, phrase):
    item = {"schedule": schedule, "interval_minutes": interval}
    with pytest.raises(ConfigError, match=phrase):
        config.parse_task(dict(ACCOUNT, **item))
    with pytest.raises(ConfigError, match=phrase):
        _units.parse_tasks([dict(item, name="t1")])
    assert schema.check_interval("interval", 1440) == 1440 and schema.check_interval("manual", None) is None


def test_cross_field_rules():
    assert config.parse_task(dict(ACCOUNT, remote_security="ssl")).remote_port == 993
    assert config.parse_task(dict(ACCOUNT, remote_security="ssl", remote_port=1993)).remote_port == 1993
    assert config.parse_target({"security": "ssl"}).port == 993 and config.parse_target({}).port == 143
    with pytest.raises(ConfigError, match="delete_remote_days is required with delete_remote: older_than"):
        config.parse_task(dict(ACCOUNT, delete_remote="older_than"))
    hazardous = dict(ACCOUNT, folders="all_except", exclude=["(a+)+"])
    with pytest.raises(ConfigError, match="exclude: entry 1"):
        config.parse_task(hazardous)
    assert config.parse_task(hazardous, declared=False).exclude == ("(a+)+",)  # stored by an earlier version
    assert config.parse_task(dict(ACCOUNT, exclude=["(a+)+"])).exclude == ("(a+)+",)  # ignored unless all_except


def test_a_new_field_reaches_every_face_it_names():
    """One declaration is the whole of an option for the specs, the docs, the CSV columns and the role."""

    @dataclasses.dataclass(frozen=True)
    class Extended(schema.Task):
        max_age_days: int | None = schema.declare(
            None, type="int", check=lambda label, value: value, faces=frozenset({Face.MIGRATE, Face.ACCOUNT, Face.ROLE_TASK}),
            doc=("Only messages younger than this many days, with O(~folders=all).",))

    assert schema.argument_spec(Extended, Face.MIGRATE)["max_age_days"] == {"type": "int"}
    assert "max_age_days" in schema.argument_spec(Extended, Face.ACCOUNT)
    assert "max_age_days" not in schema.argument_spec(Extended, Face.TASK)
    role = schema.role_options(Extended, Face.ROLE_TASK)["max_age_days"]
    assert role["description"] == ["Only messages younger than this many days, with O(imapsync_tasks[].folders=all)."]
    assert schema.option_docs(Extended, Face.ACCOUNT)["max_age_days"]["description"] == ["As O(max_age_days)."]


BASE = {"local_user": "alice", "remote_user": "alice@example.org", "remote_host": "outlook.office365.com"}
ENTRA = dict(BASE, remote_auth="client_credentials", remote_oauth_client_id="app", remote_oauth_tenant="contoso.example")


def test_remote_auth_password_needs_the_password_and_nothing_of_a_token_source():
    assert schema.parse_task(dict(BASE, remote_password="pw")).remote_auth == "password"
    with pytest.raises(ConfigError, match="remote_password is required with remote_auth: password"):
        schema.parse_task(BASE)
    with pytest.raises(ConfigError, match="remote_token_file is a field of remote_auth: token_file, not of remote_auth: password"):
        schema.parse_task(dict(BASE, remote_password="pw", remote_token_file="/t"))


def test_a_token_source_refuses_a_password_and_the_fields_of_other_sources():
    with pytest.raises(ConfigError, match="remote_password is a field of remote_auth: password, not of remote_auth: token_file"):
        schema.parse_task(dict(BASE, remote_auth="token_file", remote_token_file="/t", remote_password="pw"))
    with pytest.raises(ConfigError, match="remote_oauth_tenant is a field of remote_auth: client_credentials, not of "
                                          "remote_auth: service_account"):
        schema.parse_task(dict(BASE, remote_auth="service_account", remote_oauth_key_file="/k", remote_oauth_tenant="t"))
    with pytest.raises(ConfigError, match="remote_token_command is required with remote_auth: token_command"):
        schema.parse_task(dict(BASE, remote_auth="token_command"))
    with pytest.raises(ConfigError, match="remote_token_command: .* cannot be split into words"):
        schema.parse_task(dict(BASE, remote_auth="token_command", remote_token_command="get-token 'unclosed"))


def test_client_credentials_needs_one_secret_or_certificate_and_fills_in_its_defaults():
    with pytest.raises(ConfigError, match="exactly one of remote_oauth_client_secret and remote_oauth_certificate; neither"):
        schema.parse_task(ENTRA)
    with pytest.raises(ConfigError, match="both were given"):
        schema.parse_task(dict(ENTRA, remote_oauth_client_secret="s", remote_oauth_certificate="/c.pem"))
    task = schema.parse_task(dict(ENTRA, remote_oauth_client_secret="Sekr1t~"))
    assert (task.remote_oauth_authority, task.remote_oauth_scope) == (
        "https://login.microsoftonline.com", "https://outlook.office365.com/.default")
    assert "Sekr1t~" not in repr(task) and "remote_oauth_client_secret" not in task.public()
    assert schema.parse_task(dict(ENTRA, remote_oauth_certificate="/c.pem", remote_oauth_authority="https://127.0.0.1:8443/",
                                  remote_oauth_scope="x/.default")).remote_oauth_authority == "https://127.0.0.1:8443"
    with pytest.raises(ConfigError, match="remote_oauth_authority: .* is not an https URL"):
        schema.parse_task(dict(ENTRA, remote_oauth_client_secret="s", remote_oauth_authority="http://login.example"))
    google = schema.parse_task(dict(BASE, remote_auth="service_account", remote_oauth_key_file="/k.json"))
    assert google.remote_oauth_scope == "https://mail.google.com/" and google.remote_oauth_authority is None


def test_a_stored_oauth_definition_reads_back_the_same():
    task = schema.parse_task(dict(ENTRA, remote_oauth_client_secret="s"))
    again = schema.parse_task(dict(task.public(), remote_oauth_client_secret="s", remote_password=""), declared=False)
    assert again == task
