# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lines the migrate action prints for a running migration (what the module sent is not trusted)."""

from __future__ import annotations

from ansible_collections.mailops.imap.plugins.action import migrate as action

RUNNING = {"account": "bob at imap.old.example.org -> bob", "state": "running", "folder": "INBOX", "folder_number": 1,
           "folders": 2, "messages_done": 5, "messages_total": 10, "bytes_done": 2048, "elapsed_s": 2}


def test_bulk_shows_accounts_done_and_each_running_account():
    lines = action.progress_lines({"job": "x", "accounts": 3, "done": 1, "running": [RUNNING, "junk", {"account": 1}]},
                                  no_log=False)
    assert lines == ["1 of 3 accounts done",
                     "bob at imap.old.example.org -> bob: folder 1 of 2 (INBOX), 5 of 10 messages (50%), 2.0 KiB copied, "
                     "1.0 KiB/s, about 2 s left"]


def test_no_log_names_no_account_and_nonsense_shows_nothing():
    lines = action.progress_lines({"accounts": 1, "done": 0, "running": [RUNNING]}, no_log=True)
    assert lines == ["(no_log): folder 1 of 2, 5 of 10 messages (50%), 2.0 KiB copied, 1.0 KiB/s, about 2 s left"]
    assert action.progress_lines("running", no_log=False) == []
