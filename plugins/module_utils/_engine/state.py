# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Persisted per-task state: for each remote folder its UIDVALIDITY and the remote UIDs already copied,
with the local UID (APPENDUID) and the flags recorded at the last sync (the base of the three-way merge).

One SQLite file per task (mode 0600, in a 0700 directory). Each batch is committed on its own, so an
interrupted run resumes from its last checkpoint. No secret is ever stored here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import sqlite3
import time
import typing as t

from . import errors

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    remote TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    local TEXT NOT NULL,
    local_uidvalidity INTEGER NOT NULL,
    remote_uidnext INTEGER NOT NULL DEFAULT 0,
    highestmodseq INTEGER NOT NULL DEFAULT 0,
    local_uidnext INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    folder INTEGER NOT NULL,
    ruid INTEGER NOT NULL,
    luid INTEGER,
    flags TEXT NOT NULL,
    PRIMARY KEY (folder, ruid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_luid ON messages (folder, luid);
CREATE TABLE IF NOT EXISTS failed (
    folder INTEGER NOT NULL,
    ruid INTEGER NOT NULL,
    PRIMARY KEY (folder, ruid)
) WITHOUT ROWID;
"""


def flags_to_text(flags: t.Iterable[bytes]) -> str:
    return " ".join(sorted({f.decode("latin-1") for f in flags if f.upper() != b"\\RECENT"}))


def text_to_flags(text: str) -> frozenset[bytes]:
    return frozenset(f.encode("latin-1") for f in text.split())


@dataclasses.dataclass
class FolderState:
    id: int
    remote: str
    uidvalidity: int
    local: str
    local_uidvalidity: int
    remote_uidnext: int
    highestmodseq: int
    local_uidnext: int


class Busy(Exception):
    """Another run of the same task holds the lock."""


class State:
    """The state database of one task. ``readonly`` (check mode) never creates or writes anything."""

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        try:
            if readonly:
                if os.path.exists(path):
                    # Check mode must not write, not even SQLite's shared-memory file: a cleanly closed database
                    # (no -wal file) is opened immutable; after a crash the -wal file has to be read too.
                    uri = "file:" + path.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
                    if not os.path.exists(path + "-wal"):
                        uri += "&immutable=1"
                    self.db = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                directory = os.path.dirname(os.path.abspath(path))
                os.makedirs(directory, mode=0o700, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                os.close(fd)
                os.chmod(path, 0o600)
                self.db = sqlite3.connect(path, isolation_level=None)
                # WAL: a checkpoint per batch costs no fsync; after a power cut the last batches may be missing
                # from the state, and the identity check of the next run finds them in the mailbox.
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(_SCHEMA)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except (OSError, sqlite3.Error) as exc:
            raise errors.SyncError(
                errors.STATE_ERROR,
                f"The state file {path} cannot be used ({exc}); check that state_dir is a writable directory.",
            ) from None

    # -- locking --------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the per-task lock (raises Busy when another run holds it)."""
        lock_path = self.path + ".lock"
        try:
            # Check mode creates nothing: it honours the lock of a running task when there is one.
            fd = os.open(lock_path, os.O_RDWR if self.readonly else os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            if self.readonly:
                return
            raise
        # A status query holds the lock (shared) for an instant to see whether a run is active: retry briefly,
        # so that it never makes a real run look busy.
        deadline = time.monotonic() + 0.5
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise Busy() from None
                time.sleep(0.05)
        self._lock_fd = fd

    def close(self) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _writable(self) -> sqlite3.Connection:
        if self.db is None or self.readonly:
            raise RuntimeError("the state is read-only in check mode")  # a programming error, never a user's
        return self.db

    # -- folders ----------------------------------------------------------------------------------
    def folder(self, remote: str) -> FolderState | None:
        if self.db is None:
            return None
        row = self.db.execute(
            "SELECT id, remote, uidvalidity, local, local_uidvalidity, remote_uidnext, highestmodseq, local_uidnext"
            " FROM folders WHERE remote = ?", (remote,)).fetchone()
        return FolderState(*row) if row else None

    def reset_folder(self, remote: str, uidvalidity: int, local: str, local_uidvalidity: int, local_uidnext: int) -> FolderState:
        """Start a folder afresh (first run, or its UIDVALIDITY changed): forget its messages."""
        db = self._writable()
        with self.transaction():
            old = self.folder(remote)
            if old is not None:
                db.execute("DELETE FROM messages WHERE folder = ?", (old.id,))
                db.execute("DELETE FROM failed WHERE folder = ?", (old.id,))
                db.execute(
                    "UPDATE folders SET uidvalidity=?, local=?, local_uidvalidity=?, remote_uidnext=0, highestmodseq=0, local_uidnext=?"
                    " WHERE id=?", (uidvalidity, local, local_uidvalidity, local_uidnext, old.id))
            else:
                db.execute(
                    "INSERT INTO folders (remote, uidvalidity, local, local_uidvalidity, local_uidnext) VALUES (?, ?, ?, ?, ?)",
                    (remote, uidvalidity, local, local_uidvalidity, local_uidnext))
        folder = self.folder(remote)
        if folder is None:
            raise RuntimeError(f"state: folder {remote!r} vanished from the state database")
        return folder

    def finish_folder(self, folder: FolderState, remote_uidnext: int, highestmodseq: int) -> None:
        db = self._writable()
        folder.remote_uidnext, folder.highestmodseq = remote_uidnext, highestmodseq
        db.execute("UPDATE folders SET remote_uidnext=?, highestmodseq=?, local_uidnext=? WHERE id=?",
                   (remote_uidnext, highestmodseq, folder.local_uidnext, folder.id))

    @contextlib.contextmanager
    def transaction(self) -> t.Iterator[None]:
        db = self._writable()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- messages ---------------------------------------------------------------------------------
    def known(self, folder: FolderState | None, min_ruid: int = 0) -> dict[int, tuple[int | None, frozenset[bytes]]]:
        """Remote UID -> (local UID, base flags) for the recorded messages with ruid >= min_ruid."""
        if self.db is None or folder is None:
            return {}
        rows = self.db.execute("SELECT ruid, luid, flags FROM messages WHERE folder = ? AND ruid >= ?", (folder.id, min_ruid))
        return {ruid: (luid, text_to_flags(flags)) for ruid, luid, flags in rows}

    def iter_known(self, folder: FolderState | None, size: int) -> t.Iterator[list[int]]:
        """The recorded remote UIDs, ``size`` at a time."""
        if self.db is None or folder is None:
            return
        last = 0
        while True:
            rows = self.db.execute("SELECT ruid FROM messages WHERE folder = ? AND ruid > ? ORDER BY ruid LIMIT ?",
                                   (folder.id, last, size)).fetchall()
            if not rows:
                return
            yield [r for (r,) in rows]
            last = rows[-1][0]

    def known_among(self, folder: FolderState | None, ruids: t.Iterable[int]) -> dict[int, tuple[int | None, frozenset[bytes]]]:
        if self.db is None or folder is None:
            return {}
        out: dict[int, tuple[int | None, frozenset[bytes]]] = {}
        ruids = list(ruids)
        for start in range(0, len(ruids), 500):
            part = ruids[start:start + 500]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(f"SELECT ruid, luid, flags FROM messages WHERE folder = ? AND ruid IN ({marks})", (folder.id, *part))
            out.update({ruid: (luid, text_to_flags(flags)) for ruid, luid, flags in rows})
        return out

    def recorded_luids(self, folder: FolderState | None, min_luid: int) -> set[int]:
        """Local UIDs >= min_luid that the state already accounts for."""
        if self.db is None or folder is None:
            return set()
        rows = self.db.execute("SELECT luid FROM messages WHERE folder = ? AND luid >= ?", (folder.id, min_luid))
        return {luid for (luid,) in rows}

    def failed(self, folder: FolderState | None) -> set[int]:
        if self.db is None or folder is None:
            return set()
        return {r for (r,) in self.db.execute("SELECT ruid FROM failed WHERE folder = ?", (folder.id,))}

    def record(self, folder: FolderState, entries: t.Iterable[tuple[int, int | None, t.Iterable[bytes]]], local_uidnext: int | None = None) -> None:
        """Checkpoint: these remote UIDs are present locally (with local UID and the flags copied)."""
        db = self._writable()
        rows = [(folder.id, ruid, luid, flags_to_text(flags)) for ruid, luid, flags in entries]
        with self.transaction():
            db.executemany("INSERT OR REPLACE INTO messages (folder, ruid, luid, flags) VALUES (?, ?, ?, ?)", rows)
            db.executemany("DELETE FROM failed WHERE folder = ? AND ruid = ?", [(r[0], r[1]) for r in rows])
            if local_uidnext is not None and local_uidnext > folder.local_uidnext:
                folder.local_uidnext = local_uidnext
                db.execute("UPDATE folders SET local_uidnext = ? WHERE id = ?", (local_uidnext, folder.id))

    def update_flags(self, folder: FolderState, entries: t.Iterable[tuple[int, t.Iterable[bytes]]]) -> None:
        db = self._writable()
        rows = [(flags_to_text(flags), folder.id, ruid) for ruid, flags in entries]
        with self.transaction():
            db.executemany("UPDATE messages SET flags = ? WHERE folder = ? AND ruid = ?", rows)

    def mark_failed(self, folder: FolderState, ruids: t.Iterable[int]) -> None:
        db = self._writable()
        with self.transaction():
            db.executemany("INSERT OR IGNORE INTO failed (folder, ruid) VALUES (?, ?)", [(folder.id, r) for r in ruids])

    def forget(self, folder: FolderState, ruids: t.Iterable[int]) -> None:
        """The remote messages were expunged (deleted after sync): their UIDs never come back."""
        db = self._writable()
        with self.transaction():
            db.executemany("DELETE FROM messages WHERE folder = ? AND ruid = ?", [(folder.id, r) for r in ruids])
