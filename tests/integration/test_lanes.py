# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Folder lanes against real Dovecot servers (docs/sync-engine.md "Transfer"): an account with many new folders is
synced on several pairs of sessions, every message copied once, the result in folder order; the no-change re-run uses one
lane."""

from __future__ import annotations

import datetime

from harness import mail
from test_engine import expected_local, local_snapshot, remote_snapshot, run

from ansible_collections.mailops.imap.plugins.module_utils._engine import sync

D1 = datetime.datetime(2024, 3, 1, 9, 30, tzinfo=datetime.timezone.utc)


def test_many_new_folders_are_synced_on_lanes_exactly_once(account, tmp_path, monkeypatch):
    names = [f"Lane{number:02d}" for number in range(sync.LANE_MIN_FOLDERS)]
    for name in names:
        mail.seed(account.remote_server, account.remote_user, account.remote_password, name,
                  [(mail.make_message(f"{name} {i}", date=D1), (b"\\Seen",) if i else (), D1) for i in range(2)])
    opened = []
    connect = sync.Connection

    def counting(ep):
        opened.append(ep.side)
        return connect(ep)

    monkeypatch.setattr(sync, "Connection", counting)
    first = run(account, tmp_path).as_dict()
    assert first["status"] == "success", first
    assert sorted(opened) == ["local"] * sync.LANES + ["remote"] * sync.LANES  # a pair of sessions per lane
    remote, mapping = remote_snapshot(account), {f["remote"]: f["local"] for f in first["folders"]}
    assert local_snapshot(account) == expected_local(remote, mapping)
    assert [f["remote"] for f in first["folders"] if f["remote"].startswith("Lane")] == names  # in folder order
    assert first["totals"]["copied"] == 2 * len(names) and first["totals"]["folders_created"] == len(names)
    opened.clear()
    again = run(account, tmp_path).as_dict()
    assert again["status"] == "success" and again["totals"]["copied"] == 0
    assert sorted(opened) == ["local", "remote"]  # nothing to do: one lane
    assert local_snapshot(account) == expected_local(remote, mapping)
