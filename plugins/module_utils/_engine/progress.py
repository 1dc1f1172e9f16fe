# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The progress of a running migration: a small snapshot file the engine rewrites, and the line that shows it.

A run given a :class:`Progress` rewrites its snapshot (JSON, atomically, mode 0600) at most every
:data:`WRITE_EVERY_S` seconds while it copies, and once at the end: the account, the folder being synced (escaped by
text.printable: a remote server chose its name), the folders done, the messages accounted for of the remote
messages (the sum of the folders' MESSAGES as LIST-STATUS reported them), the bytes copied and the elapsed time.
No secret is ever in it. :func:`line` makes the one line shown for a snapshot; it trusts nothing in it (the host
that wrote it is as untrusted as the server whose names it repeats): every string is escaped and bounded, every
number checked. docs/playbooks.md "Progress and run logs" says how the migrate action shows it.
"""

from __future__ import annotations

import json
import time
import typing as t

from .result import FolderResult
from .store import atomic_write
from .text import printable

WRITE_EVERY_S = 1.0  # a snapshot is rewritten at most this often while a run copies
NAME_LIMIT = 120  # characters of an account or folder name shown
_MAX_COUNT = 10 ** 15


class Progress:
    """The snapshot file of one account's run. ``update`` is cheap to call as often as the run likes."""

    def __init__(self, path: str, account: str) -> None:
        self.path = path
        self.account = printable(account, NAME_LIMIT)
        self.started = time.monotonic()
        self.written = 0.0
        self.begun: t.Sequence[FolderResult] = ()  # the folders begun, in the order they began (a live list)
        self.folders = 0
        self.totals: dict[str, int] = {}  # remote folder -> its MESSAGES at the start (LIST-STATUS), where known

    def plan(self, begun: t.Sequence[FolderResult], folders: t.Sequence[str],
             statuses: t.Mapping[str, t.Mapping[str, int]]) -> None:
        """The run's folders are known (``statuses``: what LIST-STATUS said of them, possibly nothing); ``begun``: the
        list the run appends each folder's result to as it begins it (with folder lanes, several run at once)."""
        self.begun = begun
        self.folders = len(folders)
        self.totals = {name: int(statuses[name].get("MESSAGES", 0)) for name in folders if name in statuses}
        self.update(force=True)

    def snapshot(self, state: str = "running") -> dict[str, t.Any]:
        """What the file holds: counts over the folders started so far."""
        folders = list(self.begun)
        done = 0
        for index, fr in enumerate(folders):
            seen = fr.copied + fr.already_present + fr.errors
            total = self.totals.get(fr.remote)
            if total is not None:
                # A folder finished is accounted for whole; the current one is counted up to its total.
                seen = total if index < len(folders) - 1 or state != "running" else min(seen, total)
            done += seen
        known = len(self.totals) == self.folders and self.folders > 0
        return {
            "account": self.account,
            "state": state,
            "folder": printable(folders[-1].remote, NAME_LIMIT) if folders and state == "running" else None,
            "folder_number": len(folders),
            "folders": self.folders,
            "messages_done": done,
            "messages_total": max(done, sum(self.totals.values())) if known else None,
            "bytes_done": sum(fr.bytes for fr in folders),
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }

    def update(self, force: bool = False, state: str = "running") -> None:
        """Rewrite the snapshot, unless one was written less than WRITE_EVERY_S ago (``force``: now). Never raises: a
        full disk must not stop a migration, and a missing snapshot only means a line less on the controller."""
        now = time.monotonic()
        if not force and now - self.written < WRITE_EVERY_S:
            return
        self.written = now
        try:
            write_json(self.path, self.snapshot(state))
        except (OSError, ValueError):
            pass

    def finish(self) -> None:
        self.update(force=True, state="done")


def write_json(path: str, data: t.Any) -> None:
    """``data`` as JSON in ``path``, atomically and with mode 0600 (a reader never sees half a file); not synced to
    the disk: a snapshot is rewritten every second and worth nothing after a crash."""
    atomic_write(path, json.dumps(data).encode("utf-8"), 0o600, durable=False)


def _count(value: t.Any) -> int | None:
    """A count from a snapshot, or None when it is not a sane one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < _MAX_COUNT:
        return None
    return int(value)


def size(count: int) -> str:
    """A byte count as people read it (1.5 MiB)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def duration(seconds: float) -> str:
    """A duration as people read it (1 h 05 min, 3 min 20 s, 40 s)."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def line(snapshot: t.Any) -> str | None:
    """The one line shown for a snapshot (None when it is not one): account, folder, messages and bytes done of the
    total, rate and time left. Every string escaped and cut to NAME_LIMIT, every number checked."""
    if not isinstance(snapshot, dict):
        return None
    account = printable(snapshot.get("account") or "?", NAME_LIMIT)
    done, total = _count(snapshot.get("messages_done")), _count(snapshot.get("messages_total"))
    copied, elapsed = _count(snapshot.get("bytes_done")), _count(snapshot.get("elapsed_s"))  # elapsed: whole seconds
    number, folders = _count(snapshot.get("folder_number")), _count(snapshot.get("folders"))
    if done is None or copied is None or elapsed is None:
        return None
    parts = []
    if snapshot.get("state") == "done":
        parts.append("done")
    elif folders and number:
        where = f"folder {number} of {folders}"
        folder = snapshot.get("folder")
        if isinstance(folder, str):
            where += f" ({printable(folder, NAME_LIMIT)})"
        parts.append(where)
    else:
        parts.append(f"starting ({folders} folders)" if folders else "starting")
    if total:
        parts.append(f"{done} of {total} messages ({100 * done // total}%)")
    else:
        parts.append(f"{done} messages")
    parts.append(f"{size(copied)} copied")
    if elapsed > 0:
        parts.append(f"{size(copied // elapsed)}/s")
        if total and done and snapshot.get("state") != "done":
            parts.append(f"about {duration(elapsed * (total - done) / done)} left")
    return f"{account}: " + ", ".join(parts)
