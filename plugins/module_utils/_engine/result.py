# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The result of a run: one JSON shape everywhere (docs/spec.md "The result")."""

from __future__ import annotations

import dataclasses
import datetime
import time
import typing as t

from .contract import Kind, Status, plain

COUNTERS = ("copied", "bytes", "already_present", "flags_updated", "deleted_remote", "errors")


def now_iso() -> str:
    """The time now, UTC, to the second, as results and run logs give it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class FolderResult:
    remote: str
    local: str
    created: bool = False
    copied: int = 0
    bytes: int = 0
    already_present: int = 0
    flags_updated: int = 0
    deleted_remote: int = 0
    errors: int = 0
    # Not part of the result shape: the local message count before the run, for diff mode.
    local_before: int = dataclasses.field(default=0, repr=False)

    def as_dict(self) -> dict[str, t.Any]:
        return {
            "remote": self.remote, "local": self.local, "created": self.created,
            "copied": self.copied, "bytes": self.bytes, "already_present": self.already_present,
            "flags_updated": self.flags_updated, "deleted_remote": self.deleted_remote, "errors": self.errors,
        }


@dataclasses.dataclass
class RunResult:
    task: str | None
    check_mode: bool
    status: Status = Status.SUCCESS
    started: str = dataclasses.field(default_factory=now_iso)
    finished: str | None = None
    duration_s: float = 0.0
    folders: list[FolderResult] = dataclasses.field(default_factory=list)
    errors: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)
    notices: list[str] = dataclasses.field(default_factory=list)
    _t0: float = dataclasses.field(default_factory=time.monotonic, repr=False)

    def add_error(self, kind: Kind | str, detail: str, folder: str = "", uid: int | None = None, message_id: str | None = None) -> None:
        self.errors.append({"folder": folder, "uid": uid, "message_id": message_id, "kind": plain(kind), "detail": detail})

    def notice(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)

    def fail(self, kind: Kind | str, detail: str) -> RunResult:
        """End the run as failed by one error (the one that stopped it); the result itself."""
        self.add_error(kind, detail)
        self.finish(Status.FAILED)
        return self

    def finish(self, status: Status | None = None) -> None:
        if status is not None:
            self.status = Status(status)
        elif self.status == Status.SUCCESS and (self.errors or any(f.errors for f in self.folders)):
            self.status = Status.PARTIAL
        self.finished = now_iso()
        self.duration_s = round(time.monotonic() - self._t0, 3)

    def totals(self) -> dict[str, int]:
        totals = {name: sum(getattr(f, name) for f in self.folders) for name in COUNTERS}
        totals["folders_created"] = sum(1 for f in self.folders if f.created)
        # Errors that stopped a run belong to no folder counter; count every recorded error once.
        totals["errors"] = max(totals["errors"], len(self.errors))
        return totals

    @property
    def changed(self) -> bool:
        """Whether the run changed anything (or, in check mode, would)."""
        totals = self.totals()
        return any(totals[k] for k in ("copied", "flags_updated", "deleted_remote", "folders_created"))

    def as_dict(self) -> dict[str, t.Any]:
        return {
            "task": self.task, "status": plain(self.status), "check_mode": self.check_mode,
            "started": self.started, "finished": self.finished or now_iso(), "duration_s": self.duration_s,
            "folders": [f.as_dict() for f in self.folders], "totals": self.totals(),
            "errors": list(self.errors), "notices": list(self.notices),
        }

    def diff(self) -> dict[str, str]:
        """Diff mode: per-folder message counts of the local account before and after."""
        before, after = [], []
        for f in self.folders:
            before.append(f"{f.local}: (missing)" if f.created else f"{f.local}: {f.local_before} messages")
            after.append(f"{f.local}: {f.local_before + f.copied} messages")
        return {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n",
                "before_header": "local account", "after_header": "local account"}
