# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration report of one account (docs/report.md): per remote folder, the remote and the local message count
and size, measured live, and why a remote message is not on the local server, from the account's state.

Read-only: both servers are opened with EXAMINE (nothing is marked seen, nothing is created), the state database is
opened read-only and no lock is taken, so a report never waits for, nor disturbs, a run. Sizes are read with
``UID FETCH first:last (RFC822.SIZE)`` a bounded span at a time (imap.Connection.size_windows), through the same
bounded transport as every run. Folder names from a server reach the report through :func:`text.printable`.
"""

from __future__ import annotations

import dataclasses
import typing as t

from . import errors
from .config import Target, Task
from .contract import RUN_STOPPERS, Kind, plain
from .folders import FolderPlan, plan as plan_folders, selectable
from .imap import Connection
from .state import State
from .sync import Connect, endpoints
from .text import printable

# Why a remote message is not on the local server (docs/report.md "Reasons"), in the report's column order.
REASONS = ("excluded", "too_big", "refused", "not_copied")
COUNTS = ("remote_messages", "remote_bytes", "local_messages", "local_bytes", "copied", "missing", "missing_bytes", *REASONS)


@dataclasses.dataclass
class FolderReport:
    """One remote folder: what the remote holds, what the local folder holds, and the remote messages not copied."""

    folder: str  # the remote name, printable
    local_folder: str  # where the folder lands (or would land), printable
    included: bool  # whether the task's folder rules (folders, exclude) sync it
    remote_messages: int = 0
    remote_bytes: int = 0
    local_messages: int = 0
    local_bytes: int = 0
    copied: int = 0  # remote messages the state records as copied
    missing: int = 0
    missing_bytes: int = 0
    excluded: int = 0
    too_big: int = 0
    refused: int = 0
    not_copied: int = 0
    kind: str | None = None  # the folder could not be measured: the failure's kind and sentence
    message: str | None = None

    @property
    def status(self) -> str:
        """``failed`` (not measured), ``excluded``, ``complete`` (every remote message is on the local server) or
        ``incomplete``."""
        if self.kind is not None:
            return "failed"
        if not self.included:
            return "excluded"
        return "complete" if self.missing == 0 else "incomplete"

    def miss(self, reason: str, size: int) -> None:
        setattr(self, reason, getattr(self, reason) + 1)
        self.missing += 1
        self.missing_bytes += size

    def as_dict(self) -> dict[str, t.Any]:
        out: dict[str, t.Any] = {"folder": self.folder, "local_folder": self.local_folder, "status": self.status}
        out.update({name: getattr(self, name) for name in COUNTS})
        out.update(kind=self.kind, message=self.message)
        return out


def _empty_totals() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


def failed_report(account: str, kind: Kind | str, message: str) -> dict[str, t.Any]:
    """The report of an account that could not be measured: its failure's kind and sentence."""
    return {"account": account, "status": "failed", "kind": plain(kind), "message": message, "folders": [],
            "totals": _empty_totals()}


class _Measure:
    """The measuring of one account: its two sessions, its read-only state and the local size limit."""

    def __init__(self, task: Task, remote: t.Any, local: t.Any, state: State) -> None:
        self.task = task
        self.remote = remote
        self.local = local
        self.state = state
        self.limit = local.max_message()  # a larger remote message is never fetched by a run: too_big
        self.local_sizes: dict[str, tuple[int, int]] = {}  # a local folder two remote folders land in is read once

    def folders(self) -> list[FolderReport]:
        remote_list, _status = self.remote.list_folders()
        local_list, _status = self.local.list_folders()
        remote_ns, local_ns = self.remote.namespace(), self.local.namespace()
        # Every personal remote folder (as folders: all would sync), and those the task's rules sync.
        every = plan_folders(remote_list, remote_ns, local_list, local_ns, "all", [], self.task.special_use_mapping)
        synced = {p.remote for p in plan_folders(remote_list, remote_ns, local_list, local_ns, self.task.folders,
                                                 self.task.exclude_patterns(), self.task.special_use_mapping)}
        local_names = selectable(local_list)
        return [self.folder(plan, plan.remote in synced, plan.local in local_names) for plan in every]

    def folder(self, plan: FolderPlan, included: bool, local_exists: bool) -> FolderReport:
        """One folder's report; a failure of this folder alone (a server's NO) is the folder's, with its counts so far
        left out; one that ends a session (the connection lost, a protocol violation) or the run is raised."""
        report = FolderReport(folder=printable(plan.remote), local_folder=printable(plan.local), included=included)
        try:
            self.measure(plan, included, local_exists, report)
        except errors.Transient:
            raise
        except errors.SyncError as exc:
            if exc.kind in RUN_STOPPERS or not (self.remote.alive and self.local.alive):
                raise
            report = FolderReport(folder=report.folder, local_folder=report.local_folder, included=included,
                                  kind=plain(exc.kind), message=exc.message)
        return report

    def measure(self, plan: FolderPlan, included: bool, local_exists: bool, report: FolderReport) -> None:
        if local_exists:
            report.local_messages, report.local_bytes = self.local_size(plan.local)
        opened = self.remote.select(plan.remote, readonly=True)
        recorded = self.state.folder(plan.remote) if included else None
        # The state accounts for the folder only while its UIDVALIDITY is the one recorded.
        if recorded is not None and recorded.uidvalidity != opened.get("UIDVALIDITY"):
            recorded = None
        failed = self.state.failed(recorded)
        for sizes in _size_windows(self.remote, opened):
            known = self.state.known_among(recorded, sizes) if recorded is not None else {}
            for uid, size in sizes.items():
                report.remote_messages += 1
                report.remote_bytes += size
                reason = self.reason(uid, size, included, uid in known, failed)
                if reason is None:
                    report.copied += 1
                else:
                    report.miss(reason, size)

    def reason(self, uid: int, size: int, included: bool, recorded: bool, failed: set[int]) -> str | None:
        """Why the remote message is not on the local server (None: the state records it as copied)."""
        if not included:
            return "excluded"
        if recorded:
            return None
        if size > self.limit:
            return "too_big"
        if uid in failed:
            return "refused"
        return "not_copied"

    def local_size(self, name: str) -> tuple[int, int]:
        if name not in self.local_sizes:
            opened = self.local.select(name, readonly=True)
            count = size = 0
            for sizes in _size_windows(self.local, opened):
                count += len(sizes)
                size += sum(sizes.values())
            self.local_sizes[name] = (count, size)
        return self.local_sizes[name]


def _size_windows(conn: t.Any, opened: t.Mapping[str, int]) -> t.Iterator[dict[int, int]]:
    """The sizes of every message of the folder ``conn`` has selected (``opened``: what SELECT or EXAMINE said), by
    window; without a UIDNEXT from the server, up to one past the last UID (``UID SEARCH ALL``)."""
    uidnext = opened.get("UIDNEXT", 0)
    if not uidnext:
        uids = conn.search_uids(["ALL"])
        uidnext = (max(uids) + 1) if uids else 0
    return conn.size_windows(1, uidnext, opened.get("EXISTS", 0))


def account_report(account: str, task: Task, target: Target, state_path: str, *, connect: Connect | None = None) -> dict[str, t.Any]:
    """The report of one account (``account`` names it): ``status`` ``complete`` when every remote message of every
    folder the task syncs is on the local server, ``incomplete`` when some are missing or a folder could not be
    measured (excluded folders count as missing for a reason of their own, not as incomplete), ``failed`` when the
    account could not be measured (``kind`` and ``message`` say why). Never raises for a server's or the state's
    failure."""
    if task.engine != "builtin":
        # imapsync keeps its own state: the counts would be measured, the reasons not known.
        return failed_report(account, Kind.UNSUPPORTED, f"engine: {task.engine} keeps no state the report can read; "
                             "report on accounts of the builtin engine (the accounts of migrate).")
    open_session = connect or Connection
    remote_ep, local_ep = endpoints(task, target)
    remote = local = state = None
    try:
        state = State(state_path, readonly=True)
        remote = open_session(remote_ep)
        local = open_session(local_ep)
        folders = _Measure(task, remote, local, state).folders()
    except errors.SyncError as exc:
        return failed_report(account, exc.kind, exc.message)
    finally:
        for conn in (remote, local):
            if conn is not None:
                conn.close()
        if state is not None:
            state.close()
    totals = _empty_totals()
    for folder in folders:
        for name in COUNTS:
            totals[name] += getattr(folder, name)
    incomplete = any(f.status in ("incomplete", "failed") for f in folders)
    return {"account": account, "status": "incomplete" if incomplete else "complete", "kind": None, "message": None,
            "folders": [f.as_dict() for f in folders], "totals": totals}


__all__ = ["REASONS", "COUNTS", "FolderReport", "account_report", "failed_report"]
