# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The builtin sync engine: one remote account into one local account, exactly once per message.

Per folder: STATUS on both sides; with usable state and nothing new (same UIDNEXT and HIGHESTMODSEQ; on a
remote without CONDSTORE, with ``flag_sync: changed_folders``, same UIDNEXT and MESSAGES) the folder costs two
round trips. Otherwise only the remote UIDs not yet recorded are considered; local messages the state cannot
account for are matched by identity (Message-ID, Date, size) so nothing is doubled; the rest is copied in
byte-bounded batches, fetching the next batch while the previous one is appended (MULTIAPPEND), each batch
checkpointed. Remote flag changes reach the local copy by a three-way merge against the flags recorded at the
last sync, so local changes are never overwritten.

This module runs a sync: locks, logins, reconnects with backoff, one folder after the other. What a folder needs is
read by plan.Planner (read-only), a window at a time, and carried out by apply.Applier; in check mode apply.Tally
only counts the plans.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import traceback
import typing as t

from . import errors
from .apply import BATCH_BYTES, BATCH_COUNT, Applier, Outcome, Tally
from .config import Target, Task
from .contract import RUN_STOPPERS, Kind, Scope, Status
from .files import RunLocks
from .folders import FolderPlan, plan as plan_folders
from .imap import HAS_IMAPCLIENT, IMAPCLIENT_IMPORT_ERROR, SERVER_TEXT_LIMIT, Connection, Endpoint, insecure_notice
from .oauth import token_source
from .plan import WINDOW, FlagReader, FolderRun, Planner
from .progress import Progress
from .result import FolderResult, RunResult
from .state import State
from .text import printable

__all__ = ["run", "begin", "endpoints", "Syncer", "HAS_IMAPCLIENT", "IMAPCLIENT_IMPORT_ERROR", "BATCH_BYTES", "BATCH_COUNT",
           "WINDOW"]

MAX_RECONNECTS = 5  # per folder, and for the logins at the start of a run
BACKOFF_S = (1, 2, 4, 8, 16)  # seconds before each reconnect (or new login after a busy server's refusal)

# Failures of a reconnect that may pass: the next reconnect is tried (with backoff) until MAX_RECONNECTS. (The failures
# that stop the whole run are contract.RUN_STOPPERS; any other failure inside a folder fails that folder only.)
_RECONNECT_AGAIN = frozenset({Kind.CONNECT_FAILED, Kind.TIMEOUT, Kind.CONNECTION_LOST, Kind.SERVER_BUSY})


def _reconnect_again(failure: errors.SyncError) -> bool:
    """Whether a failed reconnect is tried again: a failure of a kind that may pass, or one that says it may (a token
    endpoint unavailable for now, oauth.TokenUnavailable)."""
    return failure.kind in _RECONNECT_AGAIN or isinstance(failure, errors.Transient)


LogFn = t.Callable[[str], None]
Connect = t.Callable[[Endpoint], t.Any]  # an Endpoint -> a logged-in session (imap.Connection)


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
    connect: Connect | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run one sync (or, in check mode, compute its exact plan without writing anything anywhere).

    ``log`` receives progress lines (no secrets); setting ``stop`` ends the run after the current batch, with the
    state checkpointed; ``on_locked`` is called once the task's and the account's locks are held (a skipped run
    never calls it). The account's lock lives in ``state_dir/locks`` (default: the directory of ``state_path``).
    ``connect`` opens a session (default: imap.Connection; the planner's unit tests give an in-memory store).
    ``progress`` is told the folders once they are known and updated as the run goes (progress.Progress).
    """
    syncer = Syncer(task, target, state_path, check_mode=check_mode, task_name=task_name, log=log, stop=stop,
                    connect=connect, progress=progress)
    syncer.on_locked = on_locked
    syncer.state_dir = state_dir
    return syncer.run()


def _with_progress(log: LogFn, progress: Progress) -> LogFn:
    def both(message: str) -> None:
        log(message)
        progress.update()
    return both


def begin(locks: RunLocks, result: RunResult, remote: Endpoint, on_locked: t.Callable[[], None] | None) -> bool:
    """The start of every run, whatever the engine: take its locks (False, and the result ``skipped``, when another run
    holds one; SyncError ``state_error`` when they cannot be used), tell ``on_locked``, note an insecure remote."""
    busy = locks.acquire()
    if busy is not None:
        result.notice(busy)
        result.finish(Status.SKIPPED)
        return False
    if on_locked is not None:
        on_locked()
    notice = insecure_notice(remote)
    if notice:
        result.notice(notice)
    return True


def scope(kind: Kind) -> Scope:
    """What a raised failure stops: the run (contract.RUN_STOPPERS: no other folder can work), else the folder it
    happened in. (A failure of one message is recorded in the result by the applier, never raised.)"""
    return Scope.RUN if kind in RUN_STOPPERS else Scope.FOLDER


def endpoints(task: Task, target: Target) -> tuple[Endpoint, Endpoint]:
    """The remote account (with its token source when remote_auth is not password: every connection of the run shares
    it, so a grant's token is kept across reconnects), and the local one (reached through the target's master user)."""
    remote = Endpoint(
        side="remote", host=task.remote_host, port=task.remote_port, security=task.remote_security,
        validate_certs=task.validate_certs, ca_file=task.ca_file, user=task.remote_user, password=task.remote_password,
        token=token_source(task),
    )
    local = Endpoint(
        side="local", host=target.host, port=target.port, security=target.security,
        validate_certs=target.validate_certs, ca_file=target.ca_file, user=target.master_user,
        password=target.master_password, authzid=task.local_user,
        login_user=f"{task.local_user}{target.master_separator}{target.master_user}",
    )
    return remote, local


class Syncer:
    """One run of the builtin engine (see the module's docstring)."""

    def __init__(self, task: Task, target: Target, state_path: str, *, check_mode: bool, task_name: str | None,
                 log: LogFn | None, stop: threading.Event | None, connect: Connect | None = None,
                 progress: Progress | None = None) -> None:
        self.task = task
        self.target = target
        self.state_path = state_path
        self.check = check_mode
        self.progress = progress
        self.log = log or (lambda _msg: None)
        if progress is not None:  # the engine logs as its counts change (each batch): the snapshot follows them
            self.log = _with_progress(self.log, progress)
        self.stop = stop or threading.Event()
        self.connect = connect or Connection
        self.result = RunResult(task=task_name, check_mode=check_mode)
        self.remote_ep, self.local_ep = endpoints(task, target)
        self.remote: t.Any = None  # imap.Connection (or what ``connect`` returns)
        self.local: t.Any = None
        self.state: State | None = None
        self.local_names: set[str] = set()
        # Folder statuses from LIST-STATUS at the start of the run: each is used once, by the first attempt.
        self.remote_status: dict[str, dict[str, int]] = {}
        self.local_status: dict[str, dict[str, int]] = {}
        self.flags = FlagReader()  # flags a server sent that are not IMAP flags: dropped, counted, shown in a notice
        self.planner = Planner(task, self.flags, self.stop, self.log, writes=not check_mode)
        self.outcome: Outcome = (Tally(self.result, remember=self.planner.policy.deletes) if check_mode else
                                 Applier(self.result, task, target, self.flags, self.stop, self.log))
        self.on_locked: t.Callable[[], None] | None = None
        self.state_dir: str | None = None  # where the account's lock lives (run(): default, the state file's directory)

    # -- the run --------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        result = self.result
        if self.task.engine != "builtin":
            return result.fail(Kind.UNSUPPORTED, f"engine: {self.task.engine} tasks are run by imapsync, not by the builtin "
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
            plans = self._folders()
            if self.progress is not None:
                self.progress.plan(result, [plan.remote for plan in plans], self.remote_status)
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
            return result.fail(Kind.STATE_ERROR, f"The temporary database of identity matching cannot be used "
                               f"({printable(exc, SERVER_TEXT_LIMIT)}); free space in the temporary directory (TMPDIR, "
                               "else /var/tmp) or point TMPDIR at a filesystem with room. What was copied is recorded and "
                               "the next run resumes.")
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # A bug, not a user's mistake: a sentence in the result, the details in the run log. Every batch
            # copied so far is checkpointed, so the next run resumes without duplicates.
            self.log("internal error:")
            for line in traceback.format_exc().splitlines():
                self.log(printable(line))
            return result.fail(Kind.INTERNAL_ERROR, f"The run stopped on an unexpected {type(exc).__name__} "
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

    def _flag_notice(self) -> None:
        notice = self.flags.notice()
        if notice:
            self.result.notice(notice)

    def _sessions(self) -> tuple[t.Any, t.Any, State]:
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
        self.remote = self.connect(self.remote_ep)
        self.local = self.connect(self.local_ep)

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

    def _folders(self) -> list[FolderPlan]:
        """The folders to sync (folders.plan), with the statuses LIST-STATUS gave of them."""
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
        if self.progress is not None:
            self.progress.update()
        attempt = 0
        while True:
            try:
                self._sync_folder(plan, fr, first=attempt == 0)
                self.log(f"{printable(plan.remote)} -> {printable(plan.local)}: done, {fr.copied} copied, {fr.already_present} "
                         f"already present, {fr.flags_updated} flag updates, {fr.deleted_remote} deleted on the remote, "
                         f"{fr.errors} errors")
                return
            except errors.Transient as exc:
                lost: errors.SyncError = exc
            except errors.SyncError as exc:
                if scope(exc.kind) is Scope.RUN:
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
                    if not _reconnect_again(again):
                        raise
                    lost = again

    # -- one folder: plan a window, carry it out (or, in check mode, count it), plan the next ------------------------
    def _sync_folder(self, plan: FolderPlan, fr: FolderResult, first: bool) -> None:
        remote, local, state = self._sessions()
        ctx = FolderRun(folder=plan, result=fr, remote=remote, local=local, state=state)
        planner, outcome = self.planner, self.outcome
        exists = plan.local in self.local_names
        selected = False
        if planner.open(ctx, self.remote_status.pop(plan.remote, None) if first else None,
                        (self.local_status.pop(plan.local, None) if first and exists else None), exists):
            if self.check:
                outcome.create_folder(ctx)
            else:
                self._create_while_selecting(ctx)
                selected = True
                self.local_names.add(plan.local)
        if first:
            fr.local_before = ctx.lstat["MESSAGES"] if ctx.lstat and not fr.created else 0
        if not planner.match_state(ctx):
            return  # nothing new, no flag to read, nothing to delete
        if not ctx.usable:
            outcome.reset_state(ctx)
        if not selected:
            planner.select_remote(ctx)
        for flags in planner.flag_updates(ctx):
            outcome.flags(ctx, flags)
        # Local messages the state does not account for (a first run into a non-empty folder, lost state,
        # copies stored just before an interruption) are matched by identity, so they are never doubled.
        planner.local_pool(ctx)
        try:
            for window in (planner.unseen(ctx) if planner.inbox else planner.copies(ctx)):
                outcome.copy(ctx, window)
        finally:
            if ctx.pool is not None:
                ctx.pool.close()
        if ctx.examined:
            outcome.examined(ctx)
        if planner.policy.deletes and ctx.rstat["MESSAGES"] and outcome.may_delete(ctx):
            for doomed in planner.deletions(ctx):
                outcome.delete(ctx, doomed)
        if not self.stop.is_set():
            outcome.finish(ctx)

    def _create_while_selecting(self, ctx: FolderRun) -> None:
        """Create the local folder (the local server's work: CREATE, SUBSCRIBE, STATUS) while the remote folder is
        opened (the remote server's: SELECT), each on its own connection, at the same time. A new folder always needs
        the remote one opened: no state can match a folder that did not exist."""
        failed: list[BaseException] = []

        def create() -> None:
            try:
                self.outcome.create_folder(ctx)
            except BaseException as exc:  # pylint: disable=broad-exception-caught  # raised below, in the run's thread
                failed.append(exc)

        worker = threading.Thread(target=create, name="mailops-imap-create", daemon=True)
        worker.start()
        try:
            self.planner.select_remote(ctx)
        finally:
            worker.join()  # the local connection is the run's again (a failure of the SELECT goes on after this)
        if failed:
            raise failed[0]
