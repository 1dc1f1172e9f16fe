# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The acting half of the builtin engine: :class:`Applier` carries out the plans of plan.Planner; :class:`Tally`, the
check mode, only counts them (check mode is the planner alone: docs/spec.md "Check mode").

The messages are copied in byte-bounded batches, fetching the next batch while the previous one is appended
(MULTIAPPEND), each batch checkpointed in the state, so an interrupted run resumes without duplicates.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
import typing as t

from . import flagsets
from .config import Target, Task
from .contract import Kind
from .identity import message_id
from .imap import AppendRefused, AppendStream, split_flags
from .lmtp import LmtpDelivery
from .plan import CopyPlan, DeletePlan, FlagPlan, FlagReader, FolderRun
from .result import RunResult
from .text import printable

BATCH_BYTES = 4 * 1024 * 1024  # a FETCH/APPEND batch, in message bytes
BATCH_COUNT = 1000  # messages per batch at most: each APPEND costs the local server a commit (Dovecot maildir: a sync)
FIRST_BATCH_BYTES = 256 * 1024  # the first batch of a transfer (apply.batches ``ramp``)
FIRST_BATCH_COUNT = 16
# One MULTIAPPEND, kept open across batches (imap.AppendStream), holds batches up to this many message bytes, or until it
# has been open this long: each is one commit for the local server (Dovecot's maildir: a sync, costlier as the folder
# grows), and one checkpoint.
COMMIT_BYTES = 64 * 1024 * 1024
COMMIT_SECONDS = 2.0

_DELETED = b"\\Deleted"

LogFn = t.Callable[[str], None]


@functools.lru_cache(maxsize=1)
def bounded_heap() -> None:
    """Ask glibc, once, before a transfer starts its fetching thread, for one heap (malloc arena) for the whole process
    and for every block of MMAP_BYTES or more in memory of its own, given back when freed.

    glibc gives threads that allocate heaps of their own, and raises its threshold for memory of its own to the
    largest block freed so far (up to 32 MiB); what is freed in a heap stays in the process. Message bodies, read by
    a fetching thread and freed by the appending one, so stayed: the peak RSS was 21 % higher at 50,000 messages in
    one folder than at 5,000, and 54 to 63 MiB for the bench mailbox (one 12 MB message), against 39 to 43 MiB with
    these settings, flat (docs/benchmarks.md). The engine's threads allocate while holding Python's GIL, so they never
    contend for one heap. Nothing happens where there is no glibc ``mallopt`` (ctypes is imported here, not for runs
    that copy nothing)."""
    try:
        import ctypes  # pylint: disable=import-outside-toplevel

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 1)
    mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)


_M_ARENA_MAX = -8  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_BYTES = 256 * 1024


@flagsets.cached
def _in_order(flags: frozenset[bytes]) -> tuple[bytes, ...]:
    """A message's flags as APPEND sends them and the state records them: sorted."""
    return tuple(sorted(flags))


def _head(body: bytes) -> bytes:
    end = body.find(b"\r\n\r\n")
    return body[:end] if end >= 0 else body[:65536]


def batches(uids: list[int], sizes: t.Mapping[int, int], ramp: bool = False) -> list[list[int]]:
    """``uids`` in order, cut into batches of at most BATCH_BYTES message bytes (one message at least) and BATCH_COUNT.

    With ``ramp`` (the first transfer of a folder, which fetches a batch while the previous one is appended), the
    batches grow from FIRST_BATCH_BYTES and FIRST_BATCH_COUNT, each twice the previous: the first append starts after a
    small fetch, and a stop, a checkpoint and the progress shown come after a few messages, not after a whole batch.
    Not for a transfer of at most FIRST_BATCH_COUNT messages or FIRST_BATCH_BYTES: each batch costs the local server a
    commit (Dovecot maildir: a sync of the folder; with its default mail_fsync, fsyncs that took 8 to 13 ms each on
    disk here), and so little has too little to overlap for a commit more to pay (300 new folders of 20 small
    messages took two MULTIAPPENDs each with the ramp; a +1 % re-run of the bench mailbox, a few new messages in
    each of 9 folders, 12 MULTIAPPENDs).
    """
    if ramp and (len(uids) <= FIRST_BATCH_COUNT or sum(sizes[uid] for uid in uids) <= FIRST_BATCH_BYTES):
        ramp = False
    out: list[list[int]] = []
    most_bytes, most = (min(FIRST_BATCH_BYTES, BATCH_BYTES), min(FIRST_BATCH_COUNT, BATCH_COUNT)) if ramp else (BATCH_BYTES, BATCH_COUNT)
    start = 0
    while start < len(uids):
        end, weight = start, 0
        while end < len(uids) and (end == start or (weight + sizes[uids[end]] <= most_bytes and end - start < most)):
            weight += sizes[uids[end]]
            end += 1
        out.append(uids[start:end])
        most_bytes, most = min(2 * most_bytes, BATCH_BYTES), min(2 * most, BATCH_COUNT)
        start = end
    return out


def commit_due(messages: int, weight: int, following: int | None, committed: int, ramp: bool, opened: float) -> bool:
    """Whether the MULTIAPPEND a transfer keeps open (``messages`` sent, of ``weight`` bytes, open since
    ``opened``, time.monotonic) ends after the batch just sent, ``following`` the weight of the next batch (None: it was
    the last). It ends before it would exceed COMMIT_BYTES or once open COMMIT_SECONDS (a slow remote still checkpoints
    every few seconds); with the ``ramp`` of :func:`batches`, as soon as it holds as many messages as the transfer
    committed before it (``committed``), so the first checkpoint comes after the first batch and the commits grow
    geometrically."""
    if following is None or (ramp and messages >= committed):
        return True
    return weight + following > COMMIT_BYTES or time.monotonic() - opened >= COMMIT_SECONDS


class Budget:
    """The message bodies a run holds at once, fetched and not yet appended, whatever its folder lanes: at most
    ``BATCHES`` batches (a batch's bodies are at most what was announced for it plus one message, fetchparse.py), and
    of at most ``limit`` announced bytes together, or one batch larger than that alone. Taken in the order asked for,
    so a large batch is not starved by smaller ones; only the appending loop releases a batch (once its messages are
    sent), and it waits here only holding no room (a refused MULTIAPPEND appended again, after the transfer's fetching
    thread ended and the batch it read ahead gave its room back: Applier._transfer)."""

    BATCHES = 2  # one fetched while one is appended

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.held = 0  # batches
        self.cond = threading.Condition()
        self.waiting: list[object] = []  # the acquirers, first come first served

    def acquire(self, amount: int, stopped: threading.Event) -> bool:
        """Room for a batch of ``amount`` announced bytes; False (nothing taken) when ``stopped`` is set while waiting."""
        amount = min(amount, self.limit)
        ticket = object()
        with self.cond:
            self.waiting.append(ticket)
            try:
                while (self.waiting[0] is not ticket or self.held >= self.BATCHES
                       or (self.used and self.used + amount > self.limit)):
                    if stopped.is_set():
                        return False
                    self.cond.wait(0.2)
                self.used += amount
                self.held += 1
                return True
            finally:
                self.waiting.remove(ticket)
                self.cond.notify_all()

    def release(self, amount: int) -> None:
        """The batch of ``amount`` announced bytes was appended (or dropped)."""
        with self.cond:
            self.used = max(0, self.used - min(amount, self.limit))
            self.held = max(0, self.held - 1)
            self.cond.notify_all()


class Lookahead:
    """A folder's windows (the planner's CopyPlans), of which a transfer reads the next one ahead, on its fetching
    thread, once its own batches are fetched: the next window's sizes (a remote command) and its first batch are read
    while the last batches of this one are appended, instead of after them, when the local server would wait for the
    remote one (docs/sync-engine.md "Transfer"). Only the fetching thread of the current transfer reads ahead, and only
    while the folder's loop waits in that transfer, so the planner is never run by two threads at once. A failure while
    reading ahead is raised where the loop asks for that window, after the current one is appended and checkpointed.
    :meth:`close` gives back the room of a batch read ahead and never appended."""

    def __init__(self, windows: t.Iterator[t.Any], budget: Budget) -> None:
        self._windows = windows
        self._budget = budget
        self._next: t.Any = None
        self._failure: BaseException | None = None
        self._ended = False
        self.first: tuple[list[int], int, dict[int, dict[bytes, t.Any]]] | None = None  # (batch, weight, data) of _next

    def __iter__(self) -> Lookahead:
        return self

    def __next__(self) -> t.Any:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        if self._next is not None:
            plan, self._next = self._next, None
            return plan
        if self._ended:
            raise StopIteration
        return next(self._windows)

    def read_ahead(self, fetch: t.Callable[[list[int], t.Mapping[int, int]], dict[int, dict[bytes, t.Any]]],
                   stopped: threading.Event) -> None:
        """On the fetching thread: the next window, and its first batch's messages within the budget."""
        if self._next is not None or self._ended or self._failure is not None:
            return
        try:
            self._next = plan = next(self._windows)
            if not plan.copy or stopped.is_set():
                return
            batch = batches(plan.copy, plan.sizes)[0]
            weight = sum(plan.sizes[uid] for uid in batch)
            if not self._budget.acquire(weight, stopped):
                return
            try:
                self.first = (batch, weight, fetch(batch, plan.sizes))
            except BaseException:
                self._budget.release(weight)
                raise
        except StopIteration:
            self._ended = True
        except BaseException as exc:  # pylint: disable=broad-exception-caught  # raised by __next__, in the loop's thread
            self._failure = exc

    def take_first(self, batch: list[int]) -> tuple[int, dict[int, dict[bytes, t.Any]]] | None:
        """The batch read ahead when it is ``batch`` (its weight and messages; its room in the budget goes with it)."""
        first, self.first = self.first, None
        if first is None:
            return None
        if first[0] != batch:
            self._budget.release(first[1])
            return None
        return first[1], first[2]

    def close(self) -> None:
        if self.first is not None:
            self._budget.release(self.first[1])
            self.first = None


class Outcome:
    """What every run does with a plan, check mode or not: count what is found present, report what is too big.
    Subclasses say what else happens (:class:`Applier` acts, :class:`Tally` counts)."""

    def __init__(self, result: RunResult) -> None:
        self.result = result

    def create_folder(self, ctx: FolderRun) -> None:
        ctx.result.created = True

    def reset_state(self, ctx: FolderRun) -> None:
        """The state does not match the folder (or has none): start its record afresh."""

    def flags(self, ctx: FolderRun, plan: FlagPlan) -> None:
        ctx.result.flags_updated += len(plan.touched)

    def windows(self, ctx: FolderRun, plans: t.Iterator[CopyPlan]) -> t.Iterator[CopyPlan]:
        """The windows of a folder, as :meth:`copy` takes them one after the other."""
        return plans

    def copy(self, ctx: FolderRun, plan: CopyPlan) -> list[int]:
        """Carry out one window; the remote UIDs confirmed present locally afterwards."""
        ctx.result.already_present += len(plan.present) + len(plan.known)
        for uid in plan.too_big:
            self.result.add_error(
                Kind.TOO_BIG, f"The message is {plan.sizes[uid]} bytes, more than the {plan.limit} bytes this run copies at most "
                "(the local server's APPENDLIMIT or the engine's limit); it was not copied: raise the local server's limit or "
                "move it by other means.", folder=ctx.folder.remote, uid=uid)
        ctx.result.errors += len(plan.too_big)
        return []

    def examined(self, ctx: FolderRun) -> None:
        """Every local message below the local UIDNEXT read at the start is accounted for."""

    def may_delete(self, ctx: FolderRun) -> bool:
        return True

    def delete(self, ctx: FolderRun, plan: DeletePlan) -> None:
        ctx.result.deleted_remote += len(plan.targets)

    def finish(self, ctx: FolderRun) -> None:
        """The folder is done: the next run starts from the remote UIDNEXT, HIGHESTMODSEQ and MESSAGES read at its start."""


class Tally(Outcome):
    """Check mode: the plans counted, nothing written anywhere. With ``remember`` (a deletion policy), what would be
    copied or is present is remembered, so that the deletions planned afterwards count it as confirmed."""

    def __init__(self, result: RunResult, remember: bool) -> None:
        super().__init__(result)
        self.remember = remember

    def copy(self, ctx: FolderRun, plan: CopyPlan) -> list[int]:
        super().copy(ctx, plan)
        ctx.result.copied += len(plan.copy)
        ctx.result.bytes += plan.bytes
        if self.remember:
            ctx.planned.update(plan.known)
            ctx.planned.update(plan.present)
            ctx.planned.update(plan.copy)
        return []


class Applier(Outcome):
    """Carries the plans out on both servers and checkpoints them in the state."""

    def __init__(self, result: RunResult, task: Task, target: Target, flags: FlagReader, stop: threading.Event,
                 log: LogFn) -> None:
        super().__init__(result)
        self.task = task
        self.target = target
        self.read_flags = flags
        self.stop = stop
        self.log = log
        # Two batches: one fetched while one is appended; the run's lanes share them (docs/sync-engine.md "Connections").
        self.budget = Budget(2 * BATCH_BYTES)
        # INBOX retrieval, by remote folder (a folder runs on one lane at a time): what a failed attempt stored in its
        # last window, for the folder's next attempt: the local UIDs its Sieve filter has not run on, and the remote UIDs
        # (known to the next attempt, which marks them \Seen: copied by this run, not already present).
        self.carried: dict[str, tuple[list[int], set[int]]] = {}

    # -- the folder ---------------------------------------------------------------------------------
    def create_folder(self, ctx: FolderRun) -> None:
        ctx.local.create(ctx.folder.local)
        super().create_folder(ctx)
        ctx.lstat = ctx.local.status(ctx.folder.local)

    def reset_state(self, ctx: FolderRun) -> None:
        ctx.fs = ctx.state.reset_folder(ctx.folder.remote, ctx.rstat["UIDVALIDITY"], ctx.folder.local,
                                        ctx.lstat["UIDVALIDITY"] if ctx.lstat else 0, 0)

    def examined(self, ctx: FolderRun) -> None:
        if ctx.fs is not None and ctx.lstat is not None:
            # Every local message below UIDNEXT is accounted for now: later runs look only above it.
            ctx.state.record(ctx.fs, [], local_uidnext=max(ctx.lstat["UIDNEXT"], ctx.last_luid + 1))

    def finish(self, ctx: FolderRun) -> None:
        if ctx.fs is not None:
            ctx.state.finish_folder(ctx.fs, ctx.rstat["UIDNEXT"], ctx.modseq, ctx.rstat["MESSAGES"])

    # -- flags -------------------------------------------------------------------------------------------
    def flags(self, ctx: FolderRun, plan: FlagPlan) -> None:
        for flag, luids in plan.adds.items():
            ctx.local.store(luids, [flag], add=True)
        for flag, luids in plan.removes.items():
            ctx.local.store(luids, [flag], add=False)
        super().flags(ctx, plan)
        if ctx.fs is not None:
            ctx.state.update_flags(ctx.fs, plan.moved.items())

    # -- copying ------------------------------------------------------------------------------------------
    def windows(self, ctx: FolderRun, plans: t.Iterator[CopyPlan]) -> t.Iterator[CopyPlan]:
        """A migration's windows are read ahead by the transfers (:class:`Lookahead`); not INBOX retrieval's (each window
        ends with commands of its own on both servers) nor those matched by identity (the planner's first pass uses the
        local connection)."""
        if self.task.folders == "inbox" or ctx.pool is not None:
            return plans
        ctx.ahead = Lookahead(plans, self.budget)
        return t.cast(t.Iterator[CopyPlan], ctx.ahead)

    def copy(self, ctx: FolderRun, plan: CopyPlan) -> list[int]:
        super().copy(ctx, plan)
        unfiltered, copied_before = self.carried.pop(ctx.folder.remote, ([], set()))
        if copied_before:
            ctx.result.already_present -= len(copied_before.intersection(plan.known))
            copied_before.difference_update(plan.known)
        ctx.new_luids, ctx.new_ruids = unfiltered, []
        try:
            confirmed = self._copy(ctx, plan)
        except BaseException:
            if self.task.folders == "inbox":
                self.carried[ctx.folder.remote] = (ctx.new_luids, copied_before.union(ctx.new_ruids))
            raise
        if self.task.folders == "inbox":
            if copied_before:
                self.carried[ctx.folder.remote] = ([], copied_before)
            self._retrieved(ctx, plan, confirmed)
        return confirmed

    def _copy(self, ctx: FolderRun, plan: CopyPlan) -> list[int]:
        fs = ctx.record()
        if plan.present:
            got = ctx.remote.fetch(sorted(plan.present), ["FLAGS"])
            flags_of = {uid: self.read_flags(d.get(b"FLAGS")) for uid, d in got.items()}
            ctx.state.record(fs, [(ruid, luid, flags_of.get(ruid, frozenset())) for ruid, luid in plan.present.items()])
        if plan.too_big:
            ctx.state.mark_failed(fs, plan.too_big)
        confirmed = sorted(plan.present)
        if plan.copy:
            if self.task.folders == "inbox" and self.task.delivery == "lmtp":
                self.log(f"{printable(ctx.folder.remote)}: delivering {len(plan.copy)} messages to {self.task.local_user} over LMTP")
                confirmed += self._deliver_lmtp(ctx, plan)
            else:
                self.log(f"{ctx.route}: copying {len(plan.copy)} messages")
                confirmed += self._transfer(ctx, plan, advance=ctx.pool is None)
        return confirmed

    def _retrieved(self, ctx: FolderRun, plan: CopyPlan, confirmed: list[int]) -> None:
        """INBOX retrieval after a window: the user's Sieve filter on the new messages, \\Seen on the remote."""
        if ctx.new_luids and self.task.sieve and self.task.delivery == "imap":
            self._filter_sieve(ctx, ctx.new_luids)
        seen = sorted(set(plan.known) | set(confirmed))
        if seen:
            ctx.remote.store(seen, [b"\\Seen"], add=True)

    def _filter_sieve(self, ctx: FolderRun, luids: list[int]) -> None:
        """Run the local user's Sieve script on exactly the new messages (Dovecot imap_filter_sieve)."""
        local = ctx.local
        if not local.has("FILTER=SIEVE"):
            self.result.notice(
                "The local server does not offer FILTER=SIEVE (Dovecot's imap_filter_sieve plugin): the retrieved "
                "messages stay in INBOX without the user's Sieve filter; enable the plugin, or use delivery: lmtp."
            )
            return
        local.select(ctx.folder.local, readonly=False)
        filtered = local.filter_sieve(luids)
        if filtered is not None:
            self.result.notice(f"The local server could not run the Sieve filter: {filtered}; the messages stay in INBOX.")
            return
        # A message the script filed elsewhere (fileinto) or discarded is left \Deleted in INBOX: expunge exactly those.
        gone = [uid for uid, data in local.fetch(luids, ["FLAGS"]).items() if _DELETED in split_flags(data.get(b"FLAGS"))[0]]
        if gone:
            local.uid_expunge(gone)

    def _deliver_lmtp(self, ctx: FolderRun, plan: CopyPlan) -> list[int]:
        """Deliver through the local server's LMTP (full delivery: global and user Sieve, vacation, quota)."""
        fs = ctx.record()
        delivered: list[int] = []
        with LmtpDelivery(self.target, self.task.local_user) as lmtp:
            for batch in batches(plan.copy, plan.sizes):
                if self.stop.is_set():
                    break
                data = ctx.remote.fetch(batch, ["BODY.PEEK[]", "FLAGS"], sizes=plan.sizes)
                for uid in batch:
                    msg = data.get(uid)
                    if msg is None or msg.get(b"BODY[]") is None:
                        continue
                    body = msg[b"BODY[]"]
                    refused = lmtp.deliver(body)
                    if refused is not None:
                        self.result.add_error(Kind.DELIVERY_REFUSED, f"The local server refused the message over LMTP: "
                                              f"{printable(refused, 500)}", folder=ctx.folder.remote, uid=uid,
                                              message_id=message_id(_head(body)))
                        ctx.result.errors += 1
                        ctx.state.mark_failed(fs, [uid])
                        continue
                    # One checkpoint per message: LMTP gives no UID, so a message is recorded the moment it is delivered.
                    ctx.state.record(fs, [(uid, None, self.read_flags(msg.get(b"FLAGS")))])
                    ctx.result.copied += 1
                    ctx.result.bytes += len(body)
                    delivered.append(uid)
                del data
        return delivered

    def _transfer(self, ctx: FolderRun, plan: CopyPlan, advance: bool) -> list[int]:
        """Fetch batch n+1 on the remote while batch n is sent to the local server; the batches go into one MULTIAPPEND
        kept open across them (:func:`commit_due` says when it ends: one commit and one checkpoint), or one MULTIAPPEND
        each when the local server cannot take that (no LITERAL+)."""
        uids, sizes, remote = plan.copy, plan.sizes, ctx.remote
        ramp = ctx.last_luid == 0  # nothing stored by this attempt yet: its first transfer
        todo = batches(uids, sizes, ramp=ramp)
        weights = [sum(sizes[u] for u in batch) for batch in todo]  # announced bytes: the budget's and commit_due's
        budget = self.budget
        ahead: Lookahead | None = ctx.ahead

        def fetch(batch: list[int], known: t.Mapping[int, int]) -> dict[int, dict[bytes, t.Any]]:
            return t.cast(dict[int, dict[bytes, t.Any]], remote.fetch(batch, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"], sizes=known))

        # The first batch, when the previous window's transfer read it ahead: held here only until it is handed on, so
        # that its messages go once appended (the budget counts them until then).
        got = ahead.take_first(todo[0]) if ahead is not None else None
        first = [got] if got is not None else []
        del got
        if len(todo) == 1:  # nothing to overlap with
            data: dict[int, dict[bytes, t.Any]] | None = None
            if first:
                weight, data = first.pop()
            else:
                weight = weights[0]
                if not budget.acquire(weight, self.stop):
                    return []
            try:
                return self._append_batch(ctx, todo[0], data if data is not None else fetch(todo[0], sizes), advance)
            finally:
                budget.release(weight)
        bounded_heap()
        done = threading.Event()
        handoff: queue.Queue[t.Any] = queue.Queue(maxsize=2)

        def fetcher() -> None:
            try:
                for index, batch in enumerate(todo):
                    data: dict[int, dict[bytes, t.Any]] | None = None
                    if index == 0 and first:
                        weight, data = first.pop()  # its room in the budget was taken when it was read ahead
                    else:
                        weight = weights[index]
                        if not budget.acquire(weight, done):
                            return
                    handed = False  # to the appending loop, which releases the batch's room in the budget
                    try:
                        if done.is_set() or self.stop.is_set():
                            break
                        if data is None:
                            data = fetch(batch, sizes)
                        while not done.is_set():
                            try:
                                handoff.put((batch, weight, data, index), timeout=0.2)
                                handed = True
                                break
                            except queue.Full:
                                continue
                        del data
                    finally:
                        if not handed:
                            budget.release(weight)
                else:
                    if ahead is not None and not (done.is_set() or self.stop.is_set()):
                        ahead.read_ahead(fetch, done)  # while the last batches are appended
            except BaseException as exc:  # pylint: disable=broad-except
                handoff.put(exc)
                return
            handoff.put(None)

        thread = threading.Thread(target=fetcher, name="mailops-imap-fetch", daemon=True)
        thread.start()
        stream = ctx.local.append_stream(ctx.folder.local)
        copied: list[int] = []
        sent: list[tuple[int, tuple[bytes, ...], int]] = []  # (remote UID, flags, size) in the open MULTIAPPEND
        opened = 0.0  # when the open MULTIAPPEND's first batch was sent
        refused: list[int] = []  # the messages of a MULTIAPPEND the local server refused
        failure: BaseException | None = None

        def commit() -> None:
            """End the open MULTIAPPEND: one commit for the local server, one checkpoint."""
            copied.extend(self._commit(ctx, t.cast(AppendStream, stream), sent, advance, refused))
            sent.clear()
            self.log(f"{ctx.route}: {len(copied)} of {len(uids)} messages copied")

        try:
            while True:
                try:
                    # Once open COMMIT_SECONDS (commit_due), the MULTIAPPEND ends also while the next batch is still
                    # being fetched: a slow remote does not keep what was sent unstored and the local command open.
                    item = handoff.get(timeout=max(0.0, opened + COMMIT_SECONDS - time.monotonic()) if sent else None)
                except queue.Empty:
                    commit()
                    continue
                if item is None:
                    break
                if isinstance(item, BaseException):
                    failure = item  # a remote failure: what was sent is committed first
                    break
                batch, weight, data, index = item
                try:
                    if stream is None:
                        copied.extend(self._append_batch(ctx, batch, data, advance))
                        self.log(f"{ctx.route}: {len(copied)} of {len(uids)} messages copied")
                    elif items := self._items(batch, data):
                        opened = opened if sent else time.monotonic()
                        stream.add([(body, flags, date) for _u, body, flags, date in items])
                        sent.extend((uid, flags, len(body)) for uid, body, flags, _d in items)
                        del items
                finally:
                    del data, item
                    budget.release(weight)  # the bodies are sent: only their UIDs and flags wait for the commit
                following = weights[index + 1] if index + 1 < len(todo) else None
                if sent and commit_due(len(sent), sum(size for _u, _f, size in sent), following, len(copied) + len(refused),
                                       ramp, opened):
                    commit()
            if sent:
                commit()
        finally:
            done.set()
            # The fetching thread ends; the batches it handed over and nobody appended give their room back.
            while thread.is_alive() or not handoff.empty():
                try:
                    left = handoff.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(left, tuple):
                    budget.release(left[1])
                del left
            thread.join()
        if failure is not None:
            raise failure
        if refused and not self.stop.is_set():
            if ahead is not None:
                # The next window's first batch read ahead holds room the batches appended again may need (a lane
                # would wait for itself): it is given back, and that window's transfer fetches it.
                ahead.close()
            copied.extend(self._append_again(ctx, refused, sizes, fetch, advance))
        return copied

    def _items(self, batch: list[int], data: dict[int, dict[bytes, t.Any]]) -> list[tuple[int, bytes, tuple[bytes, ...], t.Any]]:
        """(remote UID, body, flags in APPEND order, INTERNALDATE) of a fetched batch's messages, in UID order; a message
        expunged on the remote meanwhile is left out."""
        items = []
        for uid in batch:
            msg = data.get(uid)
            if msg is None or msg.get(b"BODY[]") is None:
                continue
            items.append((uid, msg[b"BODY[]"], _in_order(self.read_flags(msg.get(b"FLAGS"))), msg.get(b"INTERNALDATE")))
        return items

    def _commit(self, ctx: FolderRun, stream: AppendStream, sent: list[tuple[int, tuple[bytes, ...], int]], advance: bool,
                refused: list[int]) -> list[int]:
        """End the open MULTIAPPEND and checkpoint what it stored; when the local server refuses it (nothing of it is
        stored), its messages are added to ``refused``, appended again after the transfer (:meth:`_append_again`)."""
        try:
            luids = stream.end()
        except AppendRefused:
            refused.extend(uid for uid, _f, _s in sent)
            return []
        self._checkpoint(ctx, sent, luids, advance)
        return [uid for uid, _f, _s in sent]

    def _append_again(self, ctx: FolderRun, uids: list[int], sizes: t.Mapping[int, int],
                      fetch: t.Callable[[list[int], t.Mapping[int, int]], dict[int, dict[bytes, t.Any]]], advance: bool) -> list[int]:
        """The messages of a MULTIAPPEND the local server refused, fetched again a batch at a time and appended, a batch
        refused in turn one message at a time (:meth:`_append_batch`), so only the messages refused alone fail."""
        copied: list[int] = []
        for batch in batches(uids, sizes):
            weight = sum(sizes[u] for u in batch)
            if self.stop.is_set() or not self.budget.acquire(weight, self.stop):
                break
            try:
                copied.extend(self._append_batch(ctx, batch, fetch(batch, sizes), advance))
            finally:
                self.budget.release(weight)
        return copied

    def _append_batch(self, ctx: FolderRun, batch: list[int], data: dict[int, dict[bytes, t.Any]], advance: bool) -> list[int]:
        items = self._items(batch, data)
        if not items:
            return []
        try:
            luids = ctx.local.append_many(ctx.folder.local, [(body, flags, date) for _u, body, flags, date in items])
        except AppendRefused:
            # MULTIAPPEND is all or nothing: find the refused message(s) one by one, keep the others.
            return self._append_one_by_one(ctx, items, advance)
        self._checkpoint(ctx, [(uid, flags, len(body)) for uid, body, flags, _d in items], luids, advance)
        return [uid for uid, _b, _f, _d in items]

    def _append_one_by_one(self, ctx: FolderRun, items: list[t.Any], advance: bool) -> list[int]:
        done: list[int] = []
        for item in items:
            uid, body, flags, date = item
            try:
                luids = ctx.local.append_many(ctx.folder.local, [(body, flags, date)])
            except AppendRefused as exc:
                self.result.add_error(Kind.APPEND_REFUSED, f"The local server refused the message ({len(body)} bytes): {exc}",
                                      folder=ctx.folder.remote, uid=uid, message_id=message_id(_head(body)))
                ctx.result.errors += 1
                ctx.state.mark_failed(ctx.record(), [uid])
                continue
            self._checkpoint(ctx, [(uid, flags, len(body))], luids, advance)
            done.append(uid)
        return done

    def _checkpoint(self, ctx: FolderRun, stored: list[tuple[int, tuple[bytes, ...], int]], luids: list[int] | None,
                    advance: bool) -> None:
        """Record stored messages, each (remote UID, flags, size). ``advance`` moves the local checkpoint past them; not
        while older local messages are still unmatched (an interruption must leave them to the identity check of the
        next run)."""
        entries = [(uid, luids[i] if luids else None, flags) for i, (uid, flags, _s) in enumerate(stored)]
        if luids:
            ctx.last_luid = max(ctx.last_luid, *luids)
            ctx.new_luids.extend(luids)
        ctx.new_ruids.extend(uid for uid, _f, _s in stored)
        ctx.state.record(ctx.record(), entries, local_uidnext=(max(luids) + 1) if luids and advance else None)
        ctx.result.copied += len(stored)
        ctx.result.bytes += sum(size for _u, _f, size in stored)

    # -- remote deletion -----------------------------------------------------------------------------------
    def may_delete(self, ctx: FolderRun) -> bool:
        """Without UIDPLUS an EXPUNGE removes every message marked deleted: not while others are marked."""
        if not ctx.remote.has("UIDPLUS") and ctx.remote.search_uids(["DELETED"]):
            self.result.notice(
                f"{printable(ctx.folder.remote)}: the remote server has no UIDPLUS and other messages are marked deleted "
                "there; nothing was expunged, so that no message outside this sync is removed."
            )
            return False
        return True

    def delete(self, ctx: FolderRun, plan: DeletePlan) -> None:
        remote = ctx.remote
        remote.store(plan.targets, [_DELETED], add=True)
        if remote.has("UIDPLUS"):
            remote.uid_expunge(plan.targets)
        else:
            remote.expunge()
        ctx.state.forget(ctx.record(), plan.targets)
        super().delete(ctx, plan)
