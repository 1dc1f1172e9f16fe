"""mailops.imap.mail_target and mailops.imap.sync_task through a real ansible-playbook against real Dovecot servers:
check mode, real runs, idempotence, files and modes on disk, masked diffs, validation, removal."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from harness.dovecot import DovecotServer, free_port
from playbook import play

TARGET = "mailops.imap.mail_target"
TASK = "mailops.imap.sync_task"
VERBOSE = ("--diff", "-vvv")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def target_args(account, config_dir: Path, **overrides) -> dict:
    local = account.local_server
    data = {
        "host": local.host, "port": local.port, "ca_file": str(local.cert_path),
        "master_user": local.master_user, "master_password": local.master_password,
        "config_dir": str(config_dir),
    }
    data.update(overrides)
    return data


def task_args(account, config_dir: Path, name: str = "alice", **overrides) -> dict:
    remote = account.remote_server
    data = {
        "name": name,
        "local_user": account.local_user,
        "remote_user": account.remote_user,
        "remote_password": account.remote_password,
        "remote_host": remote.host,
        "remote_port": remote.port,
        "ca_file": str(remote.cert_path),
        "folders": "all_except",
        "exclude": ["^Spam$", "^Trash(/|$)"],
        "schedule": "interval",
        "interval_minutes": 15,
        "config_dir": str(config_dir),
    }
    data.update(overrides)
    return data


def files(config_dir: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under config_dir: relative path -> (mode, content)."""
    if not config_dir.exists():
        return {}
    return {str(p.relative_to(config_dir)): (mode(p), p.read_bytes()) for p in sorted(config_dir.rglob("*")) if p.is_file()}


def assert_no_secret(played, *secrets: str) -> None:
    texts = [played.output, json.dumps(played.results, ensure_ascii=False), json.dumps(played.results)]
    for secret in secrets:
        for text in texts:
            assert secret not in text
    assert "Traceback" not in played.output


def assert_stored(config_dir: Path, kind: str, name: str, secret: str) -> dict:
    """The layout and modes of a stored definition; returns the public definition."""
    definition = config_dir / kind / f"{name}.json"
    secret_file = config_dir / "secrets" / kind / name
    assert mode(definition) == 0o600 and mode(config_dir / kind) == 0o700
    assert mode(secret_file) == 0o600
    assert mode(config_dir / "secrets") == 0o700 and mode(config_dir / "secrets" / kind) == 0o700
    assert secret_file.read_bytes() == secret.encode("utf-8")
    text = definition.read_text(encoding="utf-8")
    assert secret not in text
    for path in config_dir.rglob("*"):
        if path.is_file() and path != secret_file:
            assert secret.encode("utf-8") not in path.read_bytes(), path
    return json.loads(text)


def define_target(account, tmp_path: Path, config_dir: Path) -> None:
    played = play(tmp_path, [(TARGET, target_args(account, config_dir))])
    assert played.result["changed"] is True and not played.result.get("failed")


# -- mail_target ---------------------------------------------------------------------------------------------------

def test_mail_target_check_real_check_real(account, tmp_path):
    config_dir = tmp_path / "etc"
    args = target_args(account, config_dir)
    secret = account.local_server.master_password

    check = play(tmp_path, [(TARGET, args)], "--check", *VERBOSE, secrets=(secret,))
    assert check.result["changed"] is True and not check.result.get("failed")
    assert check.result["master_password_changed"] is True
    assert '"master_password": "********"' in check.output, "the diff shows the masked placeholder"
    assert "changed=1" in check.output
    assert not config_dir.exists(), "check mode writes nothing"

    real = play(tmp_path, [(TARGET, args)], *VERBOSE, secrets=(secret,))
    assert real.result["changed"] is True and "changed=1" in real.output
    stored = assert_stored(config_dir, "targets", "default", secret)
    assert stored == real.result["definition"]
    assert stored["port"] == account.local_server.port and stored["master_user"] == "vmail"
    assert stored["security"] == "starttls" and stored["lmtp_port"] == 24, "stored normalized, defaults included"
    before = files(config_dir)

    again_check = play(tmp_path, [(TARGET, args)], "--check", *VERBOSE, secrets=(secret,))
    assert again_check.result["changed"] is False and again_check.result["master_password_changed"] is False
    assert "changed=0" in again_check.output

    again = play(tmp_path, [(TARGET, args)], *VERBOSE, secrets=(secret,))
    assert again.result["changed"] is False and "changed=0" in again.output
    assert files(config_dir) == before

    for played in (check, real, again_check, again):
        assert_no_secret(played, secret)


def test_mail_target_password_change_only(account, tmp_path):
    config_dir = tmp_path / "etc"
    old = account.local_server.master_password
    new = "n\u00ebw'master\"pw\\2"
    define_target(account, tmp_path, config_dir)
    before = files(config_dir)
    args = target_args(account, config_dir, master_password=new)

    check = play(tmp_path, [(TARGET, args)], "--check", *VERBOSE, secrets=(old, new))
    assert check.result["changed"] is True and check.result["master_password_changed"] is True
    assert '"master_password": "******** (changed)"' in check.output
    assert files(config_dir) == before, "check mode writes nothing"

    real = play(tmp_path, [(TARGET, args)], *VERBOSE, secrets=(old, new))
    assert real.result["changed"] is True and real.result["master_password_changed"] is True
    assert_stored(config_dir, "targets", "default", new)
    after = files(config_dir)
    assert after["targets/default.json"] == before["targets/default.json"], "only the secret changed"

    again = play(tmp_path, [(TARGET, args)], *VERBOSE, secrets=(old, new))
    assert again.result["changed"] is False and again.result["master_password_changed"] is False
    for played in (check, real, again):
        assert_no_secret(played, old, new)


def test_mail_target_absent_refused_while_a_task_uses_it(account, tmp_path):
    config_dir = tmp_path / "etc"
    define_target(account, tmp_path, config_dir)
    assert play(tmp_path, [(TASK, task_args(account, config_dir, name="uses-default"))]).result["changed"] is True
    absent = {"state": "absent", "config_dir": str(config_dir)}
    stored = files(config_dir)

    check = play(tmp_path, [(TARGET, absent)], "--check")
    assert not check.result.get("failed") and check.result["changed"] is True
    assert "uses-default" in check.output, "check mode warns that a real run would refuse"

    refused = play(tmp_path, [(TARGET, absent)])
    assert refused.result["failed"] is True and refused.result["changed"] is False
    assert "uses-default" in refused.result["msg"] and "sync_task" in refused.result["msg"]
    assert files(config_dir) == stored

    both = play(tmp_path, [(TASK, {"name": "uses-default", "state": "absent", "config_dir": str(config_dir)}), (TARGET, absent)])
    assert [r["changed"] for r in both.results] == [True, True]
    assert files(config_dir) == {}
    again = play(tmp_path, [(TARGET, absent)], "--check")
    assert again.result["changed"] is False
    again = play(tmp_path, [(TARGET, absent)])
    assert again.result["changed"] is False and "changed=0" in again.output


# -- sync_task -----------------------------------------------------------------------------------------------------

def test_sync_task_check_real_check_real_with_validation(account, tmp_path):
    config_dir = tmp_path / "etc"
    define_target(account, tmp_path, config_dir)
    target_files = files(config_dir)
    args = task_args(account, config_dir, validate=True)
    secrets = (account.remote_password, account.local_server.master_password)

    check = play(tmp_path, [(TASK, args)], "--check", *VERBOSE, secrets=secrets)
    assert check.result["changed"] is True and not check.result.get("failed"), check.output
    assert check.result["password_changed"] is True
    assert '"remote_password": "********"' in check.output
    assert files(config_dir) == target_files, "check mode writes nothing"

    real = play(tmp_path, [(TASK, args)], *VERBOSE, secrets=secrets)
    assert real.result["changed"] is True and "changed=1" in real.output, real.output
    stored = assert_stored(config_dir, "tasks", "alice", account.remote_password)
    assert stored == real.result["definition"]
    assert stored["name"] == "alice" and stored["target"] == "default"
    assert stored["exclude"] == ["^Spam$", "^Trash(/|$)"] and stored["interval_minutes"] == 15
    assert stored["remote_security"] == "starttls" and stored["enabled"] is True
    assert "remote_password" not in stored and "validate" not in stored and "config_dir" not in stored
    before = files(config_dir)

    again_check = play(tmp_path, [(TASK, args)], "--check", *VERBOSE, secrets=secrets)
    assert again_check.result["changed"] is False and again_check.result["password_changed"] is False
    assert "changed=0" in again_check.output

    again = play(tmp_path, [(TASK, args)], *VERBOSE, secrets=secrets)
    assert again.result["changed"] is False and "changed=0" in again.output
    assert files(config_dir) == before

    for played in (check, real, again_check, again):
        assert_no_secret(played, *secrets)


def test_sync_task_password_change_only(account, tmp_path):
    config_dir = tmp_path / "etc"
    define_target(account, tmp_path, config_dir)
    old = account.remote_password
    new = "an\u00f6ther'pass\"word\\"
    assert play(tmp_path, [(TASK, task_args(account, config_dir))]).result["changed"] is True
    before = files(config_dir)
    args = task_args(account, config_dir, remote_password=new)

    check = play(tmp_path, [(TASK, args)], "--check", *VERBOSE, secrets=(old, new))
    assert check.result["changed"] is True and check.result["password_changed"] is True
    assert '"remote_password": "******** (changed)"' in check.output
    assert files(config_dir) == before

    real = play(tmp_path, [(TASK, args)], *VERBOSE, secrets=(old, new))
    assert real.result["changed"] is True and real.result["password_changed"] is True
    assert_stored(config_dir, "tasks", "alice", new)
    assert files(config_dir)["tasks/alice.json"] == before["tasks/alice.json"], "only the secret changed"

    again = play(tmp_path, [(TASK, args)], *VERBOSE, secrets=(old, new))
    assert again.result["changed"] is False and again.result["password_changed"] is False
    for played in (check, real, again):
        assert_no_secret(played, old, new)


@pytest.mark.parametrize("check_mode", [False, True], ids=["real", "check"])
def test_validate_refuses_a_wrong_password_and_writes_nothing(account, tmp_path, check_mode):
    config_dir = tmp_path / "etc"
    define_target(account, tmp_path, config_dir)
    wrong = "wr\u00f6ng'pass\"word\\"
    args = task_args(account, config_dir, remote_password=wrong, validate=True)
    flags = ("--check", *VERBOSE) if check_mode else VERBOSE

    refused = play(tmp_path, [(TASK, args)], *flags, secrets=(wrong, account.remote_password))
    res = refused.result
    assert res["failed"] is True and res["changed"] is False
    assert res["kind"] == "auth_failed" and res["side"] == "remote"
    assert "remote server" in res["msg"] and "not saved" in res["msg"]
    assert not (config_dir / "tasks").exists() and not (config_dir / "secrets" / "tasks").exists()
    assert_no_secret(refused, wrong, account.remote_password, account.local_server.master_password)

    # A stored task is not replaced by a definition that fails validation either.
    assert play(tmp_path, [(TASK, task_args(account, config_dir, validate=True))]).result["changed"] is True
    stored = files(config_dir)
    refused = play(tmp_path, [(TASK, args)], *flags, secrets=(wrong, account.remote_password))
    assert refused.result["failed"] is True and refused.result["kind"] == "auth_failed"
    assert files(config_dir) == stored
    assert_no_secret(refused, wrong, account.remote_password)


@pytest.mark.parametrize("case,kind,side,phrase", [
    ("wrong_master", "auth_failed", "local", "local server"),
    ("no_ca_file", "tls_failed", "remote", "could not be verified"),
    ("closed_port", "connect_failed", "remote", "remote server"),
])
def test_validate_classifies_failures(account, tmp_path, case, kind, side, phrase):
    config_dir = tmp_path / "etc"
    master = "not-the-master'pw"
    if case == "wrong_master":
        assert play(tmp_path, [(TARGET, target_args(account, config_dir, master_password=master))]).result["changed"] is True
        args = task_args(account, config_dir, validate=True)
    else:
        define_target(account, tmp_path, config_dir)
        overrides = {"ca_file": None} if case == "no_ca_file" else {"remote_port": free_port()}
        args = task_args(account, config_dir, validate=True, **overrides)
    targets_only = files(config_dir)

    refused = play(tmp_path, [(TASK, args)], *VERBOSE)
    res = refused.result
    assert res["failed"] is True and res["kind"] == kind and res["side"] == side, res
    assert phrase in res["msg"]
    assert res["errors"][0]["kind"] == kind
    assert files(config_dir) == targets_only
    assert_no_secret(refused, account.remote_password, account.local_server.master_password, master)


def test_validate_starttls_unsupported(account, tmp_path):
    config_dir = tmp_path / "etc"
    define_target(account, tmp_path, config_dir)
    with DovecotServer("remote", starttls=False) as plain:
        user = plain.add_user("plainuser", "secret'pw")
        args = task_args(account, config_dir, remote_user=user, remote_password="secret'pw", remote_host=plain.host,
                         remote_port=plain.port, ca_file=None, validate=True)
        refused = play(tmp_path, [(TASK, args)])
        assert refused.result["failed"] is True and refused.result["kind"] == "starttls_unsupported"
        assert refused.result["side"] == "remote" and "STARTTLS" in refused.result["msg"]
        assert not (config_dir / "tasks").exists()

        accepted = play(tmp_path, [(TASK, dict(args, remote_security="none"))])
        assert accepted.result["changed"] is True and not accepted.result.get("failed")
        assert_stored(config_dir, "tasks", "alice", "secret'pw")


def test_missing_target_is_predicted_in_check_mode_and_refused_for_real(account, tmp_path):
    config_dir = tmp_path / "etc"
    args = task_args(account, config_dir, validate=True)

    # The usual play: the target, then the task. In check mode the target is not written, so the task warns.
    check = play(tmp_path, [(TARGET, target_args(account, config_dir)), (TASK, args)], "--check", "--diff")
    target_res, task_res = check.results
    assert target_res["changed"] is True and task_res["changed"] is True and not task_res.get("failed")
    assert any("mail_target" in w for w in task_res.get("warnings", [])), task_res
    assert "not defined" in check.output
    assert not config_dir.exists()

    refused = play(tmp_path, [(TASK, dict(args, validate=False))])
    assert refused.result["failed"] is True
    assert "mailops.imap.mail_target" in refused.result["msg"] and "'default'" in refused.result["msg"]
    assert not (config_dir / "tasks").exists()

    real = play(tmp_path, [(TARGET, target_args(account, config_dir)), (TASK, args)])
    assert [r["changed"] for r in real.results] == [True, True]
    assert_stored(config_dir, "tasks", "alice", account.remote_password)


def test_sync_task_absent_removes_definition_and_secret_keeps_state(account, tmp_path):
    config_dir = tmp_path / "etc"
    state_dir = tmp_path / "var"
    define_target(account, tmp_path, config_dir)
    assert play(tmp_path, [(TASK, task_args(account, config_dir))]).result["changed"] is True
    kept = state_dir / "tasks" / "alice.sqlite"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"state")
    absent = {"name": "alice", "state": "absent", "config_dir": str(config_dir), "state_dir": str(state_dir)}
    stored = files(config_dir)

    check = play(tmp_path, [(TASK, absent)], "--check", *VERBOSE)
    assert check.result["changed"] is True and check.result["definition"] == {}
    assert '"remote_password": "********"' in check.output
    assert files(config_dir) == stored

    real = play(tmp_path, [(TASK, absent)], *VERBOSE)
    assert real.result["changed"] is True and "changed=1" in real.output
    assert not (config_dir / "tasks" / "alice.json").exists()
    assert not (config_dir / "secrets" / "tasks" / "alice").exists()
    assert (config_dir / "targets" / "default.json").exists(), "the target stays"
    assert kept.read_bytes() == b"state", "the sync state stays"

    again_check = play(tmp_path, [(TASK, absent)], "--check", *VERBOSE)
    assert again_check.result["changed"] is False
    again = play(tmp_path, [(TASK, absent)], *VERBOSE)
    assert again.result["changed"] is False and "changed=0" in again.output
    for played in (check, real, again_check, again):
        assert_no_secret(played, account.remote_password)


@pytest.mark.parametrize("module,overrides,phrase", [
    (TASK, {"name": "Bad Name"}, "task name"),
    (TASK, {"remote_port": 70000}, "remote_port"),
    (TASK, {"exclude": ["([unclosed"]}, "([unclosed"),
    (TASK, {"schedule": "interval", "interval_minutes": None}, "interval_minutes"),
    (TASK, {"remote_password": None}, "remote_password"),
    (TASK, {"target": "../etc"}, "target"),
    (TARGET, {"name": "UPPER"}, "target name"),
    (TARGET, {"port": 0}, "port"),
    (TARGET, {"master_password": None}, "master_password"),
])
def test_bad_input_is_refused_before_anything_is_written(account, tmp_path, module, overrides, phrase):
    config_dir = tmp_path / "etc"
    base = task_args(account, config_dir) if module == TASK else target_args(account, config_dir)
    args = {k: v for k, v in dict(base, **overrides).items() if v is not None}
    refused = play(tmp_path, [(module, args)], "-vvv")
    assert refused.result["failed"] is True
    assert phrase in refused.result["msg"], refused.result["msg"]
    assert not config_dir.exists()
    assert_no_secret(refused, account.remote_password, account.local_server.master_password)
