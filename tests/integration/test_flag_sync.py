"""flag_sync: changed_folders against a real remote Dovecot that announces no CONDSTORE (as Courier-IMAP): a run that
finds nothing new opens no remote folder, and new mail still arrives (docs/sync-engine.md "Identity: never a
duplicate, never a loss")."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import mail
from harness.dovecot import DovecotServer

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, sync

# Dovecot's own capabilities without CONDSTORE, QRESYNC and LIST-STATUS (which Courier-IMAP 5.0 lacks too).
CAPABILITIES = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE NAMESPACE UIDPLUS CHILDREN UNSELECT MULTIAPPEND"
# A line of a rawlog *.in file: a time stamp, the tag, the command (UID and its command), its first argument.
_COMMAND = re.compile(rb"^[0-9.]+ \S+ ((?:UID )?[A-Z]+) ?(\"[^\"]*\"|[^ \r\n]*)", re.MULTILINE)
_OPENING = ("SELECT", "EXAMINE")


class NoCondstoreRemote(DovecotServer):
    """The harness's remote Dovecot, announcing CAPABILITIES only, with a raw log of every IMAP session after login
    (Dovecot's rawlog_dir: one ``*.in`` file per session holding what the client sent)."""

    def __init__(self) -> None:
        super().__init__("remote")
        self.rawlog_dir = self.root / "rawlog"
        self.rawlog_dir.mkdir(mode=0o700)
        os.chown(self.rawlog_dir, self._uid, self._gid)

    def _render_config(self) -> str:
        return super()._render_config() + (
            f"\nimap_capability = {CAPABILITIES}\n"
            f"protocol imap {{\n  rawlog_dir = {self.rawlog_dir}\n}}\n"
        )

    def commands(self) -> list[tuple[str, str]]:
        """The commands the sessions since the last call sent, with their first argument (``("STATUS", "Work")``);
        the logs are then removed. A session's log is complete once it holds the client's LOGOUT (the engine logs
        out of every session)."""
        deadline = time.monotonic() + 10
        while True:
            logs = sorted(self.rawlog_dir.glob("*.in"))
            texts = [path.read_bytes() for path in logs]
            if all(b" LOGOUT" in text for text in texts) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for path in self.rawlog_dir.iterdir():
            path.unlink()
        return [(command.decode(), argument.decode().strip('"')) for text in texts for command, argument in _COMMAND.findall(text)]

    def reading(self) -> tuple[list[str], list[str]]:
        """The folders the sessions since the last call asked the STATUS of, and those they opened (SELECT, EXAMINE:
        no FETCH or SEARCH without one), each sorted."""
        commands = self.commands()
        return sorted(arg for c, arg in commands if c == "STATUS"), sorted(arg for c, arg in commands if c in _OPENING)


@pytest.fixture(scope="module")
def remote() -> Iterator[NoCondstoreRemote]:
    with NoCondstoreRemote() as server:
        yield server


def test_changed_folders_opens_no_unchanged_remote_folder_and_new_mail_still_arrives(remote, local_server, tmp_path: Path):
    user = remote.add_user("flags", "remote-pw")
    local_user = local_server.add_user(f"flags-{uuid.uuid4().hex[:8]}", "local-pw")  # the session's local server
    for folder in ("INBOX", "Work", "Archive"):
        mail.seed(remote, user, "remote-pw", folder, [mail.make_message(f"{folder} {n}") for n in range(3)])
    with mail.session(remote, user, "remote-pw") as client:
        assert b"CONDSTORE" not in client.capabilities() and b"UIDPLUS" in client.capabilities()

    def run(flag_sync: str) -> dict:
        task = config.parse_task({
            "local_user": local_user, "remote_user": user, "remote_password": "remote-pw", "remote_host": remote.host,
            "remote_port": remote.port, "ca_file": str(remote.cert_path), "flag_sync": flag_sync})
        target = config.parse_target({
            "host": local_server.host, "port": local_server.port, "ca_file": str(local_server.cert_path),
            "master_user": local_server.master_user, "master_password": local_server.master_password})
        result = sync.run(task, target, str(tmp_path / "task.sqlite")).as_dict()
        assert result["status"] == "success", result
        return result["totals"]

    folders = ["Archive", "INBOX", "Sent Items", "Work"]
    assert run("changed_folders")["copied"] == 9
    remote.commands()
    assert run("changed_folders")["copied"] == 0
    assert remote.reading() == (folders, [])  # a STATUS per folder, nothing opened
    assert run("all")["copied"] == 0
    assert remote.reading() == (folders, folders)  # flag_sync: all reads the flags of every folder

    mail.seed(remote, user, "remote-pw", "Work", [mail.make_message("Work new")])
    remote.commands()
    assert run("changed_folders")["copied"] == 1
    assert remote.reading() == (folders, ["Work"])
    subjects = [m.subject for m in mail.messages(local_server, local_user, None, "Work", master=True)]
    assert sorted(subjects) == ["Work 0", "Work 1", "Work 2", "Work new"]
