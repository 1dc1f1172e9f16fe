"""A hostile remote server (the scriptable fake) against the real local Dovecot: command injection through flags,
control characters in folder names and logs, dripping servers, huge literals and folder lists (issue 8)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from harness import mail
from harness.fakeimap import FakeImap, FakeMessage, hostile_flag_payload

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, imap, runner, store as store_mod, sync

FORGED = "2026-11-30T18:00:00+00:00 status success: 0 messages copied"
HOSTILE_NAME = f"x\n{FORGED}\x1b[2J"


def target_data(account) -> dict:
    server = account.local_server
    return {"host": server.host, "port": server.port, "security": "starttls", "ca_file": str(server.cert_path),
            "master_user": server.master_user, "master_password": server.master_password}


def run(fake: FakeImap, account, tmp_path: Path, log=None, **overrides):
    task = config.parse_task(fake.task(account.local_user, **overrides))
    return sync.run(task, config.parse_target(target_data(account)), str(tmp_path / "task.sqlite"), log=log)


def local(account, folder: str):
    return mail.messages(account.local_server, account.local_user, None, folder, master=True)


@pytest.fixture(name="fake")
def fake_server():
    with FakeImap() as server:
        yield server


@pytest.fixture(name="victim")
def victim_account(account):
    """A local folder ``Victim`` holding one message: an injected ``DELETE "Victim"`` would remove it."""
    mail.seed(account.local_server, account.local_user, None, "Victim", [mail.make_message("keep me")], master=True)
    return account


def _assert_victim_intact_and_flags_clean(account, result):
    assert [m.subject for m in local(account, "Victim")] == ["keep me"]
    copied = local(account, "INBOX")
    assert len(copied) == 1
    assert copied[0].flags == frozenset({"\\Seen", "\\Flagged"})  # the valid flags are kept, the hostile one is not
    notices = [n for n in result.notices if "not valid IMAP flags" in n]
    assert len(notices) == 1 and "\r" not in notices[0] and "\n" not in notices[0] and "\\r\\n" in notices[0]


def test_flags_injecting_a_command_into_append_are_dropped(fake, victim, tmp_path):
    fake.folders["INBOX"].add(FakeMessage(mail.make_message("hostile flags"), flags=hostile_flag_payload("Victim")))
    result = run(fake, victim, tmp_path)
    assert result.status == "success", result.as_dict()
    _assert_victim_intact_and_flags_clean(victim, result)


def test_flags_injecting_a_command_into_a_flag_update_are_dropped(fake, victim, tmp_path):
    message = fake.folders["INBOX"].add(FakeMessage(mail.make_message("flags change later"), flags=b"(\\Seen)"))
    assert run(fake, victim, tmp_path).status == "success"
    message.flags = hostile_flag_payload("Victim")  # the second run merges the remote's new flags into the local copy
    result = run(fake, victim, tmp_path)
    assert result.status == "success", result.as_dict()
    assert result.totals()["flags_updated"] == 1
    _assert_victim_intact_and_flags_clean(victim, result)


def test_control_characters_in_a_folder_name_reach_neither_the_local_server_nor_the_log(
        fake, account, tmp_path, imapsyncctl):
    fake.folder(HOSTILE_NAME).add(FakeMessage(mail.make_message("in a hostile folder")))
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target(target_data(account))
    st.write("targets", "default", target.public(), target.master_password)
    task = config.parse_task(dict(fake.task(account.local_user), name="t1"))
    st.write("tasks", "t1", task.public(), task.remote_password)
    result = runner.run_task(st, "t1")
    assert result.status == "success", result.as_dict()
    # The mail is kept, in a folder whose control characters became "_" (as a local separator would).
    landed = "x_" + FORGED.replace(".", "_") + "_[2J"
    assert [m.subject for m in local(account, landed)] == ["in a hostile folder"]
    log = Path(st.newest_log("t1")).read_text(encoding="utf-8")
    shown = subprocess.run([imapsyncctl, "log", "t1", "--config-dir", st.config_dir, "--state-dir", st.state_dir],
                           capture_output=True, check=True).stdout.decode()
    for text in (log, shown):
        assert "\x1b" not in text
        assert not any(line.startswith(FORGED) for line in text.splitlines())
        assert "x\\n" + FORGED + "\\x1b[2J" in text  # the name, escaped
    summary = "\n".join(runner.summary_lines(result))
    assert "\x1b" not in summary and "x\\n" + FORGED in summary


@pytest.fixture(name="fast")
def fast_timeouts(monkeypatch):
    """Timeouts of a second, reconnects without backoff."""
    monkeypatch.setattr(imap, "DEFAULT_TIMEOUT", 1.0)
    monkeypatch.setattr(sync, "BACKOFF_S", (0, 0, 0, 0, 0))


@pytest.mark.usefixtures("fast")
def test_a_dripping_greeting_fails_the_run_at_the_login_deadline(fake, account, tmp_path):
    fake.drip, fake.drip_interval = {"greeting"}, 0.1  # one byte every 0.1 s: the read timeout (1 s) never fires
    started = time.monotonic()
    result = run(fake, account, tmp_path)
    assert time.monotonic() - started < 4
    assert result.status == "failed"
    assert [e["kind"] for e in result.errors] == ["timeout"]
    assert "within 1 s" in result.errors[0]["detail"] and f"127.0.0.1:{fake.port}" in result.errors[0]["detail"]


@pytest.mark.usefixtures("fast")
def test_a_response_dripping_almost_nothing_is_a_timeout_then_reconnects(fake, account, tmp_path):
    fake.folders["INBOX"].add(FakeMessage(mail.make_message("slow")))
    fake.drip, fake.drip_interval = {"FETCH"}, 0.05  # 20 bytes/s, far below PROGRESS_BYTES per second
    result = run(fake, account, tmp_path)
    assert result.status == "failed"
    assert [e["kind"] for e in result.errors] == ["timeout"]
    assert "stalled while fetching messages" in result.errors[0]["detail"]
    assert "gave up after 5 reconnects" in result.errors[0]["detail"]
    assert fake.connections == 6  # the first connection and five reconnects


def test_a_slow_but_steady_response_is_not_cut(fake, account, tmp_path, monkeypatch):
    monkeypatch.setattr(imap, "DEFAULT_TIMEOUT", 0.5)
    monkeypatch.setattr(imap, "PROGRESS_BYTES", 16)
    fake.folders["INBOX"].add(FakeMessage(mail.make_message("steady", body="x" * 200)))
    fake.drip, fake.drip_interval = {"FETCH"}, 0.004  # ~250 bytes/s: each response takes longer than the timeout
    result = run(fake, account, tmp_path)
    assert result.status == "success", result.as_dict()
    assert [m.subject for m in local(account, "INBOX")] == ["steady"]


@pytest.mark.usefixtures("fast")
def test_keepalive_lines_of_a_slow_command_are_progress(fake, account, tmp_path):
    """A server working on a long command (Dovecot's "* OK Searched 42% of the mailbox") sends short lines, far below
    PROGRESS_BYTES per timeout: each whole line is progress, the command is not cut."""
    fake.folders["INBOX"].add(FakeMessage(mail.make_message("found at last")))
    fake.keepalive = {"SEARCH": (6, 0.4)}  # 2.4 s of answers of 20 bytes, against a timeout of 1 s
    result = run(fake, account, tmp_path)
    assert result.status == "success", result.as_dict()
    assert [m.subject for m in local(account, "INBOX")] == ["found at last"]


def test_a_message_larger_than_its_announced_size_is_copied(fake, account, tmp_path):
    """Some servers under-report RFC822.SIZE: a body above what was announced (here by a fifth) is no violation."""
    big = mail.make_message("under-reported", body="y" * (6 * 1024 * 1024))
    fake.folders["INBOX"].add(FakeMessage(big, size=5 * 1024 * 1024))
    result = run(fake, account, tmp_path)
    assert result.status == "success", result.as_dict()
    assert [m.size for m in local(account, "INBOX")] == [len(big)]


def test_a_message_above_the_local_limit_is_an_error_not_a_fetch(fake, account, tmp_path):
    fake.folders["INBOX"].add(FakeMessage(mail.make_message("small")))
    fake.folders["INBOX"].add(FakeMessage(mail.make_message("announced huge"), size=3 * 1024 ** 3))
    result = run(fake, account, tmp_path)
    assert result.status == "partial"
    assert [(e["kind"], e["folder"], e["uid"]) for e in result.errors] == [("too_big", "INBOX", 2)]
    assert f"{3 * 1024 ** 3} bytes" in result.errors[0]["detail"]
    assert [m.subject for m in local(account, "INBOX")] == ["small"]
    again = run(fake, account, tmp_path)  # never skipped silently: the next run reports it again
    assert [(e["kind"], e["uid"]) for e in again.errors] == [("too_big", 2)] and again.status == "partial"


def test_a_literal_bigger_than_announced_is_cut_off_before_it_is_read(fake, account, tmp_path):
    def endless():
        chunk = b"x" * 65536
        for _count in range(2 * 1024 ** 3 // len(chunk)):
            yield chunk

    fake.folders["INBOX"].add(FakeMessage(b"", size=1000, literal=(2 * 1024 ** 3, endless)))
    fake.folder("Other").add(FakeMessage(mail.make_message("still copied")))
    started = time.monotonic()
    result = run(fake, account, tmp_path)
    assert time.monotonic() - started < 20
    assert result.status == "partial"
    assert [(e["kind"], e["folder"]) for e in result.errors] == [("protocol_error", "INBOX")]
    assert "literal of 2147483648 bytes" in result.errors[0]["detail"]
    assert fake.body_bytes_sent < 64 * 1024 * 1024  # what the kernel buffers held, not the 2 GiB
    assert [m.subject for m in local(account, "Other")] == ["still copied"]  # the next folder, on a new connection


def test_folder_lanes_keep_the_bounds_against_a_hostile_remote(fake, victim, tmp_path):
    """Enough folders for lanes (docs/sync-engine.md "Transfer"): a literal bigger than announced fails its folder only,
    on its lane; the hostile flags of every other folder are dropped, and counted across the lanes."""
    def endless():
        chunk = b"x" * 65536
        for _count in range(2 * 1024 ** 3 // len(chunk)):
            yield chunk

    names = [f"Lane{number:02d}" for number in range(sync.LANE_MIN_FOLDERS + 2)]
    for name in names[1:]:
        fake.folder(name).add(FakeMessage(mail.make_message(f"{name} mail"), flags=hostile_flag_payload("Victim")))
    fake.folder(names[0]).add(FakeMessage(b"", size=1000, literal=(2 * 1024 ** 3, endless)))
    result = run(fake, victim, tmp_path)
    assert result.status == "partial", result.as_dict()
    assert fake.connections > 2  # more than one lane
    assert [(e["kind"], e["folder"]) for e in result.errors] == [("protocol_error", names[0])]
    assert fake.body_bytes_sent < 64 * 1024 * 1024
    assert [m.subject for m in local(victim, "Victim")] == ["keep me"]
    for name in names[1:]:
        assert [(m.subject, m.flags) for m in local(victim, name)] == [(f"{name} mail", frozenset({"\\Seen", "\\Flagged"}))]
    # one dropped keyword per message, whichever lane read it
    assert [n for n in result.notices if "not valid IMAP flags" in n][0].startswith(f"A server sent {len(names) - 1} flags")


def test_a_list_of_300000_folders_is_refused_with_a_sentence(fake, account, tmp_path):
    fake.extra_list = lambda: (b'* LIST () "/" "f%d"\r\n' % i for i in range(300_000))
    started = time.monotonic()
    result = run(fake, account, tmp_path)
    assert time.monotonic() - started < 60
    assert result.status == "failed"
    assert [e["kind"] for e in result.errors] == ["protocol_error"]
    detail = result.errors[0]["detail"]
    assert "while listing folders" in detail and f"more than {imap.MAX_RESPONSES} responses to one command" in detail


def test_an_unencrypted_or_unverified_remote_is_noticed(fake, account, tmp_path):
    fake.folders["INBOX"].add(FakeMessage(mail.make_message("plain")))
    result = run(fake, account, tmp_path)
    assert result.status == "success"
    assert any("not encrypted (remote_security: none)" in n for n in result.notices), result.notices

    verified = sync.run(config.parse_task({
        "local_user": account.local_user, "remote_user": account.remote_user, "remote_password": account.remote_password,
        "remote_host": account.remote_server.host, "remote_port": account.remote_server.port,
        "remote_security": "starttls", "ca_file": str(account.remote_server.cert_path),
    }), config.parse_target(target_data(account)), str(tmp_path / "verified.sqlite"))
    assert verified.status == "success" and not any("crossed the network" in n or "not verified" in n for n in verified.notices)
    unverified = sync.run(config.parse_task({
        "local_user": account.local_user, "remote_user": account.remote_user, "remote_password": account.remote_password,
        "remote_host": account.remote_server.host, "remote_port": account.remote_server.port,
        "remote_security": "starttls", "validate_certs": False,
    }), config.parse_target(target_data(account)), str(tmp_path / "unverified.sqlite"))
    assert unverified.status == "success"
    assert any("was not verified (validate_certs: false)" in n for n in unverified.notices), unverified.notices
