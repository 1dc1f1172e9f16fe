# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The state database: checkpoints, read-only check mode, the per-task lock, private files."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import state as state_mod


def test_record_reset_and_private_files(tmp_path):
    path = tmp_path / "sub" / "task.sqlite"
    st = state_mod.State(str(path))
    folder = st.reset_folder("INBOX", 11, "INBOX", 22, 0)
    st.record(folder, [(1, 100, [b"\\Seen", b"\\Recent"]), (2, 101, [])], local_uidnext=102)
    st.finish_folder(folder, 3, 77)
    st.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700

    again = state_mod.State(str(path))
    folder = again.folder("INBOX")
    assert (folder.uidvalidity, folder.local_uidvalidity, folder.remote_uidnext, folder.highestmodseq, folder.local_uidnext) == (11, 22, 3, 77, 102)
    assert again.known(folder) == {1: (100, frozenset({b"\\Seen"})), 2: (101, frozenset())}
    assert again.known_among(folder, [2, 5]) == {2: (101, frozenset())}
    again.mark_failed(folder, [5])
    assert again.failed(folder) == {5}
    again.record(folder, [(5, 103, [])])
    assert again.failed(folder) == set()
    again.forget(folder, [1])
    assert set(again.known(folder)) == {2, 5}
    folder = again.reset_folder("INBOX", 12, "INBOX", 22, 0)  # UIDVALIDITY changed: forget everything
    assert again.known(folder) == {} and folder.remote_uidnext == 0
    again.close()


def test_check_mode_reads_but_never_creates(tmp_path):
    path = tmp_path / "none" / "task.sqlite"
    ro = state_mod.State(str(path), readonly=True)
    ro.lock()
    assert ro.folder("INBOX") is None and ro.known(None) == {}
    ro.close()
    assert not path.parent.exists()


def test_lock_is_per_task(tmp_path):
    path = str(tmp_path / "task.sqlite")
    first = state_mod.State(path)
    first.lock()
    second = state_mod.State(path)
    with pytest.raises(state_mod.Busy):
        second.lock()
    first.close()
    second.lock()
    second.close()
