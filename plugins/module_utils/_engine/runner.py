# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a defined task: the one path shared by ``imapsyncctl run``, the timers and ``migrate task: NAME``.

Load the definitions, check that the task's engine can run them (:mod:`engine`), open the run log, run the
engine, write the summary, record the result. A real run writes a human log (progress per folder, counts,
errors; never a secret) and records its result as the task's last result; the process running it is named in
the pid file while it holds the task's lock. Check mode writes nothing, not even a log. Which engine runs the
task, and how, is the engine's business only.
"""

from __future__ import annotations

import datetime
import os
import threading
import typing as t

from . import engine, errors, files
from .contract import Status
from .result import RunResult, now_iso
from .store import Store
from .text import printable

ProgressFn = t.Callable[[str], None]


def stamp() -> str:
    """The name of a new run log (Store.new_log): the time, to the microsecond."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def describe(task: t.Any, target: t.Any) -> str:
    """One line naming what a task moves where (no secret)."""
    return (f"{task.remote_user} at {task.remote_host}:{task.remote_port} ({task.remote_security}) -> "
            f"{task.local_user} at {target.host}:{target.port} (target {target.name}), folders: {task.folders}")


def summary_lines(result: RunResult) -> list[str]:
    """The run's summary for the log and the terminal (folder names and Message-IDs escaped: a server chose them)."""
    lines = []
    for f in result.folders:
        created = " (created)" if f.created else ""
        lines.append(f"{printable(f.remote)} -> {printable(f.local)}{created}: {f.copied} copied ({f.bytes} bytes), "
                     f"{f.already_present} already present, "
                     f"{f.flags_updated} flag updates, {f.deleted_remote} deleted on the remote, {f.errors} errors")
    totals = result.totals()
    lines.append(f"status {result.status}: {totals['copied']} messages copied ({totals['bytes']} bytes), "
                 f"{totals['already_present']} already present, {totals['flags_updated']} flag updates, "
                 f"{totals['deleted_remote']} deleted on the remote, {totals['folders_created']} folders created, "
                 f"{totals['errors']} errors, in {result.duration_s} s")
    for error in result.errors:
        where = f" in {printable(error['folder'])}" if error.get("folder") else ""
        uid = f" (UID {error['uid']}, Message-ID {printable(error['message_id'])})" if error.get("uid") is not None else ""
        lines.append(f"error {error['kind']}{where}{uid}: {error['detail']}")
    lines.extend(f"notice: {n}" for n in result.notices)
    return lines


class LogLines:
    """A run log open for appending (``fd``): each line stamped with the time and written unbuffered, so it is in the
    log as soon as it is written. The first failure (a full disk must not end the run: its state and result say what
    happened) stops the writing and is kept in :attr:`problem`."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.problem: str | None = None

    def write(self, message: str) -> None:
        if self.problem:
            return
        try:
            os.write(self.fd, f"{now_iso()} {message}\n".encode("utf-8", "backslashreplace"))
        except OSError as exc:
            self.problem = files.describe(self.path, exc)


def run_task(store: Store, name: str, *, check_mode: bool = False, progress: ProgressFn | None = None,
             stop: threading.Event | None = None) -> RunResult:
    """Run the task ``name`` now. Raises ConfigError for a missing or invalid definition.

    ``progress`` receives the progress lines of the run as they are logged (no secrets); the summary at the
    end goes to the log only, since the caller has the result. ``stop`` ends the run gracefully when set.
    A definition that the task's engine cannot run as defined (a definition edited by hand) is refused like
    any invalid definition, before anything is written.
    """
    task = store.load_task(name)
    target = store.load_target(task.target)
    runs = engine.for_task(task)
    runs.check(task, target)
    if check_mode:
        return runs.run(engine.Request(store, name, task, target, check_mode=True, log=progress, stop=stop))

    try:
        log_path = store.new_log(name, stamp())
        log_fd = files.open_file(log_path, os.O_WRONLY | os.O_APPEND)
    except (OSError, files.Unsafe, errors.SyncError) as exc:
        # No log can be written (a full or read-only filesystem, an unsafe state_dir): the same failed result.
        failure = exc if isinstance(exc, errors.SyncError) else files.state_error(store.runs_dir(name), exc)
        result = RunResult(task=name, check_mode=False).fail(failure.kind, failure.message)
        if progress is not None:
            progress(f"error {failure.kind}: {failure.message}")
        _record(store, name, result)
        return result
    lines = LogLines(log_path, log_fd)
    try:
        def log(message: str) -> None:
            lines.write(message)
            if progress is not None:
                progress(message)

        def locked() -> None:
            store.write_pid(name)
            store.set_current_log(name, log_path)

        log(f"run of task {name}: {describe(task, target)}")
        result = runs.run(engine.Request(store, name, task, target, log=log, stop=stop, on_locked=locked))
        for line in summary_lines(result):
            lines.write(line)  # the log only: callers show the summary from the result
        if lines.problem:
            result.notice(f"The run log is incomplete: {lines.problem}")
    finally:
        os.close(log_fd)
    try:
        _record(store, name, result)
    finally:
        if result.status != Status.SKIPPED:
            store.clear_pid(name)
            store.clear_current_log(name, log_path)
    return result


def _record(store: Store, name: str, result: RunResult) -> None:
    """Record ``result`` as the task's last result if the filesystem allows; never raises (a notice says why not)."""
    try:
        store.record_result(name, result.as_dict())
    except errors.SyncError as exc:
        result.notice(f"This result could not be recorded as the task's last result: {exc.message}")


def validate(store: Store, name: str) -> list[dict[str, t.Any]]:
    """Log in to both servers of a defined task; the classified errors (empty when both logins work)."""
    task = store.load_task(name)
    target = store.load_target(task.target)
    return check_logins(task, target)


# Whatever engine runs a task, its logins are checked with the builtin engine's IMAP client.
check_logins = engine.check_logins
