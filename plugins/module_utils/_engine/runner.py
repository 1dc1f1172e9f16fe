# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a defined task: the one path shared by ``imapsyncctl run``, the timers and ``migrate task: NAME``.

A real run writes a human log (progress per folder, counts, errors; never a secret) and records its result
as the task's last result; the process running it is named in the pid file while it holds the task's lock.
Check mode writes nothing, not even a log.
"""

from __future__ import annotations

import datetime
import threading
import typing as t

from . import errors, sync
from .imap import Connection
from .result import RunResult
from .store import Store

ProgressFn = t.Callable[[str], None]


def _stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def describe(task: t.Any, target: t.Any) -> str:
    """One line naming what a task moves where (no secret)."""
    return (f"{task.remote_user} at {task.remote_host}:{task.remote_port} ({task.remote_security}) -> "
            f"{task.local_user} at {target.host}:{target.port} (target {target.name}), folders: {task.folders}")


def summary_lines(result: RunResult) -> list[str]:
    lines = []
    for f in result.folders:
        created = " (created)" if f.created else ""
        lines.append(f"{f.remote} -> {f.local}{created}: {f.copied} copied ({f.bytes} bytes), {f.already_present} already present, "
                     f"{f.flags_updated} flag updates, {f.deleted_remote} deleted on the remote, {f.errors} errors")
    totals = result.totals()
    lines.append(f"status {result.status}: {totals['copied']} messages copied ({totals['bytes']} bytes), "
                 f"{totals['already_present']} already present, {totals['flags_updated']} flag updates, "
                 f"{totals['deleted_remote']} deleted on the remote, {totals['folders_created']} folders created, "
                 f"{totals['errors']} errors, in {result.duration_s} s")
    for error in result.errors:
        where = f" in {error['folder']}" if error.get("folder") else ""
        uid = f" (UID {error['uid']}, Message-ID {error['message_id']})" if error.get("uid") is not None else ""
        lines.append(f"error {error['kind']}{where}{uid}: {error['detail']}")
    lines.extend(f"notice: {n}" for n in result.notices)
    return lines


def run_task(store: Store, name: str, *, check_mode: bool = False, progress: ProgressFn | None = None,
             stop: threading.Event | None = None) -> RunResult:
    """Run the task ``name`` now. Raises ConfigError for a missing or invalid definition.

    ``progress`` receives the progress lines of the run as they are logged (no secrets); the summary at the
    end goes to the log only, since the caller has the result. ``stop`` ends the run gracefully when set.
    """
    task = store.load_task(name)
    target = store.load_target(task.target)
    if check_mode:
        return sync.run(task, target, store.state_path(name), check_mode=True, task_name=name, log=progress, stop=stop)

    log_path = store.new_log(name, _stamp())
    with open(log_path, "a", encoding="utf-8") as handle:
        def write(message: str) -> None:
            handle.write(f"{_now()} {message}\n")
            handle.flush()

        def log(message: str) -> None:
            write(message)
            if progress is not None:
                progress(message)

        def locked() -> None:
            store.write_pid(name)
            store.set_current_log(name, log_path)

        log(f"run of task {name}: {describe(task, target)}")
        result = sync.run(task, target, store.state_path(name), task_name=name, log=log, stop=stop, on_locked=locked)
        for line in summary_lines(result):
            write(line)  # the log only: callers show the summary from the result
    try:
        store.record_result(name, result.as_dict())
    finally:
        if result.status != "skipped":
            store.clear_pid(name)
            store.clear_current_log(name, log_path)
    return result


def validate(store: Store, name: str) -> list[dict[str, t.Any]]:
    """Log in to both servers of a defined task; the classified errors (empty when both logins work)."""
    task = store.load_task(name)
    target = store.load_target(task.target)
    return check_logins(task, target)


def check_logins(task: t.Any, target: t.Any) -> list[dict[str, t.Any]]:
    """Log in to the remote and the local server (as the task would), then log out; errors as result entries."""
    problems = []
    for endpoint in sync.endpoints(task, target):
        try:
            Connection(endpoint).close()
        except errors.SyncError as exc:
            problems.append({"folder": "", "uid": None, "message_id": None, "kind": exc.kind, "detail": exc.message,
                             "side": endpoint.side})
    return problems
