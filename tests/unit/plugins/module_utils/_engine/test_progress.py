# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The progress snapshot of a run and the line shown for it (untrusted: it comes from the managed host)."""

from __future__ import annotations

import json
import os
import stat

from ansible_collections.mailops.imap.plugins.module_utils._engine import progress
from ansible_collections.mailops.imap.plugins.module_utils._engine.result import FolderResult


def test_snapshot_counts_finished_folders_whole_and_is_written_0600(tmp_path):
    path = str(tmp_path / "account-0.json")
    shown = progress.Progress(path, "alice at imap.old.example.org -> alice")
    begun: list[FolderResult] = []
    shown.plan(begun, ["INBOX", "Archive\x1b[31m"], {"INBOX": {"MESSAGES": 10}, "Archive\x1b[31m": {"MESSAGES": 30}})
    begun.append(FolderResult(remote="INBOX", local="INBOX", copied=2, already_present=1))
    begun.append(FolderResult(remote="Archive\x1b[31m", local="Archive", copied=5, bytes=4096))
    shown.update(force=True)
    with open(path, encoding="utf-8") as handle:
        snapshot = json.load(handle)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert snapshot["messages_done"] == 15 and snapshot["messages_total"] == 40 and snapshot["bytes_done"] == 4096
    assert snapshot["folder"] == "Archive\\x1b[31m" and snapshot["folder_number"] == 2
    shown.finish()
    with open(path, encoding="utf-8") as handle:
        assert json.load(handle)["state"] == "done"


def test_line_shows_counts_rate_and_time_left():
    line = progress.line({"account": "a at h -> a", "state": "running", "folder": "INBOX", "folder_number": 1,
                          "folders": 3, "messages_done": 250, "messages_total": 1000, "bytes_done": 10 * 1024 * 1024,
                          "elapsed_s": 10})
    assert line == ("a at h -> a: folder 1 of 3 (INBOX), 250 of 1000 messages (25%), 10.0 MiB copied, 1.0 MiB/s, "
                    "about 30 s left")


def test_line_escapes_what_the_host_wrote_and_refuses_nonsense():
    line = progress.line({"account": "evil\x1b]0;owned\x07", "folder": "x\r\n\u202eINBOX" + "y" * 500, "folder_number": 1,
                          "folders": 1, "messages_done": 1, "messages_total": None, "bytes_done": 0, "elapsed_s": 0})
    assert line is not None
    assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f or c == "\u202e" for c in line)
    assert "\\x1b]0;owned\\x07" in line and len(line) < 2 * progress.NAME_LIMIT + 100
    assert progress.line({"account": "a", "messages_done": -1, "bytes_done": 0, "elapsed_s": 0}) is None
    assert progress.line({"account": "a", "messages_done": "9", "bytes_done": 0, "elapsed_s": 0}) is None
    assert progress.line(["not", "a", "snapshot"]) is None


def test_duration_and_size():
    assert progress.duration(3725) == "1 h 02 min" and progress.duration(200) == "3 min 20 s" and progress.duration(4) == "4 s"
    assert progress.size(512) == "512 B" and progress.size(1536) == "1.5 KiB"
