# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrate action plugin refuses bad input on the controller, before the module is sent."""

from __future__ import annotations

from unittest import mock

import pytest

from ansible_collections.mailops.imap.plugins.action import migrate as action
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.mailops.imap.plugins.module_utils import _accounts_csv, _argspec
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, schema

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


def test_backtracking_regex_refused_inline_in_accounts_and_in_a_csv():
    assert problem(folders="all_except", exclude=["(a+)+$"]).startswith("exclude: entry 1 '(a+)+$' repeats a group")
    message = refused({"accounts": [{"local_user": "a", "remote_user": "a@x", "remote_password": "pw1",
                                     "folders": "all_except", "exclude": ["^Spam", "(a|ab)+"]}], **BULK})
    assert "accounts entry 1" in message and "exclude: entry 2 '(a|ab)+' repeats alternatives" in message
    data = _accounts_csv.read_accounts_csv('local_user,remote_user,remote_password,folders,exclude\n'
                                           'a,a@x,pw1,all_except,"^Spam,(a+)+$"\n', "accounts_file users.csv")
    message = refused({"accounts_file": "users.csv", **BULK}, data)
    assert "accounts_file users.csv line 2" in message and "'(a+)+$' repeats a group" in message


def test_missing_required():
    message = action.validate_migrate_args({"remote_password": SECRET})
    assert message is not None and SECRET not in message
    for field in ("local_user", "remote_user"):
        assert field in message
    # remote_host comes from remote_provider when it is not given (_engine/presets.py): parse_task asks for it
    message = action.validate_migrate_args({"remote_password": SECRET, "local_user": "a", "remote_user": "b"})
    assert message == ("remote_host is required; give the remote IMAP server's name or address, or a remote_provider "
                       "(microsoft365, google) that gives it.")


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
    assert set(spec) == set(_argspec.MIGRATE_TASK_OPTIONS) | {
        "target", "task", "accounts", "accounts_file", "parallel", "config_dir", "state_dir"}
    for name, option in spec.items():
        if name in schema.secret_fields(schema.Task):
            assert option["no_log"] is True
        elif name not in ("target", "accounts"):
            assert not option.get("no_log"), name
        assert not option.get("required"), name  # required per mode, by parse_migrate
    assert spec["target"]["options"]["master_password"]["no_log"] is True
    accounts = spec["accounts"]["options"]
    assert set(accounts) == set(_argspec.MIGRATE_TASK_OPTIONS)
    assert accounts["remote_password"]["no_log"] is True
    for name, option in accounts.items():
        assert "default" not in option and not option.get("required"), name  # a missing field takes the call's value
        assert option["type"] == spec[name]["type"] and option.get("choices") == spec[name].get("choices"), name


def test_spec_defaults_match_engine_defaults():
    spec = _argspec.migrate_argument_spec()
    engine = config.Task(local_user="a", remote_user="b", remote_host="c")
    assert spec["parallel"]["default"] == 4
    for name in _argspec.MIGRATE_TASK_OPTIONS:
        if "default" in spec[name]:
            expected = list(engine.exclude) if name == "exclude" else getattr(engine, name)
            assert spec[name]["default"] == expected, name
    # an option without a default is required, secret or decided by the engine (ports, days, what a preset gives)
    assert {n for n in _argspec.MIGRATE_TASK_OPTIONS if "default" not in spec[n]} == {
        "local_user", "remote_user", "remote_password", "remote_host", "remote_port", "ca_file", "delete_remote_days",
        "remote_security", "folders", *(name for fields in schema.AUTH_FIELDS.values() for name in fields)}
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
    assert call.kwargs["module_args"] == dict(args(), progress_interval=0 if check_mode else 10)
    assert call.kwargs["wrap_async"] is False
    plugin._remove_tmp_path.assert_called_once()


# --- modes: a defined task, many accounts --------------------------------------------------------------------

ALICE = {"local_user": "alice", "remote_user": "alice@old.example.org", "remote_password": SECRET}
BOB = {"local_user": "bob", "remote_user": "bob@old.example.org", "remote_password": "B0b'pw"}
BULK = {"remote_host": "imap.old.example.org", "target": {"master_password": MASTER}}


def prepared(**kwargs):
    module_args, message = action.prepare_migrate_args(kwargs)
    assert message is None, message
    return module_args


def refused(args, csv_data=None) -> str:
    module_args, message = action.prepare_migrate_args(args, csv_data)
    assert module_args is None and message is not None
    for secret in (SECRET, MASTER, "B0b'pw"):
        assert secret not in message
    assert "Traceback" not in message and message.endswith(".")
    return message


def test_task_by_name_alone():
    assert prepared(task="inbox-carol") == {"task": "inbox-carol"}
    assert prepared(task="inbox-carol", config_dir="/c", state_dir="/s", parallel=2)["task"] == "inbox-carol"


def test_task_excludes_inline_fields_and_accounts():
    message = refused({"task": "t1", "local_user": "x", "target": {"master_password": MASTER}})
    assert message.startswith("task runs the defined task 't1'") and "local_user, target cannot be given" in message
    assert "accounts" in refused({"task": "t1", "accounts": [ALICE]})
    assert "accounts_file" in refused({"task": "t1", "accounts_file": "a.csv"})
    assert "accounts and accounts_file exclude each other" in refused({"accounts": [ALICE], "accounts_file": "a.csv"})


def test_task_name_checked():
    assert "not a valid task name" in refused({"task": "Bad Name"})


def test_inline_requires_the_account_fields():
    message = refused({"remote_host": "imap.example.org"})
    assert message.startswith("local_user, remote_user are required for an inline migration")
    assert "remote_password is required with remote_auth: password" in refused(
        {"remote_host": "imap.example.org", "local_user": "a", "remote_user": "b", "target": {"master_password": MASTER}})


def test_accounts_take_the_call_options_as_defaults():
    module_args = prepared(accounts=[ALICE, dict(BOB, remote_port="993", remote_security="ssl", validate_certs="no")],
                           folders="all_except", exclude=["^Spam$"], **BULK)
    assert module_args["accounts"][0] == ALICE
    assert module_args["accounts"][1]["remote_port"] == 993 and module_args["accounts"][1]["validate_certs"] is False
    assert module_args["folders"] == "all_except" and "accounts_file" not in module_args


def test_accounts_each_bad_one_named_with_its_field():
    message = refused({"accounts": [ALICE, dict(BOB, remote_port=70000), dict(BOB, local_user="carol", remote_security="tls"),
                                    {"local_user": "dave", "remote_user": "d"}, "just a string"], **BULK})
    assert "accounts entry 1" not in message
    assert "accounts entry 2: remote_port: 70000 is not a port number" in message
    assert "accounts entry 3: value of remote_security must be one of: starttls, ssl, none, got: tls." in message
    assert "accounts entry 4: remote_password is required" in message
    assert "accounts entry 5: give a dictionary of task fields, not str." in message


def test_accounts_unknown_field():
    message = refused({"accounts": [dict(ALICE, remote_pasword="x")], **BULK})
    assert message.startswith("accounts entry 1: unknown field(s) remote_pasword; valid fields are local_user,")


def test_accounts_required_fields_from_either_place():
    assert "accounts entry 1: remote_host is required" in refused({"accounts": [ALICE], "target": {"master_password": MASTER}})
    assert prepared(accounts=[dict(ALICE, remote_host="imap.a.example")], target={"master_password": MASTER})
    shared = prepared(accounts=[{"local_user": "a", "remote_user": "a*vmail"}, {"local_user": "b", "remote_user": "b*vmail"}],
                      remote_password=SECRET, **BULK)
    assert len(shared["accounts"]) == 2


def test_accounts_repeated_account_refused():
    message = refused({"accounts": [ALICE, BOB, dict(ALICE, remote_password="other")], **BULK})
    assert message == ("accounts entry 3 repeats the account of accounts entry 1 (same remote_user, remote_host, remote_port "
                       "and local_user); remove one of them.")


def test_accounts_empty_or_not_a_list():
    assert refused({"accounts": [], **BULK}).startswith("accounts is empty")


def test_parallel_at_least_one():
    assert "parallel: 0 is not valid" in refused({"accounts": [ALICE], "parallel": 0, **BULK})


def test_a_password_in_a_wrong_column_is_masked():
    # a row whose cells slipped: the password landed in remote_security
    message = refused({"accounts": [dict(ALICE, remote_security=SECRET)], **BULK})
    assert "remote_security" in message


def test_many_problems_are_capped():
    rows = [dict(ALICE, local_user=f"u{i}", remote_port=0) for i in range(30)]
    message = refused({"accounts": rows, **BULK})
    assert message.count("is not a port number") == _argspec.MAX_PROBLEMS
    assert message.endswith("And 10 more problem(s) of the same kind.")


# --- CSV files -------------------------------------------------------------------------------------------------


def read_csv(text: str):
    return _accounts_csv.read_accounts_csv(text, "accounts_file users.csv")


def test_csv_rows_validated_with_their_lines():
    data = read_csv("local_user,remote_user,remote_password,remote_security\n"
                    f"alice,alice@x,{SECRET.replace(chr(34), '')},\n"
                    "bob,bob@x,pw2,tls\n"
                    "carol,carol@x,,starttls\n")
    message = refused({"accounts_file": "users.csv", **BULK}, data)
    assert "accounts_file users.csv line 3: value of remote_security must be one of: starttls, ssl, none, got: tls." in message
    assert "accounts_file users.csv line 4: remote_password is required" in message
    assert "line 2" not in message


def test_csv_becomes_accounts():
    data = read_csv("local_user,remote_user,remote_password,remote_port\nalice,alice@x,pw1,993\nbob,bob@x,pw2,\n")
    module_args, message = action.prepare_migrate_args({"accounts_file": "users.csv", "parallel": 2, **BULK}, data)
    assert message is None
    assert "accounts_file" not in module_args
    assert module_args["accounts"] == [
        {"local_user": "alice", "remote_user": "alice@x", "remote_password": "pw1", "remote_port": 993},
        {"local_user": "bob", "remote_user": "bob@x", "remote_password": "pw2"},
    ]


ConfigErrorType = action.ConfigError


VAULT = [("default", VaultSecret(b"unit-vault-secret"))]


def make_file_action(task_args, play_dir):
    """The action with a real loader: the playbook's directory is ``play_dir``; the vault secret is VAULT's."""
    plugin = make_action(task_args)
    plugin._task.get_search_path.return_value = [str(play_dir)]
    loader = DataLoader()
    loader.set_basedir(str(play_dir))
    loader.set_vault_secrets(VAULT)
    plugin._loader = loader
    return plugin


def test_run_reads_the_csv_on_the_controller(tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "users.csv").write_bytes("\ufefflocal_user,remote_user,remote_password\r\nälice,alice@x,pw1\r\n".encode("utf-8"))
    plugin = make_file_action(dict(BULK, accounts_file="users.csv"), tmp_path)
    result = plugin.run(task_vars={})
    assert result.get("failed") is not True, result
    sent = plugin._execute_module.call_args.kwargs["module_args"]
    assert "accounts_file" not in sent
    assert sent["accounts"] == [{"local_user": "älice", "remote_user": "alice@x", "remote_password": "pw1"}]


def test_run_reads_a_vault_encrypted_csv_in_memory(tmp_path, monkeypatch):
    text = f"local_user,remote_user,remote_password,remote_security\nalice,alice@x,{MASTER},tls\n"
    (tmp_path / "users.csv").write_bytes(VaultLib(VAULT).encrypt(text.encode("utf-8")))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    plugin = make_file_action(dict(BULK, accounts_file="users.csv"), tmp_path)
    result = plugin.run(task_vars={})
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("accounts_file users.csv line 2: value of remote_security"), result
    assert MASTER not in repr(result)
    assert list((tmp_path / "tmp").iterdir()) == [], "no decrypted copy was written"
    plugin._execute_module.assert_not_called()


def test_run_refuses_a_csv_that_cannot_be_decrypted(tmp_path):
    (tmp_path / "users.csv").write_bytes(VaultLib([("default", VaultSecret(b"other"))]).encrypt(b"local_user\na\n"))
    plugin = make_file_action(dict(BULK, accounts_file="users.csv"), tmp_path)
    result = plugin.run(task_vars={})
    assert result["failed"] is True and result["msg"].startswith("accounts_file: users.csv cannot be read (")
    assert result["msg"].endswith("check the file and its vault password.")
    plugin._execute_module.assert_not_called()


def test_run_missing_or_unreadable_csv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "nope.csv").write_text("local_user\na\n", encoding="utf-8")  # the current directory is not searched
    plugin = make_file_action(dict(BULK, accounts_file="nope.csv"), tmp_path / "elsewhere")
    result = plugin.run(task_vars={})
    assert result["failed"] is True
    assert result["msg"] == ("accounts_file: nope.csv was not found on the controller; give an absolute path, or a path "
                             "relative to the playbook's directory (or its files/ directory).")
    (tmp_path / "latin.csv").write_bytes("local_user\n\xe4lice\n".encode("latin-1"))
    plugin = make_file_action(dict(BULK, accounts_file=str(tmp_path / "latin.csv")), tmp_path / "elsewhere")
    result = plugin.run(task_vars={})
    assert result["failed"] is True
    assert result["msg"] == f"accounts_file {tmp_path / 'latin.csv'} line 2, column 1: byte 0xE4 is not UTF-8 text; save the file " \
                            "as UTF-8 (in a spreadsheet: CSV UTF-8)."
    plugin._execute_module.assert_not_called()


def test_run_names_the_line_and_column_of_the_first_byte_that_is_not_utf8(tmp_path):
    (tmp_path / "users.csv").write_bytes("\ufefflocal_user,remote_user,remote_password\r\nälice,a@x,pw\r\nbob,b\xe9@x,pw\r\n"
                                         .encode("utf-8").replace(b"\xc3\xa9", b"\xe9"))
    plugin = make_file_action(dict(BULK, accounts_file="users.csv"), tmp_path)
    result = plugin.run(task_vars={})
    assert result["failed"] is True and result["msg"].startswith("accounts_file users.csv line 3, column 6: byte 0xE9 "), result
    assert "save the file as UTF-8" in result["msg"] and "pw" not in result["msg"]
    plugin._execute_module.assert_not_called()


def test_run_does_not_read_the_file_when_modes_conflict(tmp_path):
    plugin = make_file_action({"task": "t1", "accounts_file": "users.csv"}, tmp_path)
    plugin._loader = mock.MagicMock()
    result = plugin.run(task_vars={})
    assert result["failed"] is True and "exclude each other" in result["msg"]
    assert plugin._loader.mock_calls == []


def test_bulk_with_an_application_credential_given_once_and_a_csv_of_users():
    client_secret = "cl13nt~S3cret.Value"
    data = "local_user,remote_user\nalice,alice@contoso.example\nbob,bob@contoso.example\n"
    app = {"remote_provider": "microsoft365", "remote_auth": "client_credentials", "remote_oauth_client_id": "app-id",
           "remote_oauth_tenant": "contoso.example", "remote_oauth_client_secret": client_secret,
           "target": {"master_password": MASTER}}
    module_args, message = action.prepare_migrate_args(dict(app, accounts_file="users.csv"),
                                                       _accounts_csv.read_accounts_csv(data, "accounts_file users.csv"))
    assert message is None
    assert module_args["accounts"] == [{"local_user": "alice", "remote_user": "alice@contoso.example"},
                                       {"local_user": "bob", "remote_user": "bob@contoso.example"}]
    # a bad row is named by its line, and the client secret never appears in the message
    bad = "local_user,remote_user,remote_password\nalice,alice@contoso.example,pw\n"
    _args, message = action.prepare_migrate_args(dict(app, accounts_file="users.csv"),
                                                 _accounts_csv.read_accounts_csv(bad, "accounts_file users.csv"))
    assert message is not None and "accounts_file users.csv line 2" in message and "remote_password" in message
    assert client_secret not in message
    _args, message = action.prepare_migrate_args(dict(app, remote_port="x", remote_user="u", local_user="l"))
    assert message is not None and "remote_port" in message and client_secret not in message
