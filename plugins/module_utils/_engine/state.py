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
import datetime
import functools
import os
import sqlite3
import threading
import typing as t

from . import errors, files, flagsets

_F = t.TypeVar("_F", bound=t.Callable[..., t.Any])

SCHEMA_VERSION = 2  # 2: folders.remote_messages (_migrate adds it to a file of version 1)

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
    local_uidnext INTEGER NOT NULL DEFAULT 0,
    remote_messages INTEGER
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


class _Damaged(Exception):
    """The database file is damaged (SQLite's words in the message)."""


def _verify(db: sqlite3.Connection) -> None:
    """Raise _Damaged unless SQLite's quick check passes (about 6 ms for the state of 50,000 messages)."""
    try:
        rows = db.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.Error as exc:
        if files.is_corrupt(exc):
            raise _Damaged(str(exc)) from None
        raise
    if rows != [("ok",)]:
        raise _Damaged(f"quick check: {rows[0][0] if rows else 'no answer'}")


def _checked(db: sqlite3.Connection, setup: t.Callable[[sqlite3.Connection], None] | None = None) -> sqlite3.Connection:
    """``db`` once SQLite's quick check (then ``setup``) passed; else ``db`` is closed and the failure raised, as
    _Damaged when SQLite says the file is damaged."""
    try:
        _verify(db)
        if setup is not None:
            setup(db)
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):
            db.close()
        if isinstance(exc, sqlite3.Error) and files.is_corrupt(exc):
            raise _Damaged(str(exc)) from None
        raise
    return db


def _prepare(db: sqlite3.Connection) -> None:
    """The writable state's settings and schema."""
    # WAL: a checkpoint per batch costs no fsync; after a power cut the last batches may be missing
    # from the state, and the identity check of the next run finds them in the mailbox.
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    # SQLite's default page cache (2 MiB) filled as a large folder's rows were recorded, so the run's memory grew with
    # the folder; the pages a run writes (the end of the messages index) stay in these 256 KiB, the others are in the
    # kernel's cache (docs/benchmarks.md: peak RSS flat from 5,000 to 50,000 messages).
    db.execute("PRAGMA cache_size=-256")
    db.executescript(_SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    _migrate(db)


def _has_messages_column(db: sqlite3.Connection) -> bool:
    """Whether the folders table has the remote_messages column (a file written before schema version 2 has not)."""
    return any(row[1] == "remote_messages" for row in db.execute("PRAGMA table_info(folders)"))


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a state file of an earlier schema version up to date, keeping everything it records.

    Version 2 adds ``folders.remote_messages``; NULL (unknown) until a folder's next completed sync, which the planner
    treats as "changed".
    """
    if _has_messages_column(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not _has_messages_column(db):  # not migrated meanwhile by another connection
            db.execute("ALTER TABLE folders ADD COLUMN remote_messages INTEGER")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@flagsets.cached
def flags_to_text(flags: t.Iterable[bytes]) -> str:
    """Flags as the state keeps them: one text, sorted, without \\Recent."""
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
    remote_messages: int | None  # the remote MESSAGES at the start of the last completed sync (None: unknown)


class Busy(Exception):
    """Another run of the same task holds the lock."""


def _guarded(method: _F) -> _F:
    """SQLite failures of a state method become a run-stopping state_error (a damaged file is set aside first); one
    thread at a time uses the database (the folder lanes of sync.Syncer share it)."""

    @functools.wraps(method)
    def wrapper(self: State, *args: t.Any, **kwargs: t.Any) -> t.Any:
        with self.mutex:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise self.failure(exc) from None

    return t.cast(_F, wrapper)


class State:
    """The state database of one task. ``readonly`` (check mode) never creates or writes anything.

    A damaged file (SQLite's ``PRAGMA quick_check`` fails, or SQLite says so) is set aside as
    ``PATH.corrupt-<UTC time>`` with its -wal and -shm files and a fresh state is started, as if the state
    were lost: the engine then matches messages by identity. ``notices`` says so for the run's result. In
    check mode nothing is renamed: the run plans as with lost state.
    """

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.db: sqlite3.Connection | None = None
        self.notices: list[str] = []
        self.mutex = threading.RLock()  # held by every method that reads or writes the database (_guarded)
        self._lock: files.FileLock | None = None
        self._messages_column = "remote_messages"  # "NULL" in a read-only file of schema version 1
        try:
            if readonly:
                self._open_readonly()
            else:
                files.make_dirs(os.path.dirname(os.path.abspath(path)))
                os.close(files.open_file(path, os.O_RDWR | os.O_CREAT))
                try:
                    self.db = self._connect()
                except _Damaged as damaged:
                    kept = self._set_aside()
                    self.notices.append(
                        f"The state file {path} was damaged ({damaged}); it was set aside as {kept} for inspection, and "
                        "this run matched the messages already on the local server by identity (no duplicates).")
                    self.db = self._connect()
        except (OSError, sqlite3.Error, files.Unsafe, _Damaged) as exc:
            self.close()
            raise files.state_error(path, exc) from None

    def _connect(self) -> sqlite3.Connection:
        return _checked(sqlite3.connect(self.path, isolation_level=None, check_same_thread=False), _prepare)

    def _open_readonly(self) -> None:
        if not os.path.lexists(self.path):
            return
        files.check_dir(os.path.dirname(os.path.abspath(self.path)))
        os.close(files.open_file(self.path, os.O_RDONLY))  # a symbolic link, or another user's file, is refused
        # Check mode must not write, not even SQLite's shared-memory file: a cleanly closed database
        # (no -wal file) is opened immutable; after a crash the -wal file has to be read too.
        uri = "file:" + self.path.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        if not os.path.exists(self.path + "-wal"):
            uri += "&immutable=1"
        try:
            self.db = _checked(sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False))
            if not _has_messages_column(self.db):
                self._messages_column = "NULL"  # check mode never migrates: the count is unknown
        except _Damaged as exc:
            self.notices.append(
                f"The state file {self.path} is damaged ({exc}); a real run sets it aside (keeping it as "
                f"{self.path}.corrupt-<UTC time>) and matches the messages already on the local server by identity, "
                "as this check did.")

    def _set_aside(self) -> str:
        """Rename the damaged database (with its -wal and -shm files) out of the way; the name it is kept under."""
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.db = None
        kept = f"{self.path}.corrupt-{datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
        for suffix in ("-wal", "-shm", ""):
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.path + suffix, kept + suffix)
        return kept

    def failure(self, exc: sqlite3.Error) -> errors.SyncError:
        """The state_error for an SQLite failure during the run; a damaged file is set aside for the next run."""
        if not files.is_corrupt(exc) or self.readonly:
            return files.state_error(self.path, exc)
        try:
            kept = self._set_aside()
        except OSError as rename_failed:
            return files.state_error(self.path, rename_failed)
        return errors.SyncError(
            errors.STATE_ERROR,
            f"The state file {self.path} was found damaged during the run ({exc}); it was set aside as {kept} for "
            "inspection, and the next run matches the messages already on the local server by identity (no duplicates).")

    # -- locking --------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the per-task lock alone (raises Busy when another run holds it); runs take :class:`files.RunLocks`."""
        lock = files.FileLock(self.path + ".lock", create=not self.readonly)
        try:
            taken = lock.acquire()
        except (OSError, files.Unsafe) as exc:
            raise files.state_error(lock.path, exc) from None
        if not taken:
            raise Busy()
        self._lock = lock

    def close(self) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.db = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _writable(self) -> sqlite3.Connection:
        if self.db is None or self.readonly:
            raise RuntimeError("the state is read-only in check mode")  # a programming error, never a user's
        return self.db

    # -- folders ----------------------------------------------------------------------------------
    @_guarded
    def folder(self, remote: str) -> FolderState | None:
        if self.db is None:
            return None
        row = self.db.execute(
            "SELECT id, remote, uidvalidity, local, local_uidvalidity, remote_uidnext, highestmodseq, local_uidnext, "
            f"{self._messages_column} FROM folders WHERE remote = ?", (remote,)).fetchone()
        return FolderState(*row) if row else None

    @_guarded
    def reset_folder(self, remote: str, uidvalidity: int, local: str, local_uidvalidity: int, local_uidnext: int) -> FolderState:
        """Start a folder afresh (first run, or its UIDVALIDITY changed): forget its messages."""
        db = self._writable()
        with self.transaction():
            old = self.folder(remote)
            if old is not None:
                db.execute("DELETE FROM messages WHERE folder = ?", (old.id,))
                db.execute("DELETE FROM failed WHERE folder = ?", (old.id,))
                db.execute(
                    "UPDATE folders SET uidvalidity=?, local=?, local_uidvalidity=?, remote_uidnext=0, highestmodseq=0, local_uidnext=?,"
                    " remote_messages=NULL WHERE id=?", (uidvalidity, local, local_uidvalidity, local_uidnext, old.id))
            else:
                db.execute(
                    "INSERT INTO folders (remote, uidvalidity, local, local_uidvalidity, local_uidnext) VALUES (?, ?, ?, ?, ?)",
                    (remote, uidvalidity, local, local_uidvalidity, local_uidnext))
        folder = self.folder(remote)
        if folder is None:
            raise RuntimeError(f"state: folder {remote!r} vanished from the state database")
        return folder

    @_guarded
    def finish_folder(self, folder: FolderState, remote_uidnext: int, highestmodseq: int, remote_messages: int) -> None:
        """The folder's sync completed: the remote UIDNEXT, HIGHESTMODSEQ and MESSAGES read at its start are the next
        run's starting point."""
        db = self._writable()
        folder.remote_uidnext, folder.highestmodseq, folder.remote_messages = remote_uidnext, highestmodseq, remote_messages
        db.execute("UPDATE folders SET remote_uidnext=?, highestmodseq=?, local_uidnext=?, remote_messages=? WHERE id=?",
                   (remote_uidnext, highestmodseq, folder.local_uidnext, remote_messages, folder.id))

    @contextlib.contextmanager
    def transaction(self) -> t.Iterator[None]:
        db = self._writable()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already (disk full)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- messages ---------------------------------------------------------------------------------
    @_guarded
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
            page = self._known_page(folder, last, size)
            if not page:
                return
            yield page
            last = page[-1]

    @_guarded
    def _known_page(self, folder: FolderState, after: int, size: int) -> list[int]:
        if self.db is None:
            return []
        rows = self.db.execute("SELECT ruid FROM messages WHERE folder = ? AND ruid > ? ORDER BY ruid LIMIT ?",
                               (folder.id, after, size)).fetchall()
        return [r for (r,) in rows]

    @_guarded
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

    @_guarded
    def recorded_luids(self, folder: FolderState | None, min_luid: int) -> set[int]:
        """Local UIDs >= min_luid that the state already accounts for."""
        if self.db is None or folder is None:
            return set()
        rows = self.db.execute("SELECT luid FROM messages WHERE folder = ? AND luid >= ?", (folder.id, min_luid))
        return {luid for (luid,) in rows}

    @_guarded
    def failed(self, folder: FolderState | None) -> set[int]:
        if self.db is None or folder is None:
            return set()
        return {r for (r,) in self.db.execute("SELECT ruid FROM failed WHERE folder = ?", (folder.id,))}

    @_guarded
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

    @_guarded
    def update_flags(self, folder: FolderState, entries: t.Iterable[tuple[int, t.Iterable[bytes]]]) -> None:
        db = self._writable()
        rows = [(flags_to_text(flags), folder.id, ruid) for ruid, flags in entries]
        with self.transaction():
            db.executemany("UPDATE messages SET flags = ? WHERE folder = ? AND ruid = ?", rows)

    @_guarded
    def mark_failed(self, folder: FolderState, ruids: t.Iterable[int]) -> None:
        db = self._writable()
        with self.transaction():
            db.executemany("INSERT OR IGNORE INTO failed (folder, ruid) VALUES (?, ?)", [(folder.id, r) for r in ruids])

    @_guarded
    def forget(self, folder: FolderState, ruids: t.Iterable[int]) -> None:
        """The remote messages were expunged (deleted after sync): their UIDs never come back."""
        db = self._writable()
        with self.transaction():
            db.executemany("DELETE FROM messages WHERE folder = ? AND ruid = ?", [(folder.id, r) for r in ruids])
