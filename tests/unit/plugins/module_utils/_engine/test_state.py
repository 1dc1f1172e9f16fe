# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The state database: checkpoints, read-only check mode, the per-task lock, private files."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import errors, state as state_mod


def test_record_reset_and_private_files(tmp_path):
    path = tmp_path / "sub" / "task.sqlite"
    st = state_mod.State(str(path))
    folder = st.reset_folder("INBOX", 11, "INBOX", 22, 0)
    st.record(folder, [(1, 100, [b"\\Seen", b"\\Recent"]), (2, 101, [])], local_uidnext=102)
    st.finish_folder(folder, 3, 77, 2)
    st.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700

    again = state_mod.State(str(path))
    folder = again.folder("INBOX")
    assert (folder.uidvalidity, folder.local_uidvalidity, folder.remote_uidnext, folder.highestmodseq, folder.local_uidnext,
            folder.remote_messages) == (11, 22, 3, 77, 102, 2)
    assert again.known(folder) == {1: (100, frozenset({b"\\Seen"})), 2: (101, frozenset())}
    assert again.known_among(folder, [2, 5]) == {2: (101, frozenset())}
    again.mark_failed(folder, [5])
    assert again.failed(folder) == {5}
    again.record(folder, [(5, 103, [])])
    assert again.failed(folder) == set()
    again.forget(folder, [1])
    assert set(again.known(folder)) == {2, 5}
    folder = again.reset_folder("INBOX", 12, "INBOX", 22, 0)  # UIDVALIDITY changed: forget everything
    assert again.known(folder) == {} and folder.remote_uidnext == 0 and folder.remote_messages is None
    again.close()


def test_check_mode_reads_but_never_creates(tmp_path):
    path = tmp_path / "none" / "task.sqlite"
    ro = state_mod.State(str(path), readonly=True)
    ro.lock()
    assert ro.folder("INBOX") is None and ro.known(None) == {}
    ro.close()
    assert not path.parent.exists()


# The folders table of schema version 1, as released before folders.remote_messages.
_VERSION_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE folders (
    id INTEGER PRIMARY KEY,
    remote TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    local TEXT NOT NULL,
    local_uidvalidity INTEGER NOT NULL,
    remote_uidnext INTEGER NOT NULL DEFAULT 0,
    highestmodseq INTEGER NOT NULL DEFAULT 0,
    local_uidnext INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE messages (folder INTEGER NOT NULL, ruid INTEGER NOT NULL, luid INTEGER, flags TEXT NOT NULL,
                       PRIMARY KEY (folder, ruid)) WITHOUT ROWID;
CREATE INDEX messages_luid ON messages (folder, luid);
CREATE TABLE failed (folder INTEGER NOT NULL, ruid INTEGER NOT NULL, PRIMARY KEY (folder, ruid)) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO folders VALUES (1, 'INBOX', 11, 'INBOX', 22, 3, 0, 102);
INSERT INTO messages VALUES (1, 1, 100, '\\Seen'), (1, 2, 101, '');
"""


def test_a_state_file_of_schema_version_1_is_read_in_check_mode_and_migrated_by_a_run(tmp_path):
    path = tmp_path / "task.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_VERSION_1)
    db.close()
    original = path.read_bytes()
    kept = (11, 22, 3, 0, 102)

    def recorded(st):
        folder = st.folder("INBOX")
        values = (folder.uidvalidity, folder.local_uidvalidity, folder.remote_uidnext, folder.highestmodseq, folder.local_uidnext)
        assert values == kept and st.known(folder) == {1: (100, frozenset({b"\\Seen"})), 2: (101, frozenset())}
        return folder

    ro = state_mod.State(str(path), readonly=True)  # check mode: read as it is, the count unknown, nothing written
    assert recorded(ro).remote_messages is None
    ro.close()
    assert path.read_bytes() == original and os.listdir(tmp_path) == ["task.sqlite"]

    st = state_mod.State(str(path))  # a run adds the column, keeps everything else
    folder = recorded(st)
    assert folder.remote_messages is None
    st.finish_folder(folder, 3, 0, 2)
    st.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (str(state_mod.SCHEMA_VERSION),)
    db.close()
    for readonly in (True, False):
        again = state_mod.State(str(path), readonly=readonly)
        assert recorded(again).remote_messages == 2
        again.close()


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


def _filled(path: str, count: int = 20000) -> None:
    st = state_mod.State(path)
    folder = st.reset_folder("INBOX", 1, "INBOX", 1, 0)
    st.record(folder, [(uid, uid, [b"\\Seen"]) for uid in range(1, count + 1)])
    st.close()


def _damage(path: str, offset: int = 3 * 4096) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xa5" * (os.path.getsize(path) - offset))


@pytest.mark.parametrize("damage", ["pages", "header", "truncated"])
def test_a_damaged_state_is_set_aside_and_a_fresh_one_started(tmp_path, damage):
    path = str(tmp_path / "task.sqlite")
    _filled(path)
    if damage == "pages":
        _damage(path)
    elif damage == "header":
        _damage(path, offset=0)
    else:
        os.truncate(path, os.path.getsize(path) // 3)
    original = open(path, "rb").read()

    ro = state_mod.State(path, readonly=True)  # check mode: plans as with lost state, renames nothing
    assert ro.folder("INBOX") is None
    assert len(ro.notices) == 1 and "is damaged" in ro.notices[0] and "a real run sets it aside" in ro.notices[0]
    ro.close()
    assert os.listdir(tmp_path) == ["task.sqlite"]

    st = state_mod.State(path)
    assert st.folder("INBOX") is None  # lost state: the engine matches by identity
    kept = [name for name in os.listdir(tmp_path) if name.startswith("task.sqlite.corrupt-")]
    assert len(kept) == 1 and open(tmp_path / kept[0], "rb").read() == original
    assert len(st.notices) == 1 and str(tmp_path / kept[0]) in st.notices[0] and "writable" not in st.notices[0]
    folder = st.reset_folder("INBOX", 1, "INBOX", 1, 0)
    st.record(folder, [(1, 1, [])])
    st.close()
    assert not state_mod.State(path).notices


def test_damage_found_during_a_run_sets_the_file_aside_and_stops_the_run(tmp_path):
    path = str(tmp_path / "task.sqlite")
    _filled(path)
    st = state_mod.State(path)
    folder = st.folder("INBOX")
    _damage(path)
    st.db.execute("PRAGMA shrink_memory")  # what SQLite cached at open would hide the damage for a while
    with pytest.raises(errors.SyncError) as caught:
        st.known(folder)
    assert caught.value.kind == "state_error"
    kept = [name for name in os.listdir(tmp_path) if name.startswith("task.sqlite.corrupt-")]
    assert len(kept) == 1 and not os.path.exists(path)
    assert f"set aside as {tmp_path / kept[0]}" in caught.value.message and "identity" in caught.value.message
    st.close()
    assert not state_mod.State(path).notices  # the next run starts afresh


def test_symbolic_links_are_refused_and_their_targets_untouched(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"precious")
    os.chmod(elsewhere, 0o644)
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    os.symlink(elsewhere, state_dir / "p1.sqlite")
    with pytest.raises(errors.SyncError, match="p1.sqlite is a symbolic link; remove it") as caught:
        state_mod.State(str(state_dir / "p1.sqlite"))
    assert caught.value.kind == "state_error"
    os.unlink(state_dir / "p1.sqlite")
    os.symlink(elsewhere, state_dir / "p1.sqlite.lock")
    with pytest.raises(errors.SyncError, match="p1.sqlite.lock is a symbolic link"):
        state_mod.State(str(state_dir / "p1.sqlite")).lock()
    assert elsewhere.read_bytes() == b"precious" and stat.S_IMODE(os.stat(elsewhere).st_mode) == 0o644


def test_a_state_dir_others_can_write_is_refused(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    os.chmod(state_dir, 0o777)
    with pytest.raises(errors.SyncError, match=r"can be written by other users \(mode 0777\); make it writable by its "
                                               r"owner only \(chmod go-w"):
        state_mod.State(str(state_dir / "p1.sqlite"))
    assert os.listdir(state_dir) == []
    os.chmod(state_dir, 0o700)
    os.symlink(state_dir, tmp_path / "link")  # a link to a safe directory is that directory
    state_mod.State(str(tmp_path / "link" / "p1.sqlite")).close()
    os.chmod(state_dir, 0o1777)  # and a link to an unsafe one is refused
    with pytest.raises(errors.SyncError, match="can be written by other users"):
        state_mod.State(str(tmp_path / "link" / "p2.sqlite"))
