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

This module runs a sync: locks, logins, reconnects with backoff, one folder after the other on each lane (more
pairs of sessions when many folders need work, docs/sync-engine.md "Transfer"). What a folder needs is
read by plan.Planner (read-only), a window at a time, and carried out by apply.Applier; in check mode apply.Tally
only counts the plans.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import traceback
import typing as t

from . import errors
from .apply import BATCH_BYTES, BATCH_COUNT, Applier, Outcome, Tally
from .config import Target, Task
from .contract import RUN_STOPPERS, Kind, Scope, Status
from .files import RunLocks
from .folders import FolderPlan, plan as plan_folders, selectable
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
# Folder lanes: with at least LANE_MIN_FOLDERS folders to work on, LANES pairs of sessions sync folders side by side
# (docs/sync-engine.md "Transfer"): one lane's round trips (CREATE, SELECT, state) overlap another's transfer. Three
# measured faster than two on 2 cores (300 new folders: 3.66 s against 3.90 s, medians of 5).
LANES = 3
LANE_MIN_FOLDERS = 16
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


class Halt(threading.Event):
    """Set when a run's lanes stop after their current batch: on request (the run's ``stop``, which it reads as well) or
    because a lane's failure stops the run (docs/sync-engine.md "Transfer"). Only ``is_set`` reads ``stop``."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.request = stop

    def is_set(self) -> bool:
        return self.request.is_set() or super().is_set()


class Lane:
    """One pair of sessions, remote and local, that syncs folders one after the other."""

    def __init__(self) -> None:
        self.remote: t.Any = None  # imap.Connection (or what ``connect`` returns)
        self.local: t.Any = None

    def close(self) -> None:
        for conn in (self.remote, self.local):
            if conn is not None:
                conn.close()
        self.remote = self.local = None


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


_T = t.TypeVar("_T")
_U = t.TypeVar("_U")


def at_once(here: t.Callable[[], _T], there: t.Callable[[], _U], name: str,
            undo: t.Callable[[_U], None] | None = None) -> tuple[_T, _U]:
    """``there()`` in a thread of its own while ``here()`` runs in this one (each on its own connection): both results.
    A failure of ``here`` is raised first, once ``there`` is done (``undo`` then gets what ``there`` gave, if anything);
    then a failure of ``there``."""
    got: list[_U] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            got.append(there())
        except BaseException as exc:  # pylint: disable=broad-exception-caught  # raised below, in the caller's thread
            failed.append(exc)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        mine = here()
    except BaseException:
        worker.join()
        if got and undo is not None:
            undo(got[0])
        raise
    worker.join()
    if failed:
        raise failed[0]
    return mine, got[0]


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
        self.halt = Halt(self.stop)  # what the planner, the applier and the lanes read: the stop, or a lane's failure
        self.started: list[FolderResult] = []  # the folders begun, in the order the lanes took them (for progress)
        self.connect = connect or Connection
        self.result = RunResult(task=task_name, check_mode=check_mode)
        self.remote_ep, self.local_ep = endpoints(task, target)
        self.lane = Lane()  # the run's sessions: listing, and the folders of the first lane
        self.state: State | None = None
        self.local_names: set[str] = set()
        # Folder statuses from LIST-STATUS at the start of the run: each is used once, by the first attempt.
        self.remote_status: dict[str, dict[str, int]] = {}
        self.local_status: dict[str, dict[str, int]] = {}
        self.flags = FlagReader()  # flags a server sent that are not IMAP flags: dropped, counted, shown in a notice
        self.planner = Planner(task, self.flags, self.halt, self.log, writes=not check_mode)
        self.outcome: Outcome = (Tally(self.result, remember=self.planner.policy.deletes) if check_mode else
                                 Applier(self.result, task, target, self.flags, self.halt, self.log))
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
            self._connect(self.lane)
            plans = self._folders()
            if self.progress is not None:
                self.progress.plan(self.started, [plan.remote for plan in plans], self.remote_status)
            self._run_folders(plans)
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
            self.lane.close()
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

    def _sessions(self, lane: Lane) -> tuple[t.Any, t.Any, State]:
        """The lane's open connections and the state (a run always has them once connected)."""
        if lane.remote is None or lane.local is None or not lane.remote.alive or not lane.local.alive:
            self._connect(lane)
        if lane.remote is None or lane.local is None or self.state is None:
            raise RuntimeError("sync: not connected")  # a programming error, never a user's
        return lane.remote, lane.local, self.state

    def _connect(self, lane: Lane) -> None:
        """Log in to both servers; a server refusing for now (too many connections, unavailable) is tried again with
        the reconnect backoff, at most MAX_RECONNECTS times."""
        attempt = 0
        while True:
            try:
                self._open(lane)
                return
            except errors.ServerBusy as exc:
                attempt = self._back_off(exc, attempt)

    def _open(self, lane: Lane) -> None:
        """Log in to both servers at the same time (:func:`at_once`): a failure of the remote login is raised first, as
        when they were made one after the other."""
        lane.close()
        try:
            lane.remote, lane.local = at_once(lambda: self.connect(self.remote_ep), lambda: self.connect(self.local_ep),
                                              "mailops-imap-login", undo=lambda conn: conn.close())
        except BaseException:
            lane.close()  # the remote session of a failed local login
            raise

    def _back_off(self, failure: errors.SyncError, attempt: int) -> int:
        """Wait before attempt ``attempt + 1`` (BACKOFF_S); the failure that stops the run once MAX_RECONNECTS are used."""
        if attempt >= MAX_RECONNECTS:
            raise errors.gave_up(failure, MAX_RECONNECTS) from None
        delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
        attempt += 1
        self.log(f"{failure.message} Reconnecting in {delay} s (attempt {attempt} of {MAX_RECONNECTS}).")
        self.halt.wait(delay)  # cut short when another lane's failure halts the run
        return attempt

    def _folders(self) -> list[FolderPlan]:
        """The folders to sync (folders.plan), with the statuses LIST-STATUS gave of them."""
        remote, local, _state = self._sessions(self.lane)
        # Each server lists its folders at the same time (:func:`at_once`).
        ((remote_list, self.remote_status), remote_ns), ((local_list, self.local_status), local_ns) = at_once(
            lambda: (remote.list_folders(), remote.namespace()), lambda: (local.list_folders(), local.namespace()),
            "mailops-imap-list")
        self.local_names = selectable(local_list) | {"INBOX"}
        plans = plan_folders(
            remote_list, remote_ns, local_list, local_ns,
            self.task.folders, self.task.exclude_patterns(), self.task.special_use_mapping,
        )
        self.log(f"{len(plans)} folders to sync")
        return plans

    def _run_folders(self, plans: list[FolderPlan]) -> None:
        """Sync the folders in order, on LANES lanes when enough of them need work (:meth:`_lanes`): each lane takes the
        next folder not yet taken. The result lists the folders started, and their errors, in the order of ``plans``. A
        failure that stops the run halts every lane after its current batch (checkpointed); the first failure a user
        can act on (a SyncError, in the order they happened) is raised here, else the first failure."""
        todo = iter(list(enumerate(plans)))
        taken = threading.Lock()
        failures: list[BaseException] = []  # the lanes' failures, in the order they happened (appended under ``taken``)
        started: list[tuple[int, FolderResult]] = []
        errors_before = len(self.result.errors)

        def work(lane: Lane) -> None:
            try:
                if lane.remote is None and not self._open_extra(lane):
                    return
                while not self.halt.is_set():
                    with taken:
                        index, plan = next(todo, (-1, None))
                        if plan is None:
                            return
                        fr = FolderResult(remote=plan.remote, local=plan.local)
                        started.append((index, fr))
                        self.started.append(fr)
                    self._folder_with_retry(lane, plan, fr)
            except BaseException as exc:  # pylint: disable=broad-exception-caught  # raised below, in the run's thread
                with taken:
                    failures.append(exc)
                self.halt.set()

        extra: list[tuple[threading.Thread, Lane]] = []
        try:
            for number in range(1, self._lanes(plans)):
                lane = Lane()
                thread = threading.Thread(target=work, args=(lane,), name=f"mailops-imap-lane{number}", daemon=True)
                thread.start()
                extra.append((thread, lane))
            work(self.lane)
        finally:
            for thread, lane in extra:
                thread.join()
                lane.close()
            self.halt.clear()
            self.result.folders.extend(fr for _index, fr in sorted(started, key=lambda item: item[0]))
            if extra:
                # The lanes added their folders' errors as they happened: put them in folder order, as one lane does.
                order = {plan.remote: index for index, plan in enumerate(plans)}
                self.result.errors[errors_before:] = sorted(self.result.errors[errors_before:],
                                                            key=lambda error: order.get(error["folder"], len(plans)))
        if failures:
            # The cause before its consequence: a failure the user can act on (the state file damaged) rather than what
            # it left another lane with.
            raise next((f for f in failures if isinstance(f, errors.SyncError)), failures[0]) from None

    def _open_extra(self, lane: Lane) -> bool:
        """The logins of a lane beside the run's own; refused (a connection limit), False: the folders are left to the
        lanes already open."""
        try:
            self._open(lane)
            return True
        except errors.SyncError as exc:
            lane.close()
            self.log(f"no further pair of sessions ({exc.message}); the folders are synced on the lanes already open")
            return False

    def _lanes(self, plans: list[FolderPlan]) -> int:
        """How many lanes sync the folders: LANES when at least LANE_MIN_FOLDERS folders look like needing more than
        their status (:meth:`_busy`) and no two folders land in the same local folder; else one. Another pair of
        sessions costs two logins, which only a run with many folders to work on gains back."""
        if LANES < 2 or len(plans) < LANE_MIN_FOLDERS:
            return 1
        if len({plan.local.casefold() for plan in plans}) < len(plans):
            return 1
        busy = sum(1 for plan in plans if self._busy(plan))
        return LANES if busy >= LANE_MIN_FOLDERS else 1

    def _busy(self, plan: FolderPlan) -> bool:
        """Whether a folder likely needs more than its status: no status from LIST-STATUS, no state record, no local
        folder yet, or new messages or flag changes by the listed status (a guess for choosing lanes, nothing more:
        Planner.match_state decides)."""
        status = self.remote_status.get(plan.remote)
        fs = self.state.folder(plan.remote) if self.state is not None else None
        if status is None or fs is None or plan.local not in self.local_names:
            return True
        return status.get("UIDNEXT") != fs.remote_uidnext or status.get("HIGHESTMODSEQ", 0) != fs.highestmodseq

    def _folder_with_retry(self, lane: Lane, plan: FolderPlan, fr: FolderResult) -> None:
        """Sync one folder; a dropped connection is reconnected with backoff and the folder resumes from its checkpoint."""
        if self.progress is not None:
            self.progress.update()
        attempt = 0
        while True:
            try:
                self._sync_folder(lane, plan, fr, first=attempt == 0)
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
                if not (lane.remote and lane.remote.alive and lane.local and lane.local.alive):
                    lane.close()  # a server broke the protocol: the next folder starts on new connections
                self.result.add_error(exc.kind, exc.message, folder=plan.remote)
                return
            lane.close()
            while True:
                attempt = self._back_off(lost, attempt)
                if self.halt.is_set():
                    return  # the run stops (on request, or by another lane's failure): the folder resumes next run
                try:
                    self._open(lane)
                    break
                except errors.SyncError as again:
                    if not _reconnect_again(again):
                        raise
                    lost = again

    # -- one folder: plan a window, carry it out (or, in check mode, count it), plan the next ------------------------
    def _sync_folder(self, lane: Lane, plan: FolderPlan, fr: FolderResult, first: bool) -> None:
        remote, local, state = self._sessions(lane)
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
            for window in outcome.windows(ctx, planner.unseen(ctx) if planner.inbox else planner.copies(ctx)):
                outcome.copy(ctx, window)
        finally:
            if ctx.ahead is not None:
                ctx.ahead.close()
            if ctx.pool is not None:
                ctx.pool.close()
        if ctx.examined:
            outcome.examined(ctx)
        if planner.policy.deletes and ctx.rstat["MESSAGES"] and outcome.may_delete(ctx):
            for doomed in planner.deletions(ctx):
                outcome.delete(ctx, doomed)
        if not self.halt.is_set():
            outcome.finish(ctx)

    def _create_while_selecting(self, ctx: FolderRun) -> None:
        """Create the local folder (the local server's work: CREATE, SUBSCRIBE, STATUS) while the remote folder is
        opened (the remote server's: SELECT), each on its own connection, at the same time. A new folder always needs
        the remote one opened: no state can match a folder that did not exist."""
        at_once(lambda: self.planner.select_remote(ctx), lambda: self.outcome.create_folder(ctx), "mailops-imap-create")
