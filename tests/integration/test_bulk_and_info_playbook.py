"""migrate by name and in bulk, and sync_task_info, through a real ansible-playbook against real Dovecot servers."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import shutil
from pathlib import Path

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, store
import playbook
from harness import mail
from harness.systemd import SYSTEMD, UserManager


def play(tmp_path: Path, steps: list[tuple[str, dict, dict]], *args: str, secrets: tuple[str, ...] = (),
         wrapper: tuple[str, ...] = ()) -> tuple[str, list[dict]]:
    """Run ``steps`` (module, arguments, task keywords) in one play: the output and the results (see playbook.play)."""
    played = playbook.play(tmp_path, steps, *args, secrets=secrets, wrapper=wrapper)
    return played.output, played.results


def target_args(local) -> dict:
    return {"host": local.host, "port": local.port, "ca_file": str(local.cert_path),
            "master_user": local.master_user, "master_password": local.master_password}


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def local_inbox(account) -> list:
    return mail.snapshot(account.local_server, account.local_user, master=True).get("INBOX", [])


# --- bulk ----------------------------------------------------------------------------------------------------


def test_csv_with_bad_rows_is_refused_naming_the_lines_before_any_account_runs(make_account, remote_server, local_server, tmp_path):
    good, bad_security, no_password = make_account(), make_account(), make_account()
    for acc in (good, bad_security, no_password):
        mail.seed(remote_server, acc.remote_user, acc.remote_password, "INBOX", [(mail.make_message("csv"), (), None)])
    state_dir = tmp_path / "state"
    accounts_csv = write_csv(tmp_path / "accounts.csv", ["local_user", "remote_user", "remote_password", "remote_security"], [
        [good.local_user, good.remote_user, good.remote_password, ""],
        [bad_security.local_user, bad_security.remote_user, bad_security.remote_password, "tls"],
        [no_password.local_user, no_password.remote_user, "", "starttls"],
    ])
    unknown_column = write_csv(tmp_path / "unknown.csv", ["local_user", "remote_user", "passwd"], [["a", "b", "c"]])
    common = {"remote_host": remote_server.host, "remote_port": remote_server.port, "ca_file": str(remote_server.cert_path),
              "target": target_args(local_server), "state_dir": str(state_dir), "parallel": 2}
    secrets = (good.remote_password, bad_security.remote_password, local_server.master_password)

    output, (refused, unknown) = play(tmp_path, [
        ("mailops.imap.migrate", dict(common, accounts_file=str(accounts_csv)), {}),
        ("mailops.imap.migrate", dict(common, accounts_file=str(unknown_column)), {}),
    ], "-vvv", secrets=secrets)

    assert refused["failed"] is True and refused["changed"] is False
    msg = refused["msg"]
    assert f"{accounts_csv} line 3: value of remote_security must be one of: starttls, ssl, none, got: tls." in msg, msg
    assert f"{accounts_csv} line 4: remote_password is required" in msg, msg
    assert "line 2" not in msg
    assert "accounts" not in refused or not refused.get("accounts"), "no account ran"
    assert unknown["failed"] is True and f"{unknown_column} line 1: unknown column(s) 'passwd'" in unknown["msg"]
    assert not state_dir.exists(), "nothing ran, so no state was written"
    assert local_inbox(good) == [], "the good row did not run either"
    assert "line 3" in output


def test_csv_of_three_accounts_two_at_a_time_check_real_again(make_account, remote_server, local_server, tmp_path):
    passwords = ["comma, in 'it' \"too\" \u00e4", "  spaces around  ", "semi;colon\\back"]
    accounts = [make_account(remote_password=p) for p in passwords]
    for index, acc in enumerate(accounts):
        mail.seed(remote_server, acc.remote_user, acc.remote_password, "INBOX",
                  [(mail.make_message(f"bulk {index} {i}"), (b"\\Seen",), None) for i in range(index + 1)])
        mail.seed(remote_server, acc.remote_user, acc.remote_password, "Projects/Bulk", [(mail.make_message(f"p{index}"), (), None)])
    state_dir = tmp_path / "state"
    accounts_csv = write_csv(tmp_path / "accounts.csv", ["local_user", "remote_user", "remote_password"],
                             [[a.local_user, a.remote_user, a.remote_password] for a in accounts])
    args = {"accounts_file": str(accounts_csv), "parallel": 2, "remote_host": remote_server.host,
            "remote_port": remote_server.port, "ca_file": str(remote_server.cert_path),
            "target": target_args(local_server), "state_dir": str(state_dir)}
    secrets = (*passwords, local_server.master_password)

    output, (check, real, again) = play(tmp_path, [
        ("mailops.imap.migrate", args, {"check_mode": True, "diff": True}),
        ("mailops.imap.migrate", args, {}),
        ("mailops.imap.migrate", args, {}),
    ], "-vvv", secrets=secrets)

    expected = [f"{a.remote_user} at {remote_server.host} -> {a.local_user}" for a in accounts]
    assert check.get("failed") is not True, check
    assert check["changed"] is True and check["check_mode"] is True and check["status"] == "success"
    assert [e["account"] for e in check["accounts"]] == expected
    assert check["totals"]["copied"] == (1 + 2 + 3) + 3
    assert "INBOX: 0 messages" in output and "INBOX: 3 messages" in output, "diff per account and folder"

    assert real.get("failed") is not True, real
    assert real["changed"] is True and real["status"] == "success"
    assert real["summary"] == {"accounts": 3, "success": 3, "partial": 0, "failed": 0, "skipped": 0}
    assert [e["account"] for e in real["accounts"]] == expected
    assert [e["totals"]["copied"] for e in real["accounts"]] == [2, 3, 4]
    assert real["totals"]["copied"] == 9 and real["totals"]["folders_created"] == 6  # Projects and Projects.Bulk
    for entry in real["accounts"]:
        assert entry["status"] == "success" and entry["task"] is None and entry["check_mode"] is False
        assert {"started", "finished", "duration_s", "folders", "errors", "notices"} <= set(entry)
    for acc in accounts:
        local = mail.snapshot(local_server, acc.local_user, master=True)
        remote = mail.snapshot(remote_server, acc.remote_user, acc.remote_password)
        assert local["INBOX"] == remote["INBOX"] and local["Projects.Bulk"] == remote["Projects/Bulk"]
    states = sorted(p.name for p in state_dir.glob("inline-*.sqlite"))
    assert len(states) == 3, "each account has its own inline state"

    assert again.get("failed") is not True and again["changed"] is False and again["totals"]["copied"] == 0
    for path in state_dir.rglob("*"):
        if path.is_file():
            for secret in secrets:
                assert secret.encode("utf-8") not in path.read_bytes()


def test_accounts_list_one_failed_account_fails_the_task_after_all_ran(make_account, remote_server, local_server, tmp_path):
    ok, wrong = make_account(), make_account()
    for acc in (ok, wrong):
        mail.seed(remote_server, acc.remote_user, acc.remote_password, "INBOX", [(mail.make_message("list"), (), None)])
    common = {"remote_host": remote_server.host, "remote_port": remote_server.port, "ca_file": str(remote_server.cert_path),
              "target": target_args(local_server), "state_dir": str(tmp_path / "state")}
    bad_password = "wr0ng'p\u00e4ss\"word"
    listed = [
        {"local_user": ok.local_user, "remote_user": ok.remote_user, "remote_password": ok.remote_password},
        {"local_user": wrong.local_user, "remote_user": wrong.remote_user, "remote_password": bad_password},
    ]
    bad_entry = [dict(listed[0]), dict(listed[1], remote_port=70000)]
    secrets = (ok.remote_password, bad_password, local_server.master_password)

    _output, (ran, refused) = play(tmp_path, [
        ("mailops.imap.migrate", dict(common, accounts=listed, parallel=1), {}),
        ("mailops.imap.migrate", dict(common, accounts=bad_entry), {}),
    ], "-vvv", secrets=secrets)

    assert ran["failed"] is True and ran["status"] == "failed"
    assert ran["summary"]["success"] == 1 and ran["summary"]["failed"] == 1
    assert f"{wrong.remote_user} at {remote_server.host} -> {wrong.local_user}" in ran["msg"]
    assert "1 of 2 account(s) failed" in ran["msg"] and "remote server" in ran["msg"]
    assert ran["accounts"][1]["errors"][0]["kind"] == "auth_failed"
    assert ran["accounts"][0]["status"] == "success" and ran["changed"] is True
    assert len(local_inbox(ok)) == 1 and local_inbox(wrong) == []

    assert refused["failed"] is True and refused["msg"].startswith("accounts entry 2: remote_port: 70000 is not a port number")


# --- a defined task, and sync_task_info -----------------------------------------------------------------------


def define(config_dir: Path, account, task_name: str, target_name: str = "main") -> None:
    local = account.local_server
    definitions = store.Store(str(config_dir), "/nonexistent")
    target = config.parse_target({"name": target_name, "host": local.host, "port": local.port, "ca_file": str(local.cert_path),
                                  "master_user": local.master_user, "master_password": local.master_password})
    definitions.write("targets", target_name, target.public(), local.master_password)
    task = config.parse_task({"name": task_name, "target": target_name, "local_user": account.local_user,
                              "remote_user": account.remote_user, "remote_password": account.remote_password,
                              "remote_host": account.remote_server.host, "remote_port": account.remote_server.port,
                              "ca_file": str(account.remote_server.cert_path)})
    definitions.write("tasks", task_name, task.public(), account.remote_password)


def test_task_by_name_and_sync_task_info(account, tmp_path):
    config_dir, state_dir = tmp_path / "etc", tmp_path / "state"
    define(config_dir, account, "move-one")
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX",
              [(mail.make_message(f"named {i}"), (), None) for i in range(3)])
    dirs = {"config_dir": str(config_dir), "state_dir": str(state_dir)}
    secrets = (account.remote_password, account.local_server.master_password)

    output, results = play(tmp_path, [
        ("mailops.imap.sync_task_info", dict(dirs), {"check_mode": True}),
        ("mailops.imap.sync_task_info", dict(dirs, name="move-one"), {}),
        ("mailops.imap.migrate", dict(dirs, task="move-one"), {"check_mode": True, "diff": True}),
        ("mailops.imap.sync_task_info", dict(dirs, name="move-one"), {}),
        ("mailops.imap.migrate", dict(dirs, task="move-one"), {}),
        ("mailops.imap.migrate", dict(dirs, task="move-one"), {}),
        ("mailops.imap.sync_task_info", dict(dirs), {}),
        ("mailops.imap.sync_task_info", dict(dirs, name="not-defined"), {}),
        ("mailops.imap.migrate", dict(dirs, task="move-one", local_user="someone"), {}),
        ("mailops.imap.migrate", dict(dirs, task="not-defined"), {}),
    ], "-vvv", secrets=secrets)
    (listed_check, one_before, check, after_check, real, again, listed, unknown, mixed, undefined) = results

    for info in (listed_check, one_before, after_check, listed):
        assert info.get("failed") is not True, info
        assert info["changed"] is False
    assert [t["name"] for t in listed_check["tasks"]] == ["move-one"]
    before = one_before["tasks"][0]
    assert before["running"] is False and before["pid"] is None
    assert before["last_result"] is None and before["next_run"] is None
    assert before["definition"]["local_user"] == account.local_user and before["definition"]["target"] == "main"
    assert "remote_password" not in before["definition"]
    assert before["target"]["port"] == account.local_server.port and "master_password" not in before["target"]

    assert check.get("failed") is not True, check
    assert check["task"] == "move-one" and check["check_mode"] is True and check["changed"] is True
    assert check["totals"]["copied"] == 3
    assert after_check["tasks"][0]["last_result"] is None, "check mode records nothing"

    assert real.get("failed") is not True, real
    assert real["task"] == "move-one" and real["status"] == "success" and real["totals"]["copied"] == 3
    assert again["changed"] is False and again["totals"]["copied"] == 0, "the task's state is shared between runs"
    assert len(local_inbox(account)) == 3
    assert (state_dir / "tasks" / "move-one.sqlite").exists(), "the defined task's state, as its timer uses"

    last = listed["tasks"][0]["last_result"]
    assert last["task"] == "move-one" and last["status"] == "success" and last["totals"]["copied"] == 0
    assert {"started", "finished", "duration_s", "folders", "totals", "errors", "notices", "check_mode"} <= set(last)
    assert listed["tasks"][0]["running"] is False and listed["tasks"][0]["next_run"] is None

    assert unknown["failed"] is True and "'not-defined' is not defined" in unknown["msg"]
    assert mixed["failed"] is True and "local_user cannot be given with it" in mixed["msg"]
    assert undefined["failed"] is True and "'not-defined' is not defined" in undefined["msg"]
    assert "move-one" in output


def test_info_shows_a_running_task_and_migrate_skips_it(account, tmp_path):
    config_dir, state_dir = tmp_path / "etc", tmp_path / "state"
    define(config_dir, account, "busy")
    definitions = store.Store(str(config_dir), str(state_dir))
    lock_path = definitions.state_path("busy") + ".lock"
    os.makedirs(os.path.dirname(lock_path), mode=0o700)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a run of the task (a timer, imapsyncctl) holds it
        definitions.write_pid("busy")
        dirs = {"config_dir": str(config_dir), "state_dir": str(state_dir)}
        _output, (shown, skipped) = play(tmp_path, [
            ("mailops.imap.sync_task_info", dict(dirs, name="busy"), {}),
            ("mailops.imap.migrate", dict(dirs, task="busy"), {}),
        ], secrets=(account.remote_password,))
    finally:
        os.close(fd)
    assert shown["tasks"][0]["running"] is True and shown["tasks"][0]["pid"] == os.getpid()
    assert skipped.get("failed") is not True and skipped["skipped"] is True and skipped["status"] == "skipped"
    assert skipped["changed"] is False


def user_manager_unavailable() -> str | None:
    """Why a private systemd user manager (harness.systemd) cannot run here, or None."""
    if os.geteuid() != 0:
        return "it needs root (a mount namespace)"
    for tool in ("unshare", "nsenter", "systemctl", SYSTEMD):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    return None


def test_info_next_run_from_a_real_systemd_timer(account, tmp_path):
    reason = user_manager_unavailable()
    if reason is not None:
        pytest.skip(f"a private systemd user manager cannot run: {reason}")
    config_dir, state_dir = tmp_path / "etc", tmp_path / "state"
    define(config_dir, account, "scheduled")
    define(config_dir, account, "manual")
    with UserManager() as manager:
        manager.unit_dir.mkdir(parents=True, exist_ok=True)
        service = "[Service]\nType=oneshot\nExecStart=/bin/true\n"
        timer = "[Timer]\nOnCalendar=*-*-* 04:00:00 UTC\n"
        (manager.unit_dir / "mailops-imapsync@.service").write_text(service, encoding="utf-8")
        (manager.unit_dir / "mailops-imapsync@scheduled.timer").write_text(timer, encoding="utf-8")
        manager.systemctl("daemon-reload")
        manager.systemctl("start", "mailops-imapsync@scheduled.timer")
        env = [f"{key}={manager.env[key]}" for key in ("HOME", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")]
        steps = [("mailops.imap.sync_task_info", {"config_dir": str(config_dir), "state_dir": str(state_dir)}, {})]
        wrapper = ("env", *env, "nsenter", "--target", str(manager.pid), "--mount")
        _output, (shown,) = play(tmp_path, steps, secrets=(account.remote_password,), wrapper=wrapper)
    by_name = {t["name"]: t for t in shown["tasks"]}
    assert by_name["manual"]["next_run"] is None
    scheduled = by_name["scheduled"]["next_run"]
    assert scheduled is not None and scheduled.endswith("T04:00:00+00:00"), scheduled
