# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The directory of a detached migrate run: its heartbeat, what a poll shows of it, when it counts as abandoned."""

from __future__ import annotations

import json
import os
import stat
import time

from ansible_collections.mailops.imap.plugins.module_utils import _migrate


def test_a_run_nobody_polls_for_long_is_abandoned_and_stops(tmp_path):
    job = _migrate.Job(str(tmp_path), interval=1.0)
    job.touch()
    heartbeat = tmp_path / "heartbeat"
    assert stat.S_IMODE(heartbeat.stat().st_mode) == 0o600
    assert not job.abandoned() and not job.watch().is_set()
    old = time.time() - 3 * job.interval - _migrate.ABANDONED_AFTER_S - 5
    os.utime(heartbeat, (old, old))
    assert job.abandoned() and job.watch().is_set()
    job.touch()
    assert not job.abandoned(), "every poll touches the heartbeat"


def test_snapshots_count_the_done_accounts_and_show_the_running_ones(tmp_path):
    job = _migrate.Job(str(tmp_path), interval=1.0)
    (tmp_path / "accounts").write_text("3", encoding="ascii")
    (tmp_path / "account-0.json").write_text(json.dumps({"state": "done"}), encoding="utf-8")
    (tmp_path / "account-1.json").write_text(json.dumps({"state": "running", "account": "b"}), encoding="utf-8")
    (tmp_path / "account-2.json").write_text("{half a fil", encoding="utf-8")
    shown = job.snapshots()
    assert shown == {"job": tmp_path.name, "accounts": 3, "done": 1, "running": [{"state": "running", "account": "b"}]}
    assert job.wait(0.1) == "running", "no result yet, and the run's process is not known yet"
    (tmp_path / "pid").write_text("999999999", encoding="ascii")
    assert job.wait(5) == "lost"
    (tmp_path / "result.json").write_text("{}", encoding="utf-8")
    assert job.wait(5) == "result"
