# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Directories and files under state_dir and config_dir, and the one run lock.

The engine runs as root and writes into these directories: nobody else may be able to plant a file or a
symbolic link there. So every directory is created with an explicit mode (whatever the umask, missing
parents too) and checked before it is used: it must belong to this user (or root) and must not be writable
by group or others (a symbolic link to a directory is judged by that directory). Files are opened with
``O_NOFOLLOW`` and must be regular files of this user (or root).

:class:`FileLock` is the one lock: an exclusive ``flock`` on a lock file. A run holds its task's
(``<state>.lock``) and its account's (``STATE_DIR/locks/<sha256>.lock``, see :func:`account_lock_path`);
:func:`lock_held` is how a status query sees a run. :func:`state_error` is the one rule turning a failure
of the filesystem or of SQLite on a state path into a sentence naming the path and the fix.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import sqlite3
import stat
import time
import typing as t

from . import errors
from .contract import Kind

LOCKS = "locks"
_LOCK_RETRY_S = 0.5  # a status query holds a lock (shared) for an instant: an acquisition retries that long

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 3, 8, 10, 11, 13, 14, 26
# The same, recognized by their messages where Python (before 3.11) gives no code.
_SQLITE_MESSAGES = {
    "database disk image is malformed": _SQLITE_CORRUPT,
    "file is not a database": _SQLITE_NOTADB,
    "database or disk is full": _SQLITE_FULL,
    "attempt to write a readonly database": _SQLITE_READONLY,
    "disk i/o error": _SQLITE_IOERR,
    "unable to open database file": _SQLITE_CANTOPEN,
}


class Unsafe(Exception):
    """A directory or file that another user could have planted or can change; the message is a sentence."""


def _trusted(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def check_dir(path: str) -> None:
    """Refuse a directory another user owns or can write (a symbolic link is judged by the directory it names)."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise Unsafe(f"{path} is not a directory; remove it or choose another directory.")
    if not _trusted(st.st_uid):
        raise Unsafe(f"The directory {path} belongs to user id {st.st_uid}, not to this user (id {os.geteuid()}); "
                     f"give it to this user (chown) or choose another directory.")
    if st.st_mode & 0o022:
        raise Unsafe(f"The directory {path} can be written by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                     f"make it writable by its owner only (chmod go-w {path}) or choose another directory.")


def make_dirs(path: str, mode: int = 0o700, tighten: bool = False, check: bool = True) -> str:
    """Create ``path`` and its missing parents with exactly ``mode`` (whatever the umask); check ``path``.

    With ``tighten``, an existing ``path`` of this user with a wider mode gets ``mode`` too. Without ``check``, an
    existing ``path`` is taken as it is (a directory that is not ours to judge, such as systemd's unit directory).
    """
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue  # another run created it meanwhile (or it is not a directory: check_dir says so)
        os.chmod(directory, mode)
    if check:
        check_dir(path)  # a directory others could write is refused, not repaired: they may have planted files
    if tighten and not missing:
        st = os.stat(path)
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & ~mode:
            os.chmod(path, mode)
    return path


def secure_path(base: str, *parts: str, mode: int = 0o700) -> str:
    """``base/parts...`` created as needed with ``mode``; ``base`` and every level below it checked."""
    path = make_dirs(base, mode)
    for part in parts:
        path = make_dirs(os.path.join(path, part), mode)
    return path


def open_file(path: str, flags: int, mode: int = 0o600) -> int:
    """``os.open`` of a file that is not a symbolic link and is a regular file of this user (or root).

    A file this call creates, or one of this user with a wider mode, gets ``mode``.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unsafe(f"{path} is a symbolic link; remove it (links are never followed in this directory).") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unsafe(f"{path} is not a regular file; remove it.")
        if not _trusted(st.st_uid):
            raise Unsafe(f"{path} belongs to user id {st.st_uid}, not to this user (id {os.geteuid()}); remove it.")
        if flags & (os.O_WRONLY | os.O_RDWR) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & ~mode:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- what went wrong ------------------------------------------------------------------------------------------


def sqlite_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of ``exc`` (None for other exceptions)."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    return _SQLITE_MESSAGES.get(str(exc).strip().lower())


def is_corrupt(exc: BaseException) -> bool:
    """Whether SQLite said that a database file is damaged (or is no database)."""
    return sqlite_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _filesystem(path: str) -> tuple[bool, bool]:
    """(full, read-only) for the filesystem holding ``path`` (the nearest existing directory)."""
    directory = path
    while directory and not os.path.isdir(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    try:
        vfs = os.statvfs(directory or "/")
    except OSError:
        return False, False
    full = vfs.f_bavail == 0 or (vfs.f_files > 0 and vfs.f_favail == 0)
    return full, bool(vfs.f_flag & os.ST_RDONLY)


def describe(path: str, exc: BaseException) -> str:
    """One sentence: why ``path`` cannot be written or read, and the fix. The one rule for state paths."""
    if isinstance(exc, Unsafe):
        return str(exc)
    err = exc.errno if isinstance(exc, OSError) else None
    code = sqlite_code(exc)
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    full, readonly = _filesystem(path)
    if err in (errno.ENOSPC, errno.EDQUOT) or code == _SQLITE_FULL or (full and (err == errno.EIO or code in (_SQLITE_IOERR, _SQLITE_CANTOPEN))):
        return f"{path} cannot be written: the filesystem holding it is full ({detail}); free space on the filesystem holding {path}."
    if err == errno.EROFS or readonly and (code in (_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CANTOPEN) or err in (errno.EACCES, errno.EPERM)):
        return (f"{path} cannot be written: the filesystem holding {path} is read-only; remount it read-write "
                "or choose a state_dir on a writable filesystem.")
    if err in (errno.EACCES, errno.EPERM) or code in (_SQLITE_PERM, _SQLITE_READONLY):
        return f"{path} cannot be used ({detail}); check that state_dir is a writable directory (run as root)."
    if is_corrupt(exc):
        return f"{path} is damaged ({detail}); remove it or restore it from a backup."
    return f"{path} cannot be used ({detail}); check the filesystem holding it."


def state_error(path: str, exc: BaseException) -> errors.SyncError:
    """The run-stopping ``state_error`` for a failure on a state path."""
    return errors.SyncError(Kind.STATE_ERROR, describe(path, exc))


# -- locks ----------------------------------------------------------------------------------------------------


def account_lock_path(state_dir: str, remote_host: str, remote_user: str, local_user: str) -> str:
    """The account's lock file: one per (remote host, remote user, local user), whatever the task or port."""
    key = "\0".join((remote_host.lower(), remote_user.lower(), local_user.lower()))
    return os.path.join(state_dir, LOCKS, hashlib.sha256(key.encode("utf-8")).hexdigest() + ".lock")


class FileLock:
    """An exclusive ``flock`` on ``path``. Without ``create`` (check mode) nothing is created and a lock file
    that does not exist counts as free: check mode honours a held lock and writes nothing."""

    def __init__(self, path: str, create: bool) -> None:
        self.path = path
        self.create = create
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another run holds it. Raises Unsafe or OSError when the file is unusable."""
        if self.create:
            make_dirs(os.path.dirname(os.path.abspath(self.path)))
        try:
            fd = open_file(self.path, os.O_RDWR | (os.O_CREAT if self.create else 0))
        except FileNotFoundError:
            if not self.create:
                return True  # no run has ever taken it: nothing to honour
            raise
        deadline = time.monotonic() + _LOCK_RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                busy = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
                if not busy or time.monotonic() > deadline:
                    os.close(fd)
                    if busy:
                        return False
                    raise
                time.sleep(0.05)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def lock_held(path: str) -> bool:
    """Whether a run holds the lock ``path`` now (a shared probe, released at once)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False  # a symbolic link is no lock of ours (a run refuses it with a sentence)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        return True
    finally:
        os.close(fd)
    return False


class RunLocks:
    """The locks a run holds from start to end: its task's (``<state>.lock``) and its account's.

    ``account`` is anything with ``remote_host``, ``remote_user`` and ``local_user`` (a task).
    """

    def __init__(self, state_path: str, state_dir: str, account: t.Any, create: bool) -> None:
        self.account = account
        self.state_dir = state_dir
        self.create = create
        self.task = FileLock(state_path + ".lock", create)
        self.account_lock = FileLock(account_lock_path(state_dir, account.remote_host, account.remote_user,
                                                       account.local_user), create)

    def acquire(self) -> str | None:
        """Take both locks: None when held, else the notice of a skipped run. Raises SyncError (state_error)."""
        if self.create:
            try:
                make_dirs(self.state_dir)
            except (OSError, Unsafe) as exc:
                raise state_error(self.state_dir, exc) from None
        for lock, busy in ((self.task, "Another run of this task is active; this run was skipped."),
                           (self.account_lock, f"Another run into the account {self.account.remote_user} at "
                                               f"{self.account.remote_host} -> {self.account.local_user} is active "
                                               "(another task, or an inline migrate, of the same account); this run "
                                               "was skipped.")):
            try:
                taken = lock.acquire()
            except (OSError, Unsafe) as exc:
                self.release()
                raise state_error(lock.path, exc) from None
            if not taken:
                self.release()
                return busy
        return None

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(fd for fd in (self.task.fd, self.account_lock.fd) if fd is not None)

    def release(self) -> None:
        self.account_lock.release()
        self.task.release()
