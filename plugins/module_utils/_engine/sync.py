# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The builtin sync engine: one remote account into one local account, exactly once per message.

Per folder: STATUS on both sides; with usable state and nothing new (same UIDNEXT and HIGHESTMODSEQ)
the folder costs two round trips. Otherwise only the remote UIDs not yet recorded are considered; local
messages the state cannot account for are matched by identity (Message-ID, Date, size) so nothing is
doubled; the rest is copied in byte-bounded batches, fetching the next batch while the previous one is
appended (MULTIAPPEND), each batch checkpointed. Remote flag changes reach the local copy by a
three-way merge against the flags recorded at the last sync, so local changes are never overwritten.
"""

from __future__ import annotations

import datetime
import itertools
import os
import queue
import sqlite3
import threading
import time
import traceback
import typing as t

from . import errors
from .config import Target, Task
from .folders import FolderPlan, plan as plan_folders
from .identity import IdentityPool, content_digests, identities, message_id
from .imap import (
    HAS_IMAPCLIENT, IMAPCLIENT_IMPORT_ERROR, SERVER_TEXT_LIMIT, AppendRefused, Connection, Endpoint, chunks, insecure_notice,
    split_flags,
)
from .lmtp import LmtpDelivery
from .result import FolderResult, RunResult
from .text import printable

__all__ = ["run", "begin", "endpoints", "Syncer", "HAS_IMAPCLIENT", "IMAPCLIENT_IMPORT_ERROR", "BATCH_BYTES"]
from .files import RunLocks
from .state import FolderState, State

BATCH_BYTES = 4 * 1024 * 1024  # a FETCH/APPEND batch, in message bytes
BATCH_COUNT = 250  # messages per batch at most
WINDOW = 2000  # UIDs considered at a time: memory stays flat whatever the size of a folder
MAX_RECONNECTS = 5  # per folder, and for the logins at the start of a run
BACKOFF_S = (1, 2, 4, 8, 16)  # seconds before each reconnect (or new login after a busy server's refusal)

# Failures that stop the whole run; any other failure inside a folder fails that folder only.
_RUN_STOPPERS = (errors.AUTH_FAILED, errors.TLS_FAILED, errors.CONNECT_FAILED, errors.TIMEOUT, errors.STARTTLS_UNSUPPORTED,
                 errors.STATE_ERROR, errors.MISSING_LIBRARY, errors.SERVER_BUSY)
# Failures of a reconnect that may pass: the next reconnect is tried (with backoff) until MAX_RECONNECTS.
_RECONNECT_AGAIN = (errors.CONNECT_FAILED, errors.TIMEOUT, errors.CONNECTION_LOST, errors.SERVER_BUSY)

_RECENT = b"\\RECENT"
_DELETED = b"\\Deleted"

LogFn = t.Callable[[str], None]


def run(
    task: Task,
    target: Target,
    state_path: str,
    *,
    check_mode: bool = False,
    task_name: str | None = None,
    log: LogFn | None = None,
    stop: threading.Event | None = None,
    on_locked: t.Callable[[], None] | None = None,
    state_dir: str | None = None,
) -> RunResult:
    """Run one sync (or, in check mode, compute its exact plan without writing anything anywhere).

    ``log`` receives progress lines (no secrets); setting ``stop`` ends the run after the current batch, with the
    state checkpointed; ``on_locked`` is called once the task's and the account's locks are held (a skipped run
    never calls it). The account's lock lives in ``state_dir/locks`` (default: the directory of ``state_path``).
    """
    syncer = Syncer(task, target, state_path, check_mode=check_mode, task_name=task_name, log=log, stop=stop)
    syncer.on_locked = on_locked
    syncer.state_dir = state_dir
    return syncer.run()


def begin(locks: RunLocks, result: RunResult, remote: Endpoint, on_locked: t.Callable[[], None] | None) -> bool:
    """The start of every run, whatever the engine: take its locks (False, and the result ``skipped``, when another run
    holds one; SyncError ``state_error`` when they cannot be used), tell ``on_locked``, note an insecure remote."""
    busy = locks.acquire()
    if busy is not None:
        result.notice(busy)
        result.finish("skipped")
        return False
    if on_locked is not None:
        on_locked()
    notice = insecure_notice(remote)
    if notice:
        result.notice(notice)
    return True


def endpoints(task: Task, target: Target) -> tuple[Endpoint, Endpoint]:
    remote = Endpoint(
        side="remote", host=task.remote_host, port=task.remote_port, security=task.remote_security,
        validate_certs=task.validate_certs, ca_file=task.ca_file, user=task.remote_user, password=task.remote_password,
    )
    local = Endpoint(
        side="local", host=target.host, port=target.port, security=target.security,
        validate_certs=target.validate_certs, ca_file=target.ca_file, user=target.master_user,
        password=target.master_password, authzid=task.local_user,
        login_user=f"{task.local_user}{target.master_separator}{target.master_user}",
    )
    return remote, local


def _route(plan: FolderPlan) -> str:
    """``remote -> local`` of a folder, for a log line."""
    return f"{printable(plan.remote)} -> {printable(plan.local)}"


def _head(body: bytes) -> bytes:
    end = body.find(b"\r\n\r\n")
    return body[:end] if end >= 0 else body[:65536]


class _Budget:
    """Bytes of message data in flight between the fetching thread and the appending one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.cond = threading.Condition()

    def acquire(self, amount: int, stopped: threading.Event) -> bool:
        amount = min(amount, self.limit)
        with self.cond:
            while self.used and self.used + amount > self.limit:
                if stopped.is_set():
                    return False
                self.cond.wait(0.2)
            self.used += amount
            return True

    def release(self, amount: int) -> None:
        with self.cond:
            self.used = max(0, self.used - min(amount, self.limit))
            self.cond.notify_all()


class Syncer:
    def __init__(self, task: Task, target: Target, state_path: str, *, check_mode: bool, task_name: str | None,
                 log: LogFn | None, stop: threading.Event | None) -> None:
        self.task = task
        self.target = target
        self.state_path = state_path
        self.check = check_mode
        self.log = log or (lambda _msg: None)
        self.stop = stop or threading.Event()
        self.result = RunResult(task=task_name, check_mode=check_mode)
        self.remote_ep, self.local_ep = endpoints(task, target)
        self.remote: Connection | None = None
        self.local: Connection | None = None
        self.state: State | None = None
        self.local_names: set[str] = set()
        # Folder statuses from LIST-STATUS at the start of the run: each is used once, by the first attempt.
        self.remote_status: dict[str, dict[str, int]] = {}
        self.local_status: dict[str, dict[str, int]] = {}
        self._last_luid = 0
        self._new_luids: list[int] = []  # local UIDs stored by the current window (for the Sieve filter)
        self._bad_flags = 0  # flags a server sent that are not IMAP flags: dropped, counted...
        self._bad_flag_examples: list[bytes] = []  # ... and the first few shown in the notice
        self.on_locked: t.Callable[[], None] | None = None
        self.state_dir: str | None = None  # where the account's lock lives (run(): default, the state file's directory)

    # -- the run --------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        result = self.result
        if self.task.engine != "builtin":
            return result.fail("unsupported", f"engine: {self.task.engine} tasks are run by imapsync, not by the builtin "
                               "engine; use engine: builtin to run this task here.")
        # The task's lock and the account's (another task or an inline run of the same account), then the state.
        locks = RunLocks(self.state_path, self.state_dir or os.path.dirname(os.path.abspath(self.state_path)), self.task,
                         create=not self.check)
        try:
            if not begin(locks, result, self.remote_ep, self.on_locked):
                return result
            self.state = State(self.state_path, readonly=self.check)
            for notice in self.state.notices:
                result.notice(notice)
            self._connect()
            plans = self._plan()
            for plan in plans:
                if self.stop.is_set():
                    break
                self._folder_with_retry(plan)
            if self.stop.is_set():
                result.notice("The run was stopped on request; the next run continues where it stopped.")
        except errors.SyncError as exc:
            self._flag_notice()
            return result.fail(exc.kind, exc.message)
        except sqlite3.Error as exc:
            # The temporary database of identity matching (the state's own failures are state_error already).
            return result.fail(errors.STATE_ERROR, f"The temporary database of identity matching cannot be used "
                               f"({printable(exc, SERVER_TEXT_LIMIT)}); free space in the temporary directory (TMPDIR, "
                               "else /var/tmp) or point TMPDIR at a filesystem with room. What was copied is recorded and "
                               "the next run resumes.")
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # A bug, not a user's mistake: a sentence in the result, the details in the run log. Every batch
            # copied so far is checkpointed, so the next run resumes without duplicates.
            self.log("internal error:")
            for line in traceback.format_exc().splitlines():
                self.log(printable(line))
            return result.fail("internal_error", f"The run stopped on an unexpected {type(exc).__name__} "
                               f"({printable(exc, SERVER_TEXT_LIMIT)}); what was copied is recorded and the next run "
                               "resumes. Please report this with the run log.")
        finally:
            self._disconnect()
            if self.state is not None:
                self.state.close()
            locks.release()
        self._flag_notice()
        result.finish()
        return result

    def _flags(self, raw: t.Any) -> frozenset[bytes]:
        """The flags of a FETCH FLAGS value (``\\Recent`` dropped); anything that is not an IMAP flag is dropped and
        counted for the run's notice, so that no byte of it reaches a command."""
        valid, dropped = split_flags(raw)
        self._bad_flags += len(dropped)
        for flag in dropped:
            if len(self._bad_flag_examples) < 3 and flag not in self._bad_flag_examples:
                self._bad_flag_examples.append(flag)
        return frozenset(f for f in valid if f.upper() != _RECENT)

    def _flag_notice(self) -> None:
        if not self._bad_flags:
            return
        shown = ", ".join(f"'{printable(flag, 60)}'" for flag in self._bad_flag_examples)
        self.result.notice(
            f"A server sent {self._bad_flags} flags that are not valid IMAP flags (such as {shown}); they were dropped, "
            "not copied, and the messages with their other flags were copied.")

    def _sessions(self) -> tuple[Connection, Connection, State]:
        """The open connections and the state (a run always has them once connected)."""
        if self.remote is None or self.local is None or not self.remote.alive or not self.local.alive:
            self._connect()
        if self.remote is None or self.local is None or self.state is None:
            raise RuntimeError("sync: not connected")  # a programming error, never a user's
        return self.remote, self.local, self.state

    def _connect(self) -> None:
        """Log in to both servers; a server refusing for now (too many connections, unavailable) is tried again with
        the reconnect backoff, at most MAX_RECONNECTS times."""
        attempt = 0
        while True:
            try:
                self._open()
                return
            except errors.ServerBusy as exc:
                attempt = self._back_off(exc, attempt)

    def _open(self) -> None:
        self._disconnect()
        self.remote = Connection(self.remote_ep)
        self.local = Connection(self.local_ep)

    def _back_off(self, failure: errors.SyncError, attempt: int) -> int:
        """Wait before attempt ``attempt + 1`` (BACKOFF_S); the failure that stops the run once MAX_RECONNECTS are used."""
        if attempt >= MAX_RECONNECTS:
            raise errors.gave_up(failure, MAX_RECONNECTS) from None
        delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
        attempt += 1
        self.log(f"{failure.message} Reconnecting in {delay} s (attempt {attempt} of {MAX_RECONNECTS}).")
        time.sleep(delay)
        return attempt

    def _disconnect(self) -> None:
        for conn in (self.remote, self.local):
            if conn is not None:
                conn.close()
        self.remote = self.local = None

    def _plan(self) -> list[FolderPlan]:
        remote, local, _state = self._sessions()
        remote_list, self.remote_status = remote.list_folders()
        local_list, self.local_status = local.list_folders()
        self.local_names = {name.upper() if name.upper() == "INBOX" else name for _f, _s, name in local_list
                            if b"\\NONEXISTENT" not in _f and b"\\NOSELECT" not in _f}
        self.local_names.add("INBOX")
        plans = plan_folders(
            remote_list, remote.namespace(), local_list, local.namespace(),
            self.task.folders, self.task.exclude_patterns(), self.task.special_use_mapping,
        )
        self.log(f"{len(plans)} folders to sync")
        return plans

    def _folder_with_retry(self, plan: FolderPlan) -> None:
        """Sync one folder; a dropped connection is reconnected with backoff and the folder resumes from its checkpoint."""
        fr = FolderResult(remote=plan.remote, local=plan.local)
        self.result.folders.append(fr)
        attempt = 0
        while True:
            try:
                self._sync_folder(plan, fr, first=attempt == 0)
                self.log(f"{_route(plan)}: done, {fr.copied} copied, {fr.already_present} already present, "
                         f"{fr.flags_updated} flag updates, {fr.deleted_remote} deleted on the remote, {fr.errors} errors")
                return
            except errors.Transient as exc:
                lost: errors.SyncError = exc
            except errors.SyncError as exc:
                if exc.kind in _RUN_STOPPERS:
                    raise
                fr.errors += 1  # this folder failed (for example the local server refused to create it)
                if not (self.remote and self.remote.alive and self.local and self.local.alive):
                    self._disconnect()  # a server broke the protocol: the next folder starts on new connections
                self.result.add_error(exc.kind, exc.message, folder=plan.remote)
                return
            self._disconnect()
            while True:
                attempt = self._back_off(lost, attempt)
                try:
                    self._open()
                    break
                except errors.SyncError as again:
                    if again.kind not in _RECONNECT_AGAIN:
                        raise
                    lost = again

    # -- one folder -------------------------------------------------------------------------------------
    def _sync_folder(self, plan: FolderPlan, fr: FolderResult, first: bool) -> None:
        remote, local, state = self._sessions()
        task, check = self.task, self.check
        deleting = task.delete_remote != "never"

        rstat = self.remote_status.pop(plan.remote, None) if first else None
        rstat = rstat or remote.status(plan.remote)
        lstat: dict[str, int] | None = None
        if plan.local in self.local_names:
            lstat = (self.local_status.pop(plan.local, None) if first else None) or local.status(plan.local)
        elif check:
            fr.created = True
        else:
            local.create(plan.local)
            self.local_names.add(plan.local)
            fr.created = True
            lstat = local.status(plan.local)
        if first:
            fr.local_before = lstat["MESSAGES"] if lstat and not fr.created else 0

        fs = state.folder(plan.remote)
        usable = (fs is not None and lstat is not None and fs.uidvalidity == rstat["UIDVALIDITY"]
                  and fs.local == plan.local and fs.local_uidvalidity == lstat["UIDVALIDITY"])
        modseq = rstat.get("HIGHESTMODSEQ", 0)
        failed = state.failed(fs) if usable else set()
        if usable and fs is not None and rstat["UIDNEXT"] == fs.remote_uidnext and modseq and modseq == fs.highestmodseq \
                and not failed and not (deleting and rstat["MESSAGES"]):
            return  # nothing new, no flag changed, nothing to delete

        if not usable:
            if fs is not None:
                self.log(f"{printable(plan.remote)}: the state does not match the folders any more (UIDVALIDITY changed or a "
                         "folder was recreated); matching by identity")
            fs = None if check else state.reset_folder(plan.remote, rstat["UIDVALIDITY"], plan.local, lstat["UIDVALIDITY"] if lstat else 0, 0)

        inbox = task.folders == "inbox"
        remote.select(plan.remote, readonly=check or not (deleting or inbox))
        if usable and fs is not None and not inbox:
            self._merge_flags(plan, fr, fs, modseq)  # INBOX retrieval never syncs flags afterwards

        # Local messages the state does not account for (a first run into a non-empty folder, lost state,
        # copies stored just before an interruption) are matched by identity, so they are never doubled.
        # (LMTP delivery runs the user's Sieve rules, which may file a message anywhere: no identity there.)
        lmtp = inbox and task.delivery == "lmtp"
        pool, examined = (None, False) if lmtp else self._local_pool(plan, fs if usable else None, lstat)
        planned: set[int] | None = set() if check and deleting else None
        self._last_luid = 0
        try:
            if inbox:
                self._retrieve_inbox(plan, fr, fs, rstat, pool, planned)
            else:
                self._copy(plan, fr, fs, usable, rstat, failed, pool, planned)
        finally:
            if pool is not None:
                pool.close()
        if examined and not check and fs is not None and lstat is not None:
            # Every local message below UIDNEXT is accounted for now: later runs look only above it.
            state.record(fs, [], local_uidnext=max(lstat["UIDNEXT"], self._last_luid + 1))

        if deleting and rstat["MESSAGES"]:
            self._delete_remote(plan, fr, fs, rstat, planned)

        if not check and fs is not None and not self.stop.is_set():
            state.finish_folder(fs, rstat["UIDNEXT"], modseq)

    # -- flags ------------------------------------------------------------------------------------------
    def _merge_flags(self, plan: FolderPlan, fr: FolderResult, fs: FolderState, modseq: int) -> None:
        """Apply remote flag changes to the local copies; a flag changed locally is never overwritten."""
        remote, local, state = self._sessions()
        if modseq and fs.highestmodseq:
            if modseq == fs.highestmodseq:
                return
            windows: t.Iterable[list[int]] = chunks(remote.search_uids(["MODSEQ", str(fs.highestmodseq + 1)]), WINDOW)
        else:
            windows = state.iter_known(fs, WINDOW)  # no CONDSTORE: every recorded message is checked
        selected = False
        for uids in windows:
            known = state.known_among(fs, uids)
            if not known:
                continue
            now = {uid: self._flags(data.get(b"FLAGS")) for uid, data in remote.fetch(sorted(known), ["FLAGS"]).items()}
            moved = {ruid: flags for ruid, flags in now.items() if flags != known[ruid][1]}
            if not moved:
                continue
            by_luid = {known[ruid][0]: ruid for ruid in moved if known[ruid][0] is not None}
            if by_luid:
                if not selected:
                    local.select(plan.local, readonly=self.check)
                    selected = True
                local_now = {uid: self._flags(data.get(b"FLAGS")) for uid, data in local.fetch(sorted(by_luid), ["FLAGS"]).items()}
                adds: dict[bytes, list[int]] = {}
                removes: dict[bytes, list[int]] = {}
                touched = set()
                for luid, ruid in by_luid.items():
                    if luid not in local_now:
                        continue  # deleted locally: it stays deleted
                    base, remote_flags, here = known[ruid][1], moved[ruid], local_now[luid]
                    for flag in (remote_flags - base) - here:
                        adds.setdefault(flag, []).append(luid)
                        touched.add(luid)
                    for flag in (base - remote_flags) & here:
                        removes.setdefault(flag, []).append(luid)
                        touched.add(luid)
                if not self.check:
                    for flag, luids in adds.items():
                        local.store(luids, [flag], add=True)
                    for flag, luids in removes.items():
                        local.store(luids, [flag], add=False)
                fr.flags_updated += len(touched)
            if not self.check:
                state.update_flags(fs, moved.items())

    # -- copying ------------------------------------------------------------------------------------------
    def _local_pool(self, plan: FolderPlan, fs: FolderState | None, lstat: dict[str, int] | None) -> tuple[IdentityPool | None, bool]:
        """Identities of the local messages the state cannot account for; and whether the local folder was examined.

        ``fs`` is the usable folder state, or None when there is none (every local message is then a candidate).
        """
        _remote, local, state = self._sessions()
        if lstat is None:
            return None, False
        if fs is not None and lstat["UIDNEXT"] <= fs.local_uidnext:
            return None, False
        if not lstat["MESSAGES"]:
            return None, True
        low = fs.local_uidnext if fs is not None else 1
        recorded = state.recorded_luids(fs, low) if fs is not None else set()
        local.select(plan.local, readonly=True)
        pool = IdentityPool()
        for uids in local.uid_windows(low, lstat["UIDNEXT"], lstat["MESSAGES"], window=WINDOW):
            uids = [u for u in uids if u not in recorded]
            if uids:
                pool.add(identities(local, uids))
        if not pool:
            pool.close()
            return None, True
        return pool, True

    def _copy(self, plan: FolderPlan, fr: FolderResult, fs: FolderState | None, usable: bool, rstat: dict[str, int],
              failed: set[int], pool: IdentityPool | None, planned: set[int] | None) -> None:
        """Copy what the local side lacks, a window of UIDs at a time (memory stays flat whatever the folder size)."""
        remote, _local, state = self._sessions()
        if not rstat["MESSAGES"]:
            return
        start = fs.remote_uidnext if usable and fs is not None else 1
        retry = sorted(u for u in failed if u < start)  # refused last time: try again
        windows: t.Iterable[list[int]] = itertools.chain(
            chunks(retry, WINDOW), remote.uid_windows(start, rstat["UIDNEXT"], rstat["MESSAGES"], window=WINDOW))
        if pool is not None:
            # Identity needs the whole folder: a first pass records the identities of the remote messages considered
            # (the FETCH each window would make anyway), then the windows are taken from that record.
            windows = self._first_pass(plan, fs if usable else None, windows, pool)
        for uids in windows:
            if self.stop.is_set():
                return
            if usable and fs is not None:
                known = state.known_among(fs, uids)
                uids = [u for u in uids if u not in known]
            if uids:
                self._copy_window(plan, fr, fs, uids, pool, planned)

    def _first_pass(self, plan: FolderPlan, fs: FolderState | None, windows: t.Iterable[list[int]],
                    pool: IdentityPool) -> t.Iterator[list[int]]:
        """Record the identities of the remote messages of ``windows`` (those the state does not know) in ``pool``, and
        the content digests of the local candidates whose key turns out ambiguous; the recorded UIDs, a window at a
        time."""
        remote, local, state = self._sessions()
        for uids in windows:
            if self.stop.is_set():
                break
            if fs is not None:
                known = state.known_among(fs, uids)
                uids = [u for u in uids if u not in known]
            if uids:
                pool.add_remote(identities(remote, uids))
        unresolved = pool.unresolved()
        if unresolved:
            local.select(plan.local, readonly=True)
            pool.set_contents(content_digests(local, sorted(unresolved), unresolved))
        return pool.remote_windows(WINDOW)

    def _copy_window(self, plan: FolderPlan, fr: FolderResult, fs: FolderState | None, uids: list[int],
                     pool: IdentityPool | None, planned: set[int] | None) -> list[int]:
        """Copy the messages of ``uids`` the local side lacks; the remote UIDs now confirmed present locally."""
        remote, _local, state = self._sessions()
        present: dict[int, int] = {}
        if pool is not None:
            remote_ids = pool.remote_identities(uids)  # recorded by the first pass
            missing = [u for u in uids if u not in remote_ids]
            if missing:
                remote_ids.update(identities(remote, missing))
            sizes = {uid: ident[2] for uid, ident in remote_ids.items()}
            # An ambiguous key (twice on the remote, or twice among the local candidates) is told apart by content.
            ambiguous = {ruid for ruid in remote_ids if pool.ambiguous(remote_ids[ruid])}
            contents = content_digests(remote, sorted(ambiguous), sizes) if ambiguous else {}
            for ruid in sorted(remote_ids):
                if ruid in contents:
                    luid = pool.take(remote_ids[ruid], contents[ruid])
                elif ruid in ambiguous:
                    luid = None  # expunged on the remote meanwhile
                else:
                    luid = pool.take(remote_ids[ruid])
                if luid is not None:
                    present[ruid] = luid
        else:
            sizes = {uid: int(data.get(b"RFC822.SIZE", 0)) for uid, data in remote.fetch(uids, ["RFC822.SIZE"]).items()}
        if present and not self.check and fs is not None:
            flags_of = {uid: self._flags(d.get(b"FLAGS")) for uid, d in remote.fetch(sorted(present), ["FLAGS"]).items()}
            state.record(fs, [(ruid, luid, flags_of.get(ruid, frozenset())) for ruid, luid in present.items()])
        fr.already_present += len(present)

        to_copy = self._not_too_big(plan, fr, fs, [uid for uid in sorted(sizes) if uid not in present], sizes)
        if planned is not None:
            planned.update(present)
            planned.update(to_copy)
        if not to_copy:
            return sorted(present)
        if self.check or fs is None:
            fr.copied += len(to_copy)
            fr.bytes += sum(sizes[uid] for uid in to_copy)
            return sorted(present) + to_copy
        if self.task.folders == "inbox" and self.task.delivery == "lmtp":
            self.log(f"{printable(plan.remote)}: delivering {len(to_copy)} messages to {self.task.local_user} over LMTP")
            return sorted(present) + self._deliver_lmtp(plan, fr, fs, to_copy, sizes)
        self.log(f"{_route(plan)}: copying {len(to_copy)} messages")
        return sorted(present) + self._transfer(plan, fr, fs, to_copy, sizes, advance=pool is None)

    def _not_too_big(self, plan: FolderPlan, fr: FolderResult, fs: FolderState | None, uids: list[int],
                     sizes: dict[int, int]) -> list[int]:
        """``uids`` without the messages larger than the local server accepts: those are recorded as errors (never
        fetched, never skipped silently) and tried again by the next run."""
        _remote, local, state = self._sessions()
        limit = local.max_message()
        big = [uid for uid in uids if sizes[uid] > limit]
        for uid in big:
            self.result.add_error(
                "too_big", f"The message is {sizes[uid]} bytes, more than the {limit} bytes this run copies at most (the local "
                "server's APPENDLIMIT or the engine's limit); it was not copied: raise the local server's limit or move it by other means.",
                folder=plan.remote, uid=uid)
        fr.errors += len(big)
        if big and not self.check and fs is not None:
            state.mark_failed(fs, big)
        return [uid for uid in uids if sizes[uid] <= limit]

    # -- INBOX retrieval ----------------------------------------------------------------------------------
    def _retrieve_inbox(self, plan: FolderPlan, fr: FolderResult, fs: FolderState | None, rstat: dict[str, int],
                        pool: IdentityPool | None, planned: set[int] | None) -> None:
        """Bring the unseen messages of the remote INBOX, mark them \\Seen there, let the user's Sieve filter them."""
        remote, _local, state = self._sessions()
        if not rstat["MESSAGES"]:
            return
        unseen = ["UNSEEN", "NOT", "DELETED"]
        if pool is not None:  # identity needs the whole folder (see _copy)
            self._first_pass(plan, fs, remote.uid_windows(1, rstat["UIDNEXT"], rstat["MESSAGES"], unseen, window=WINDOW), pool)
        for uids in remote.uid_windows(1, rstat["UIDNEXT"], rstat["MESSAGES"], unseen, window=WINDOW):
            if self.stop.is_set():
                return
            # Transferred by an earlier run but still unseen (an interrupted run, or marked unread again on the
            # remote): never copied twice, only marked \Seen.
            known = sorted(state.known_among(fs, uids)) if fs is not None else []
            fresh = [u for u in uids if u not in set(known)]
            fr.already_present += len(known)
            if planned is not None:
                planned.update(known)
            self._new_luids = []
            confirmed = self._copy_window(plan, fr, fs, fresh, pool, planned) if fresh else []
            if self.check:
                continue
            if self._new_luids and self.task.sieve and self.task.delivery == "imap":
                self._filter_sieve(plan, self._new_luids)
            seen = sorted(set(known) | set(confirmed))
            if seen:
                remote.store(seen, [b"\\Seen"], add=True)

    def _filter_sieve(self, plan: FolderPlan, luids: list[int]) -> None:
        """Run the local user's Sieve script on exactly the new messages (Dovecot imap_filter_sieve)."""
        _remote, local, _state = self._sessions()
        if not local.has("FILTER=SIEVE"):
            self.result.notice(
                "The local server does not offer FILTER=SIEVE (Dovecot's imap_filter_sieve plugin): the retrieved "
                "messages stay in INBOX without the user's Sieve filter; enable the plugin, or use delivery: lmtp."
            )
            return
        local.select(plan.local, readonly=False)
        filtered = local.filter_sieve(luids)
        if filtered is not None:
            self.result.notice(f"The local server could not run the Sieve filter: {filtered}; the messages stay in INBOX.")
            return
        # A message the script filed elsewhere (fileinto) or discarded is left \Deleted in INBOX: expunge exactly those.
        gone = [uid for uid, data in local.fetch(luids, ["FLAGS"]).items() if _DELETED in split_flags(data.get(b"FLAGS"))[0]]
        if gone:
            local.uid_expunge(gone)

    def _deliver_lmtp(self, plan: FolderPlan, fr: FolderResult, fs: FolderState, uids: list[int], sizes: dict[int, int]) -> list[int]:
        """Deliver through the local server's LMTP (full delivery: global and user Sieve, vacation, quota)."""
        remote, _local, state = self._sessions()
        delivered: list[int] = []
        with LmtpDelivery(self.target, self.task.local_user) as lmtp:
            for batch in self._batches(uids, sizes):
                if self.stop.is_set():
                    break
                data = remote.fetch(batch, ["BODY.PEEK[]", "FLAGS"], sizes=sizes)
                for uid in batch:
                    msg = data.get(uid)
                    if msg is None or msg.get(b"BODY[]") is None:
                        continue
                    body = msg[b"BODY[]"]
                    refused = lmtp.deliver(body)
                    if refused is not None:
                        self.result.add_error("delivery_refused", f"The local server refused the message over LMTP: {printable(refused, 500)}",
                                              folder=plan.remote, uid=uid, message_id=message_id(_head(body)))
                        fr.errors += 1
                        state.mark_failed(fs, [uid])
                        continue
                    # One checkpoint per message: LMTP gives no UID, so a message is recorded the moment it is delivered.
                    state.record(fs, [(uid, None, self._flags(msg.get(b"FLAGS")))])
                    fr.copied += 1
                    fr.bytes += len(body)
                    delivered.append(uid)
                del data
        return delivered

    def _batches(self, uids: list[int], sizes: dict[int, int]) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        weight = 0
        for uid in uids:
            size = sizes[uid]
            if current and (weight + size > BATCH_BYTES or len(current) >= BATCH_COUNT):
                batches.append(current)
                current, weight = [], 0
            current.append(uid)
            weight += size
        if current:
            batches.append(current)
        return batches

    def _transfer(self, plan: FolderPlan, fr: FolderResult, fs: FolderState, uids: list[int], sizes: dict[int, int],
                  advance: bool) -> list[int]:
        """Fetch batch n+1 on the remote while batch n is appended locally; checkpoint every batch."""
        remote, local, state = self._sessions()
        batches = self._batches(uids, sizes)
        if len(batches) == 1:  # nothing to overlap with
            data = remote.fetch(batches[0], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"], sizes=sizes)
            return self._append_batch(plan, fr, fs, batches[0], data, advance)
        budget = _Budget(2 * BATCH_BYTES)
        done = threading.Event()
        handoff: queue.Queue[t.Any] = queue.Queue(maxsize=2)

        def fetcher() -> None:
            try:
                for batch in batches:
                    weight = sum(sizes[u] for u in batch)
                    if not budget.acquire(weight, done):
                        return
                    if done.is_set() or self.stop.is_set():
                        budget.release(weight)
                        break
                    data = remote.fetch(batch, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"], sizes=sizes)
                    while not done.is_set():
                        try:
                            handoff.put((batch, weight, data), timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    del data
            except BaseException as exc:  # pylint: disable=broad-except
                handoff.put(exc)
                return
            handoff.put(None)

        thread = threading.Thread(target=fetcher, name="mailops-imap-fetch", daemon=True)
        thread.start()
        copied: list[int] = []
        try:
            while True:
                item = handoff.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                batch, weight, data = item
                try:
                    copied.extend(self._append_batch(plan, fr, fs, batch, data, advance))
                finally:
                    del data, item
                    budget.release(weight)
                self.log(f"{_route(plan)}: {len(copied)} of {len(uids)} messages copied")
        finally:
            done.set()
            while thread.is_alive():
                try:
                    handoff.get(timeout=0.2)
                except queue.Empty:
                    pass
                thread.join(0.05)
        return copied

    def _append_batch(self, plan: FolderPlan, fr: FolderResult, fs: FolderState, batch: list[int],
                      data: dict[int, dict[bytes, t.Any]], advance: bool) -> list[int]:
        _remote, local, state = self._sessions()
        items = []
        for uid in batch:
            msg = data.get(uid)
            if msg is None or msg.get(b"BODY[]") is None:
                continue  # expunged on the remote meanwhile
            items.append((uid, msg[b"BODY[]"], tuple(sorted(self._flags(msg.get(b"FLAGS")))), msg.get(b"INTERNALDATE")))
        if not items:
            return []
        try:
            luids = local.append_many(plan.local, [(body, flags, date) for _u, body, flags, date in items])
        except AppendRefused:
            # MULTIAPPEND is all or nothing: find the refused message(s) one by one, keep the others.
            return self._append_one_by_one(plan, fr, fs, items, advance)
        self._checkpoint(fr, fs, items, luids, advance)
        return [uid for uid, _b, _f, _d in items]

    def _append_one_by_one(self, plan: FolderPlan, fr: FolderResult, fs: FolderState, items: list[t.Any], advance: bool) -> list[int]:
        _remote, local, state = self._sessions()
        done: list[int] = []
        for item in items:
            uid, body, flags, date = item
            try:
                luids = local.append_many(plan.local, [(body, flags, date)])
            except AppendRefused as exc:
                self.result.add_error(
                    "append_refused",
                    f"The local server refused the message ({len(body)} bytes): {exc}",
                    folder=plan.remote, uid=uid, message_id=message_id(_head(body)),
                )
                fr.errors += 1
                state.mark_failed(fs, [uid])
                continue
            self._checkpoint(fr, fs, [item], luids, advance)
            done.append(uid)
        return done

    def _checkpoint(self, fr: FolderResult, fs: FolderState, items: list[t.Any], luids: list[int] | None, advance: bool) -> None:
        """Record a stored batch. ``advance`` moves the local checkpoint past it; not while older local messages are
        still unmatched (an interruption must leave them to the identity check of the next run)."""
        _remote, _local, state = self._sessions()
        entries = [(uid, luids[i] if luids else None, flags) for i, (uid, _b, flags, _d) in enumerate(items)]
        if luids:
            self._last_luid = max(self._last_luid, *luids)
            self._new_luids.extend(luids)
        state.record(fs, entries, local_uidnext=(max(luids) + 1) if luids and advance else None)
        fr.copied += len(items)
        fr.bytes += sum(len(body) for _u, body, _f, _d in items)

    # -- remote deletion ---------------------------------------------------------------------------------
    def _delete_remote(self, plan: FolderPlan, fr: FolderResult, fs: FolderState | None, rstat: dict[str, int],
                       planned: set[int] | None) -> None:
        """Delete remote messages confirmed present locally (and, for older_than, older than N days)."""
        remote, _local, state = self._sessions()
        task = self.task
        criteria: list[t.Any] = ["NOT", "DELETED"]
        if task.delete_remote == "older_than":
            cutoff = datetime.date.today() - datetime.timedelta(days=task.delete_remote_days or 0)
            criteria = ["BEFORE", cutoff] + criteria
        uidplus = remote.has("UIDPLUS")
        if not self.check and not uidplus and remote.search_uids(["DELETED"]):
            self.result.notice(
                f"{printable(plan.remote)}: the remote server has no UIDPLUS and other messages are marked deleted there; "
                "nothing was expunged, so that no message outside this sync is removed."
            )
            return
        for uids in remote.uid_windows(1, rstat["UIDNEXT"], rstat["MESSAGES"], criteria, window=WINDOW):
            confirmed = set(state.known_among(fs, uids)) if fs is not None else set()
            if self.check:
                fr.deleted_remote += sum(1 for u in uids if u in confirmed or (planned is not None and u in planned))
                continue
            if fs is None or not confirmed:
                continue
            targets = sorted(confirmed)
            remote.store(targets, [_DELETED], add=True)
            if uidplus:
                remote.uid_expunge(targets)
            else:
                with remote.guard("expunging"):
                    remote.client.expunge()
            state.forget(fs, targets)
            fr.deleted_remote += len(targets)
