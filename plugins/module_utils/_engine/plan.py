# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The read-only half of the builtin engine: what one folder needs, a window of UIDs at a time.

The planner reads both servers and the state and writes nothing anywhere. For one folder it says whether the local
folder must be created and whether the state still matches it (:meth:`Planner.open`); then it yields, a window at a
time, the flag updates (:class:`FlagPlan`), the messages to copy and those already present (:class:`CopyPlan`; in
INBOX retrieval also those to mark ``\\Seen`` only) and the remote deletions (:class:`DeletePlan`). The applier
(apply.Applier) carries each plan out before the planner reads the next window, so memory stays flat and every
batch is checkpointed; in check mode apply.Tally only counts the plans: check mode is the planner alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import typing as t

from . import deletion, flagsets
from .config import Task
from .folders import FolderPlan
from .identity import IdentityPool, content_digests, identities
from .imap import chunks, split_flags
from .result import FolderResult
from .state import FolderState, State
from .text import printable

WINDOW = 2000  # UIDs considered at a time: memory stays flat whatever the size of a folder
# UIDs considered at a time by copies() without identity matching (a UID and a size each). 4,000 rather than 8,000: the
# peak RSS of 5,000 / 50,000 new messages in one folder went from 37.1 / 41.0 MiB to 36.8 / 38.1 MiB (flat), at about
# the same speed (docs/benchmarks.md "Folder lanes").
COPY_WINDOW = 4000

_RECENT = b"\\RECENT"

LogFn = t.Callable[[str], None]


class Mailbox(t.Protocol):
    """The engine's connection interface (imap.Connection; an in-memory store in the planner's unit tests)."""

    alive: bool

    def has(self, capability: str) -> bool:
        """Whether the server announced ``capability``."""

    def max_message(self) -> int:
        """The largest message the server takes (APPENDLIMIT), at most the engine's limit."""

    def status(self, folder: str) -> dict[str, int]:
        """STATUS: MESSAGES, UIDNEXT, UIDVALIDITY (and HIGHESTMODSEQ with CONDSTORE)."""

    def select(self, folder: str, readonly: bool) -> dict[str, int]:
        """SELECT (or EXAMINE, ``readonly``) a folder."""

    def search_uids(self, criteria: list[t.Any]) -> list[int]:
        """UID SEARCH: the matching UIDs, ascending."""

    def uid_windows(self, low: int, uidnext: int, messages: int, criteria: list[t.Any] | None = None,
                    window: int = 2000) -> t.Iterator[list[int]]:
        """The UIDs in [low, uidnext) matching ``criteria``, at most ``window`` at a time."""

    def size_windows(self, low: int, uidnext: int, messages: int, window: int = 2000) -> t.Iterator[dict[int, int]]:
        """The messages in [low, uidnext) with their RFC822.SIZE, at most ``window`` at a time, ascending."""

    def fetch(self, uids: t.Sequence[int], items: list[str], modifiers: list[str] | None = None,
              sizes: t.Mapping[int, int] | None = None) -> dict[int, dict[bytes, t.Any]]:
        """UID FETCH ``items``: UID -> item name -> value."""


@flagsets.cached
def _read_flags(raw: t.Any) -> tuple[frozenset[bytes], tuple[bytes, ...]]:
    """The flags of a FETCH FLAGS value that are kept (split_flags, ``\\Recent`` dropped), and those dropped."""
    valid, dropped = split_flags(raw)
    return frozenset(f for f in valid if f.upper() != _RECENT), dropped


class FlagReader:
    """The flags of FETCH FLAGS values, for the planner and the applier alike: ``\\Recent`` dropped, and anything that is
    not an IMAP flag dropped and counted for the run's notice, so that no byte of it reaches a command."""

    def __init__(self) -> None:
        self.dropped = 0
        self.examples: list[bytes] = []  # the first few dropped, shown in the notice
        self.mutex = threading.Lock()  # a run's folder lanes and their fetch threads read flags at the same time

    def __call__(self, raw: t.Any) -> frozenset[bytes]:
        flags, dropped = _read_flags(raw)
        if dropped:
            with self.mutex:
                self.dropped += len(dropped)
                for flag in dropped:
                    if len(self.examples) < 3 and flag not in self.examples:
                        self.examples.append(flag)
        return flags

    def notice(self) -> str | None:
        if not self.dropped:
            return None
        shown = ", ".join(f"'{printable(flag, 60)}'" for flag in self.examples)
        return (f"A server sent {self.dropped} flags that are not valid IMAP flags (such as {shown}); they were dropped, "
                "not copied, and the messages with their other flags were copied.")


@dataclasses.dataclass
class FolderRun:
    """Everything one attempt at one folder works with: the folder, its result, both sessions and the state, the
    statuses read at its start, its state record, and what the run learnt on the way."""

    folder: FolderPlan
    result: FolderResult
    remote: t.Any  # Mailbox (imap.Connection)
    local: t.Any  # Mailbox (imap.Connection)
    state: State
    rstat: dict[str, int] = dataclasses.field(default_factory=dict)  # remote STATUS: MESSAGES, UIDNEXT, UIDVALIDITY[, HIGHESTMODSEQ]
    lstat: dict[str, int] | None = None  # local STATUS; None while the local folder does not exist
    fs: FolderState | None = None  # the folder's state record (None in check mode without usable state)
    usable: bool = False  # the state matches both folders (same UIDVALIDITYs, same local folder)
    failed: set[int] = dataclasses.field(default_factory=set)  # remote UIDs refused by earlier runs (usable state only)
    pool: IdentityPool | None = None  # local messages the state cannot account for, by identity
    examined: bool = False  # every local message below lstat's UIDNEXT is accounted for once the folder is done
    last_luid: int = 0  # the highest local UID stored in this folder by this attempt
    new_luids: list[int] = dataclasses.field(default_factory=list)  # local UIDs stored by the current window (Sieve filter)
    new_ruids: list[int] = dataclasses.field(default_factory=list)  # remote UIDs stored by the current window
    planned: set[int] = dataclasses.field(default_factory=set)  # check mode, deleting: remote UIDs that would be present locally
    ahead: t.Any = None  # apply.Lookahead: the folder's windows while a migration copies them

    def record(self) -> FolderState:
        """The folder's state record, which a writing run always has (created or reset before the first window)."""
        if self.fs is None:
            raise RuntimeError("no state record for the folder")  # a programming error, never a user's
        return self.fs

    @property
    def modseq(self) -> int:
        """The remote folder's HIGHESTMODSEQ at the start (0 without CONDSTORE)."""
        return self.rstat.get("HIGHESTMODSEQ", 0)

    @property
    def route(self) -> str:
        """``remote -> local``, for a log line."""
        return f"{printable(self.folder.remote)} -> {printable(self.folder.local)}"


@dataclasses.dataclass
class FlagPlan:
    """Remote flag changes of one window, merged three-way against the flags recorded at the last sync."""

    moved: dict[int, frozenset[bytes]]  # remote UID -> its remote flags now (the new base)
    adds: dict[bytes, list[int]]  # flag -> local UIDs that get it
    removes: dict[bytes, list[int]]  # flag -> local UIDs that lose it
    touched: set[int]  # local UIDs whose flags change


@dataclasses.dataclass
class CopyPlan:
    """One window of remote messages: those already present locally and those to copy."""

    present: dict[int, int]  # remote UID -> local UID: present locally, adopted by identity
    copy: list[int]  # remote UIDs to copy, in order
    sizes: dict[int, int]  # remote UID -> RFC822.SIZE of the messages considered
    too_big: list[int]  # remote UIDs larger than ``limit``: never fetched, an error each
    limit: int  # the largest message the local server takes
    known: list[int] = dataclasses.field(default_factory=list)  # INBOX retrieval: recorded already, only marked \Seen

    @property
    def bytes(self) -> int:
        return sum(self.sizes[uid] for uid in self.copy)


@dataclasses.dataclass
class DeletePlan:
    """Remote messages to delete (flag \\Deleted and expunge): confirmed present locally."""

    targets: list[int]


class Planner:
    """Reads what one folder needs (see the module's docstring); ``writes`` is False in check mode, where every folder is
    opened read-only."""

    def __init__(self, task: Task, flags: FlagReader, stop: threading.Event, log: LogFn, *, writes: bool) -> None:
        self.task = task
        self.flags = flags
        self.stop = stop
        self.log = log
        self.writes = writes
        self.policy = deletion.policy(task.delete_remote)
        self.inbox = task.folders == "inbox"
        self.lmtp = self.inbox and task.delivery == "lmtp"
        # flag_sync: changed_folders trusts an unchanged folder's flags too (INBOX retrieval syncs no flags: ignored).
        self.changed_folders_only = task.flag_sync == "changed_folders" and not self.inbox

    # -- the folder ------------------------------------------------------------------------------------
    def open(self, ctx: FolderRun, remote_status: dict[str, int] | None, local_status: dict[str, int] | None,
             exists: bool) -> bool:
        """Read the statuses (LIST-STATUS's when given, else STATUS); whether the local folder must be created."""
        ctx.rstat = remote_status or ctx.remote.status(ctx.folder.remote)
        if not exists:
            return True
        ctx.lstat = local_status or ctx.local.status(ctx.folder.local)
        return False

    def match_state(self, ctx: FolderRun) -> bool:
        """Look the folder up in the state (``ctx.fs``, ``ctx.usable``, ``ctx.failed``); False when the folder needs
        nothing: usable state, nothing new, no flag to read (:meth:`flags_unchanged`), nothing to retry or delete."""
        fs = ctx.state.folder(ctx.folder.remote)
        rstat, lstat = ctx.rstat, ctx.lstat
        ctx.usable = (fs is not None and lstat is not None and fs.uidvalidity == rstat["UIDVALIDITY"]
                      and fs.local == ctx.folder.local and fs.local_uidvalidity == lstat["UIDVALIDITY"])
        ctx.fs = fs if ctx.usable else None
        ctx.failed = ctx.state.failed(fs) if ctx.usable else set()
        if ctx.usable and fs is not None and rstat["UIDNEXT"] == fs.remote_uidnext and self.flags_unchanged(ctx, fs) \
                and not ctx.failed and not (self.policy.deletes and rstat["MESSAGES"]):
            return False
        if not ctx.usable and fs is not None:
            self.log(f"{printable(ctx.folder.remote)}: the state does not match the folders any more (UIDVALIDITY changed or "
                     "a folder was recreated); matching by identity")
        return True

    def flags_unchanged(self, ctx: FolderRun, fs: FolderState) -> bool:
        """Whether the remote flags of a folder with usable state need no reading: with CONDSTORE, the same
        HIGHESTMODSEQ as at the last completed sync; without, only with ``flag_sync: changed_folders`` and the same
        message count (with the same UIDVALIDITY and UIDNEXT, the same messages), whatever their flags now (the
        option's price, docs/sync-engine.md "Identity: never a duplicate, never a loss")."""
        if ctx.modseq:
            return ctx.modseq == fs.highestmodseq
        return self.changed_folders_only and ctx.rstat["MESSAGES"] == fs.remote_messages

    def select_remote(self, ctx: FolderRun) -> None:
        """Open the remote folder, writable only when this run changes it (deletions, \\Seen of INBOX retrieval)."""
        ctx.remote.select(ctx.folder.remote, readonly=not (self.writes and (self.policy.deletes or self.inbox)))

    # -- flags -------------------------------------------------------------------------------------------
    def flag_updates(self, ctx: FolderRun) -> t.Iterator[FlagPlan]:
        """Remote flag changes since the last sync, for the local copies; a flag changed locally is never overwritten.

        Only with usable state, and never in INBOX retrieval (no flags are synced after the copy there).
        """
        fs = ctx.fs
        if not ctx.usable or fs is None or self.inbox:
            return
        if ctx.modseq and fs.highestmodseq:
            if ctx.modseq == fs.highestmodseq:
                return
            windows: t.Iterable[list[int]] = chunks(ctx.remote.search_uids(["MODSEQ", str(fs.highestmodseq + 1)]), WINDOW)
        else:
            windows = ctx.state.iter_known(fs, WINDOW)  # no CONDSTORE: every recorded message is checked
        selected = False
        for uids in windows:
            known = ctx.state.known_among(fs, uids)
            if not known:
                continue
            now = {uid: self.flags(data.get(b"FLAGS")) for uid, data in ctx.remote.fetch(sorted(known), ["FLAGS"]).items()}
            moved = {ruid: flags for ruid, flags in now.items() if flags != known[ruid][1]}
            if not moved:
                continue
            adds: dict[bytes, list[int]] = {}
            removes: dict[bytes, list[int]] = {}
            touched: set[int] = set()
            by_luid: dict[int, int] = {luid: ruid for ruid in moved if (luid := known[ruid][0]) is not None}
            if by_luid:
                if not selected:
                    ctx.local.select(ctx.folder.local, readonly=not self.writes)
                    selected = True
                here_now = {uid: self.flags(d.get(b"FLAGS")) for uid, d in ctx.local.fetch(sorted(by_luid), ["FLAGS"]).items()}
                for luid, ruid in by_luid.items():
                    if luid not in here_now:
                        continue  # deleted locally: it stays deleted
                    base, remote_flags, here = known[ruid][1], moved[ruid], here_now[luid]
                    for flag in (remote_flags - base) - here:
                        adds.setdefault(flag, []).append(luid)
                        touched.add(luid)
                    for flag in (base - remote_flags) & here:
                        removes.setdefault(flag, []).append(luid)
                        touched.add(luid)
            yield FlagPlan(moved=moved, adds=adds, removes=removes, touched=touched)

    # -- identity ------------------------------------------------------------------------------------------
    def local_pool(self, ctx: FolderRun) -> None:
        """Identities of the local messages the state cannot account for (``ctx.pool``, None when there are none), and
        whether the local folder was examined (``ctx.examined``). LMTP delivery runs the user's Sieve rules, which may
        file a message anywhere: no identity there."""
        ctx.pool, ctx.examined = None, False
        lstat, fs = ctx.lstat, (ctx.fs if ctx.usable else None)
        if self.lmtp or lstat is None:
            return
        if fs is not None and lstat["UIDNEXT"] <= fs.local_uidnext:
            return
        ctx.examined = True
        if not lstat["MESSAGES"]:
            return
        low = fs.local_uidnext if fs is not None else 1
        recorded = ctx.state.recorded_luids(fs, low) if fs is not None else set()
        ctx.local.select(ctx.folder.local, readonly=True)
        pool = IdentityPool()
        try:
            for uids in ctx.local.uid_windows(low, lstat["UIDNEXT"], lstat["MESSAGES"], window=WINDOW):
                uids = [u for u in uids if u not in recorded]
                if uids:
                    pool.add(identities(ctx.local, uids))
        except BaseException:
            pool.close()
            raise
        if not pool:
            pool.close()
            return
        ctx.pool = pool

    @staticmethod
    def _unknown(ctx: FolderRun, fs: FolderState | None, uids: list[int]) -> list[int]:
        """The UIDs of ``uids`` the state does not know (all of them without a usable state)."""
        if fs is None:
            return uids
        known = ctx.state.known_among(fs, uids)
        return [u for u in uids if u not in known]

    def _first_pass(self, ctx: FolderRun, windows: t.Iterable[list[int]], pool: IdentityPool) -> t.Iterator[list[int]]:
        """Record the identities of the remote messages of ``windows`` (those the state does not know) in ``pool``, and
        the content digests of the local candidates whose key turns out ambiguous; the recorded UIDs, a window at a
        time. (Identity needs the whole folder: the first pass makes the FETCH each window would make anyway.)"""
        fs = ctx.fs if ctx.usable else None
        for uids in windows:
            if self.stop.is_set():
                break
            uids = self._unknown(ctx, fs, uids)
            if uids:
                pool.add_remote(identities(ctx.remote, uids))
        unresolved = pool.unresolved()
        if unresolved:
            ctx.local.select(ctx.folder.local, readonly=True)
            pool.set_contents(content_digests(ctx.local, sorted(unresolved), unresolved))
        return pool.remote_windows(WINDOW)

    # -- copying ---------------------------------------------------------------------------------------------
    def copies(self, ctx: FolderRun) -> t.Iterator[CopyPlan]:
        """What the local side lacks, a window of UIDs at a time: new remote UIDs, and those refused last time."""
        if not ctx.rstat["MESSAGES"]:
            return
        fs = ctx.fs if ctx.usable else None
        start = fs.remote_uidnext if fs is not None else 1
        retry = sorted(u for u in ctx.failed if u < start)  # refused last time: try again
        rstat = ctx.rstat
        if ctx.pool is None:
            # UIDs and sizes together (Mailbox.size_windows), one command a window; larger windows than WINDOW: each
            # ends with a transfer's last append, which nothing overlaps (apply.Applier._transfer).
            found: t.Iterable[dict[int, int] | list[int]] = itertools.chain(
                chunks(retry, COPY_WINDOW),
                ctx.remote.size_windows(start, rstat["UIDNEXT"], rstat["MESSAGES"], window=COPY_WINDOW))
        else:
            found = self._first_pass(ctx, itertools.chain(
                chunks(retry, WINDOW), ctx.remote.uid_windows(start, rstat["UIDNEXT"], rstat["MESSAGES"], window=WINDOW)), ctx.pool)
        for window in found:
            if self.stop.is_set():
                return
            uids = self._unknown(ctx, fs, list(window))
            if uids:
                yield self._window(ctx, uids, window if isinstance(window, dict) else None)

    def unseen(self, ctx: FolderRun) -> t.Iterator[CopyPlan]:
        """INBOX retrieval: the unseen remote messages, a window at a time; those an earlier run transferred (an
        interrupted run, or marked unread again on the remote) are never copied twice, only marked \\Seen."""
        if not ctx.rstat["MESSAGES"]:
            return
        unseen = ["UNSEEN", "NOT", "DELETED"]
        rstat = ctx.rstat
        if ctx.pool is not None:  # identity needs the whole folder (see copies)
            self._first_pass(ctx, ctx.remote.uid_windows(1, rstat["UIDNEXT"], rstat["MESSAGES"], unseen, window=WINDOW), ctx.pool)
        for uids in ctx.remote.uid_windows(1, rstat["UIDNEXT"], rstat["MESSAGES"], unseen, window=WINDOW):
            if self.stop.is_set():
                return
            known = sorted(ctx.state.known_among(ctx.fs, uids)) if ctx.fs is not None else []
            recorded = set(known)
            fresh = [u for u in uids if u not in recorded]
            window = self._window(ctx, fresh) if fresh else CopyPlan(present={}, copy=[], sizes={}, too_big=[], limit=0)
            window.known = known
            yield window

    def _window(self, ctx: FolderRun, uids: list[int], known_sizes: dict[int, int] | None = None) -> CopyPlan:
        """Which of ``uids`` are present locally already (by identity, when the state cannot tell) and which to copy;
        ``known_sizes``: the sizes of ``uids`` and perhaps of others, read with the UIDs (else fetched here)."""
        present: dict[int, int] = {}
        pool = ctx.pool
        if pool is not None:
            remote_ids = pool.remote_identities(uids)  # recorded by the first pass
            missing = [u for u in uids if u not in remote_ids]
            if missing:
                remote_ids.update(identities(ctx.remote, missing))
            sizes = {uid: ident[2] for uid, ident in remote_ids.items()}
            # An ambiguous key (twice on the remote, or twice among the local candidates) is told apart by content.
            ambiguous = {ruid for ruid in remote_ids if pool.ambiguous(remote_ids[ruid])}
            contents = content_digests(ctx.remote, sorted(ambiguous), sizes) if ambiguous else {}
            for ruid in sorted(remote_ids):
                if ruid in contents:
                    luid = pool.take(remote_ids[ruid], contents[ruid])
                elif ruid in ambiguous:
                    luid = None  # expunged on the remote meanwhile
                else:
                    luid = pool.take(remote_ids[ruid])
                if luid is not None:
                    present[ruid] = luid
        elif known_sizes is not None:
            # Every UID of the window is new on a first run: its sizes are the plan's as they are (no copy of a window).
            sizes = known_sizes if len(known_sizes) == len(uids) else {uid: known_sizes[uid] for uid in uids}
        else:
            sizes = {uid: int(data.get(b"RFC822.SIZE", 0)) for uid, data in ctx.remote.fetch(uids, ["RFC822.SIZE"]).items()}
        limit = ctx.local.max_message()
        rest = [uid for uid in sorted(sizes) if uid not in present]
        return CopyPlan(present=present, copy=[uid for uid in rest if sizes[uid] <= limit], sizes=sizes,
                        too_big=[uid for uid in rest if sizes[uid] > limit], limit=limit)

    # -- remote deletion -----------------------------------------------------------------------------------
    def deletions(self, ctx: FolderRun) -> t.Iterator[DeletePlan]:
        """The remote messages the deletion policy selects that are confirmed present locally (recorded in the state;
        in check mode also those this run would have copied or found present), a window at a time."""
        if not self.policy.deletes or not ctx.rstat["MESSAGES"]:
            return
        criteria = self.policy.criteria(self.task.delete_remote_days)
        for uids in ctx.remote.uid_windows(1, ctx.rstat["UIDNEXT"], ctx.rstat["MESSAGES"], criteria, window=WINDOW):
            confirmed = set(ctx.state.known_among(ctx.fs, uids)) if ctx.fs is not None else set()
            targets = [u for u in uids if u in confirmed or u in ctx.planned]
            if targets:
                yield DeletePlan(targets=sorted(targets))
