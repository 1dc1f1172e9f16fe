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
import queue
import threading
import time
import typing as t

from . import errors
from .config import Target, Task
from .folders import FolderPlan, plan as plan_folders
from .identity import identities, match, message_id
from .imap import (
    HAS_IMAPCLIENT, IMAPCLIENT_IMPORT_ERROR, AppendRefused, Connection, Endpoint, parse_list_flags,
)
from .result import FolderResult, RunResult

__all__ = ["run", "endpoints", "Syncer", "HAS_IMAPCLIENT", "IMAPCLIENT_IMPORT_ERROR", "BATCH_BYTES"]
from .state import Busy, FolderState, State

BATCH_BYTES = 4 * 1024 * 1024  # a FETCH/APPEND batch, in message bytes
BATCH_COUNT = 250  # messages per batch at most
MAX_RECONNECTS = 5
BACKOFF_S = (1, 2, 4, 8, 16)

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
) -> RunResult:
    """Run one sync (or, in check mode, compute its exact plan without writing anything anywhere)."""
    return Syncer(task, target, state_path, check_mode=check_mode, task_name=task_name, log=log, stop=stop).run()


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


def _flags(raw: t.Any) -> frozenset[bytes]:
    return frozenset(f for f in parse_list_flags(raw) if f.upper() != _RECENT)


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

    # -- the run --------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        result = self.result
        if self.task.folders == "inbox" or self.task.engine != "builtin":
            what = "folders: inbox" if self.task.folders == "inbox" else f"engine: {self.task.engine}"
            result.add_error("unsupported", f"{what} is not supported by this version of the engine yet; use folders: all or all_except.")
            result.finish("failed")
            return result
        try:
            self.state = State(self.state_path, readonly=self.check)
            try:
                self.state.lock()
            except Busy:
                result.notice("Another run of this task is active; this run was skipped.")
                result.finish("skipped")
                return result
            self._connect()
            plans = self._plan()
            for plan in plans:
                if self.stop.is_set():
                    result.notice("The run was stopped before all folders were synced; the next run continues.")
                    break
                self._folder_with_retry(plan)
        except errors.SyncError as exc:
            result.add_error(exc.kind, exc.message)
            result.finish("failed")
            return result
        finally:
            self._disconnect()
            if self.state is not None:
                self.state.close()
        result.finish()
        return result

    def _sessions(self) -> tuple[Connection, Connection, State]:
        """The open connections and the state (a run always has them once connected)."""
        if self.remote is None or self.local is None:
            self._connect()
        if self.remote is None or self.local is None or self.state is None:
            raise RuntimeError("sync: not connected")  # a programming error, never a user's
        return self.remote, self.local, self.state

    def _connect(self) -> None:
        self._disconnect()
        self.remote = Connection(self.remote_ep)
        self.local = Connection(self.local_ep)

    def _disconnect(self) -> None:
        for conn in (self.remote, self.local):
            if conn is not None:
                conn.close()
        self.remote = self.local = None

    def _plan(self) -> list[FolderPlan]:
        remote, local, _state = self._sessions()
        remote_list = remote.list_folders()
        local_list = local.list_folders()
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
        fr = FolderResult(remote=plan.remote, local=plan.local)
        self.result.folders.append(fr)
        attempt = 0
        while True:
            try:
                self._sync_folder(plan, fr, first=attempt == 0)
                return
            except errors.ConnectionLost as exc:
                if attempt >= MAX_RECONNECTS:
                    raise errors.SyncError(
                        errors.CONNECTION_LOST,
                        f"{exc.message[:-1] if exc.message.endswith('.') else exc.message}; gave up after {MAX_RECONNECTS} reconnects."
                        " The next run resumes where this one stopped.",
                        exc.side,
                    ) from None
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                self.log(f"{exc.message} Reconnecting in {delay} s (attempt {attempt} of {MAX_RECONNECTS}).")
                time.sleep(delay)
                try:
                    self._connect()
                except errors.SyncError as again:
                    if again.kind not in (errors.CONNECT_FAILED, errors.TIMEOUT, errors.CONNECTION_LOST):
                        raise
                    self._disconnect()  # the next attempt connects again
            except errors.SyncError as exc:
                if exc.kind in (errors.AUTH_FAILED, errors.TLS_FAILED, errors.STATE_ERROR, errors.MISSING_LIBRARY):
                    raise
                fr.errors += 1
                self.result.add_error(exc.kind, exc.message, folder=plan.remote)
                return

    # -- one folder -------------------------------------------------------------------------------------
    def _sync_folder(self, plan: FolderPlan, fr: FolderResult, first: bool) -> None:
        remote, local, state = self._sessions()
        task, check = self.task, self.check
        deleting = task.delete_remote != "never"

        rstat = remote.status(plan.remote)
        lstat: dict[str, int] | None = None
        if plan.local in self.local_names:
            lstat = local.status(plan.local)
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
                self.log(f"{plan.remote}: state does not match the folders any more (UIDVALIDITY changed or a folder was recreated); matching by identity")
            fs = None if check else state.reset_folder(plan.remote, rstat["UIDVALIDITY"], plan.local, lstat["UIDVALIDITY"] if lstat else 0, 0)

        remote.select(plan.remote, readonly=check or not deleting)
        if rstat["MESSAGES"] == 0:
            candidates: list[int] = []
        elif usable and fs is not None:
            fresh = remote.uids_from(fs.remote_uidnext) if rstat["UIDNEXT"] > fs.remote_uidnext else []
            pending = set(fresh) | failed
            known_new = state.known_among(fs, pending)
            candidates = sorted(pending - set(known_new))
        else:
            candidates = remote.search_uids(["ALL"])

        if usable and fs is not None:
            self._merge_flags(plan, fr, fs, modseq)

        confirmed = self._copy(plan, fr, fs, usable, lstat, candidates)

        if deleting:
            self._delete_remote(plan, fr, fs, confirmed)

        if not check and fs is not None and not self.stop.is_set():
            state.finish_folder(fs, rstat["UIDNEXT"], modseq)

    # -- flags ------------------------------------------------------------------------------------------
    def _merge_flags(self, plan: FolderPlan, fr: FolderResult, fs: FolderState, modseq: int) -> None:
        """Apply remote flag changes to the local copies; a flag changed locally is never overwritten."""
        remote, local, state = self._sessions()
        if modseq and fs.highestmodseq:
            if modseq == fs.highestmodseq:
                return
            changed = remote.search_uids(["MODSEQ", str(fs.highestmodseq + 1)])
            known = state.known_among(fs, changed)
        else:
            known = state.known(fs)
        if not known:
            return
        now = {uid: _flags(data.get(b"FLAGS")) for uid, data in remote.fetch(list(known), ["FLAGS"]).items()}
        moved = {ruid: flags for ruid, flags in now.items() if flags != known[ruid][1]}
        if not moved:
            return
        by_luid = {known[ruid][0]: ruid for ruid in moved if known[ruid][0] is not None}
        if by_luid:
            local.select(plan.local, readonly=self.check)
            local_now = {uid: _flags(data.get(b"FLAGS")) for uid, data in local.fetch(list(by_luid), ["FLAGS"]).items()}
            adds: dict[bytes, list[int]] = {}
            removes: dict[bytes, list[int]] = {}
            touched = set()
            for luid, ruid in by_luid.items():
                if luid not in local_now:
                    continue  # deleted locally: leave it deleted
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
    def _copy(self, plan: FolderPlan, fr: FolderResult, fs: FolderState | None, usable: bool,
              lstat: dict[str, int] | None, candidates: list[int]) -> list[int]:
        remote, local, state = self._sessions()
        meta = remote.fetch(candidates, ["RFC822.SIZE"]) if candidates else {}
        sizes = {uid: int(data.get(b"RFC822.SIZE", 0)) for uid, data in meta.items()}

        # Local messages the state does not account for: a first run into a non-empty folder, lost state,
        # or copies appended just before an interruption. Matching by identity keeps them from doubling.
        local_uids: list[int] = []
        if lstat is not None and lstat["MESSAGES"]:
            if not usable:
                local.select(plan.local, readonly=True)
                local_uids = local.search_uids(["ALL"])
            elif fs is not None and lstat["UIDNEXT"] > fs.local_uidnext:
                local.select(plan.local, readonly=True)
                local_uids = local.uids_from(fs.local_uidnext)
                if local_uids:
                    recorded = state.recorded_luids(fs, fs.local_uidnext)
                    local_uids = [u for u in local_uids if u not in recorded]
        present: dict[int, int] = {}
        if local_uids and sizes:
            present = match(identities(remote, sorted(sizes)), identities(local, local_uids))
        if not self.check and fs is not None and lstat is not None and (present or local_uids or not usable):
            # Every local message below UIDNEXT is now accounted for: later runs look only above it.
            flags_of = {uid: _flags(d.get(b"FLAGS")) for uid, d in remote.fetch(sorted(present), ["FLAGS"]).items()} if present else {}
            state.record(fs, [(ruid, luid, flags_of.get(ruid, frozenset())) for ruid, luid in present.items()],
                         local_uidnext=lstat["UIDNEXT"])
        fr.already_present += len(present)

        to_copy = [uid for uid in sorted(sizes) if uid not in present]
        if not to_copy:
            return sorted(present)
        if self.check:
            fr.copied += len(to_copy)
            fr.bytes += sum(sizes[uid] for uid in to_copy)
            return sorted(present) + to_copy
        if fs is None:
            raise RuntimeError("sync: no folder state outside check mode")
        self.log(f"{plan.remote} -> {plan.local}: copying {len(to_copy)} messages")
        return sorted(present) + self._transfer(plan, fr, fs, to_copy, sizes)

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

    def _transfer(self, plan: FolderPlan, fr: FolderResult, fs: FolderState, uids: list[int], sizes: dict[int, int]) -> list[int]:
        """Fetch batch n+1 on the remote while batch n is appended locally; checkpoint every batch."""
        remote, local, state = self._sessions()
        batches = self._batches(uids, sizes)
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
                    data = remote.fetch(batch, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
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
                    copied.extend(self._append_batch(plan, fr, fs, batch, data))
                finally:
                    del data, item
                    budget.release(weight)
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
                      data: dict[int, dict[bytes, t.Any]]) -> list[int]:
        _remote, local, state = self._sessions()
        items = []
        for uid in batch:
            msg = data.get(uid)
            if msg is None or msg.get(b"BODY[]") is None:
                continue  # expunged on the remote meanwhile
            items.append((uid, msg[b"BODY[]"], tuple(sorted(_flags(msg.get(b"FLAGS")))), msg.get(b"INTERNALDATE")))
        if not items:
            return []
        try:
            luids = local.append_many(plan.local, [(body, flags, date) for _u, body, flags, date in items])
        except AppendRefused:
            # MULTIAPPEND is all or nothing: find the refused message(s) one by one, keep the others.
            return self._append_one_by_one(plan, fr, fs, items)
        self._checkpoint(fr, fs, items, luids)
        return [uid for uid, _b, _f, _d in items]

    def _append_one_by_one(self, plan: FolderPlan, fr: FolderResult, fs: FolderState, items: list[t.Any]) -> list[int]:
        _remote, local, state = self._sessions()
        done: list[int] = []
        for item in items:
            uid, body, flags, date = item
            try:
                luids = local.append_many(plan.local, [(body, flags, date)])
            except AppendRefused as exc:
                head = body[:body.find(b"\r\n\r\n")] if b"\r\n\r\n" in body else body[:65536]
                self.result.add_error(
                    "append_refused",
                    f"The local server refused the message ({len(body)} bytes): {exc}",
                    folder=plan.remote, uid=uid, message_id=message_id(head),
                )
                fr.errors += 1
                state.mark_failed(fs, [uid])
                continue
            self._checkpoint(fr, fs, [item], luids)
            done.append(uid)
        return done

    def _checkpoint(self, fr: FolderResult, fs: FolderState, items: list[t.Any], luids: list[int] | None) -> None:
        _remote, _local, state = self._sessions()
        entries = [(uid, luids[i] if luids else None, flags) for i, (uid, _b, flags, _d) in enumerate(items)]
        state.record(fs, entries, local_uidnext=(max(luids) + 1) if luids else None)
        fr.copied += len(items)
        fr.bytes += sum(len(body) for _u, body, _f, _d in items)

    # -- remote deletion ---------------------------------------------------------------------------------
    def _delete_remote(self, plan: FolderPlan, fr: FolderResult, fs: FolderState | None, confirmed: list[int]) -> None:
        """Delete remote messages confirmed present locally (and, for older_than, older than N days)."""
        remote, _local, state = self._sessions()
        task = self.task
        criteria: list[t.Any] = ["NOT", "DELETED"]
        if task.delete_remote == "older_than":
            cutoff = datetime.date.today() - datetime.timedelta(days=task.delete_remote_days or 0)
            criteria = ["BEFORE", cutoff] + criteria
        present = remote.search_uids(criteria)
        if not present:
            return
        if self.check:
            targets = sorted(set(present) & (set(state.known_among(fs, present)) | set(confirmed)))
            fr.deleted_remote += len(targets)
            return
        if fs is None:
            raise RuntimeError("sync: no folder state outside check mode")
        targets = sorted(state.known_among(fs, present))
        if not targets:
            return
        if not remote.has("UIDPLUS"):
            others = set(remote.search_uids(["DELETED"])) - set(targets)
            if others:
                self.result.notice(
                    f"{plan.remote}: the remote server has no UIDPLUS and other messages are marked deleted there; "
                    "nothing was expunged, so that no message outside this sync is removed."
                )
                return
        remote.store(targets, [_DELETED], add=True)
        if remote.has("UIDPLUS"):
            remote.uid_expunge(targets)
        else:
            with remote.guard("expunging"):
                remote.client.expunge()
        state.forget(fs, targets)
        fr.deleted_remote += len(targets)
