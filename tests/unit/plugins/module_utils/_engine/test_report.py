# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration report (_engine/report.py) against an in-memory IMAP store (fakestore), after real runs of the
builtin engine: every reason, read-only, a folder a server refuses to open, UIDVALIDITY changed."""

from __future__ import annotations

import os

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, errors, report, sync
from ansible_collections.mailops.imap.tests.unit.plugins.module_utils._engine.fakestore import Server, message

TARGET = config.parse_target({"host": "127.0.0.1", "master_user": "vmail", "master_password": "pw"})


def task(**overrides):
    data = {"local_user": "alice", "remote_user": "alice@old", "remote_password": "secret", "remote_host": "old.example.org",
            "folders": "all_except", "exclude": ["^Spam$"]}
    data.update(overrides)
    return config.parse_task(data)


class Rig:
    def __init__(self, tmp_path) -> None:
        self.remote = Server()
        self.local = Server(appendlimit=2000, refuse=lambda body: "Quota exceeded" if b"refuse me" in body else None)
        self.state = str(tmp_path / "task.sqlite")

    def connect(self, ep):
        return (self.remote if ep.side == "remote" else self.local).connect()

    def sync(self) -> None:
        assert sync.run(task(), TARGET, self.state, connect=self.connect).status in ("success", "partial")

    def report(self) -> dict:
        return report.account_report("alice", task(), TARGET, self.state, connect=self.connect)


def test_every_missing_message_has_its_reason_and_nothing_is_written(tmp_path):
    rig = Rig(tmp_path)
    for i in range(3):
        rig.remote.add("INBOX", message(f"m{i}@x"))
    rig.remote.add("INBOX", message("big@x", body="x" * 3000))
    rig.remote.add("INBOX", message("refused@x", body="refuse me"))
    rig.remote.add("Spam", message("spam@x"))
    rig.sync()
    rig.remote.add("INBOX", message("late@x"))
    state_files = sorted(os.listdir(tmp_path))
    before = (rig.remote.snapshot(), rig.local.snapshot())

    got = rig.report()

    assert (rig.remote.snapshot(), rig.local.snapshot()) == before and sorted(os.listdir(tmp_path)) == state_files
    assert all(command != "SELECT" for command, _folder in rig.remote.commands + rig.local.commands)
    inbox, spam = got["folders"]
    assert (inbox["folder"], inbox["status"], inbox["remote_messages"], inbox["copied"], inbox["local_messages"]) == (
        "INBOX", "incomplete", 6, 3, 3)
    assert (inbox["too_big"], inbox["refused"], inbox["not_copied"], inbox["excluded"], inbox["missing"]) == (1, 1, 1, 0, 3)
    assert inbox["remote_bytes"] == sum(len(body) for _uid, body, _flags in before[0]["INBOX"])
    assert inbox["local_bytes"] == sum(len(body) for _uid, body, _flags in before[1]["INBOX"])
    assert (spam["status"], spam["excluded"], spam["missing"], spam["local_messages"]) == ("excluded", 1, 1, 0)
    assert got["status"] == "incomplete" and got["totals"]["missing"] == 4 and got["kind"] is None


def test_a_complete_migration_is_complete_and_excluded_folders_do_not_change_that(tmp_path):
    rig = Rig(tmp_path)
    rig.remote.add("INBOX", message("a@x"))
    rig.remote.add("Spam", message("spam@x"))
    rig.sync()
    got = rig.report()
    assert got["status"] == "complete" and [f["status"] for f in got["folders"]] == ["complete", "excluded"]


def test_without_state_or_after_a_uidvalidity_change_nothing_counts_as_copied(tmp_path):
    rig = Rig(tmp_path)
    rig.remote.add("INBOX", message("a@x"))
    assert rig.report()["folders"][0]["not_copied"] == 1 and not os.listdir(tmp_path)  # never ran: no state created
    rig.sync()
    assert rig.report()["folders"][0]["copied"] == 1
    rig.remote.recreate("INBOX")  # a new UIDVALIDITY: the recorded UIDs say nothing about the messages now
    (inbox,) = rig.report()["folders"]
    assert (inbox["copied"], inbox["local_messages"]) == (0, 1) and inbox["not_copied"] == inbox["remote_messages"] > 0


def test_a_folder_a_server_refuses_to_open_is_that_folders_failure(tmp_path, monkeypatch):
    rig = Rig(tmp_path)
    rig.remote.add("INBOX", message("a@x"))
    rig.remote.add("Archive", message("b@x"))
    rig.sync()
    session_class = type(rig.remote.connect())
    opened = session_class.select

    def select(self, folder, readonly):
        if folder == "Archive" and self.server is rig.remote:
            raise errors.SyncError(errors.PROTOCOL_ERROR, "The remote server refused to open 'Archive' (NO Mailbox is locked).")
        return opened(self, folder, readonly)

    monkeypatch.setattr(session_class, "select", select)
    got = rig.report()
    archive, inbox = got["folders"][1], got["folders"][0]
    assert (archive["status"], archive["kind"], archive["remote_messages"]) == ("failed", "protocol_error", 0)
    assert "Mailbox is locked" in archive["message"]
    assert inbox["status"] == "complete" and got["status"] == "incomplete"


def test_an_account_that_cannot_log_in_is_failed_with_its_kind(tmp_path):
    def refuse(ep):
        raise errors.SyncError(errors.AUTH_FAILED, f"The {ep.side} server refused the login.")

    got = report.account_report("alice", task(), TARGET, str(tmp_path / "s.sqlite"), connect=refuse)
    assert (got["status"], got["kind"], got["message"], got["folders"]) == (
        "failed", "auth_failed", "The remote server refused the login.", [])
    imapsync = report.account_report("alice", task(engine="imapsync"), TARGET, str(tmp_path / "s.sqlite"), connect=refuse)
    assert imapsync["status"] == "failed" and imapsync["kind"] == "unsupported"
