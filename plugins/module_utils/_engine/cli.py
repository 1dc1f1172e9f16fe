# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``imapsyncctl``: the sync engine's command line on a host (used by administrators and by the timers).

Pure Python (argparse and the standard library) with relative imports only: the role installs this package
on hosts under another package name. Never prints a secret or a traceback; every refusal is a sentence.

Exit codes (docs/spec.md "The result"): 0 success, 1 failed, 2 bad definition or usage, 3 partial, 75 skipped (already running).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
import threading
import time
import typing as t

from . import engine_imapsync, files, info, pyversion, runner, timers
from .contract import Status
from .errors import ConfigError, SyncError
from .store import CONFIG_DIR, STATE_DIR, Store, check_name
from .text import printable

PROG = "imapsyncctl"

EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_SKIPPED = 75  # EX_TEMPFAIL: try again later
EXIT_INTERRUPTED = 130

# Run status -> exit code (a stopped run ends "success", or "partial" when messages were refused).
EXIT_CODES = {Status.SUCCESS: EXIT_SUCCESS, Status.FAILED: EXIT_FAILED, Status.PARTIAL: EXIT_PARTIAL, Status.SKIPPED: EXIT_SKIPPED}

ENV_CONFIG_DIR = "MAILOPS_IMAP_CONFIG_DIR"
ENV_STATE_DIR = "MAILOPS_IMAP_STATE_DIR"
ENV_DEBUG = "MAILOPS_IMAP_DEBUG"
STOP_TIMEOUT_S = 60.0
PID_WAIT_S = 3.0  # how long stop waits for a run holding the lock to name its process

EPILOG = """\
exit codes of run: 0 success (also a run ended by stop), 1 failed, 2 bad definition or usage,
3 partial (some messages refused), 75 skipped (another run of the task or of its account is active),
130 interrupted (a second Ctrl-C). validate: 0 both logins work, 1 a login failed. status, log, stop: 0 done,
1 failed (stop: the run did not end in time), 2 bad usage, undefined task or no log.

Definitions are read from --config-dir (default $MAILOPS_IMAP_CONFIG_DIR, else /etc/mailops-imap), state,
results and logs from --state-dir (default $MAILOPS_IMAP_STATE_DIR, else /var/lib/mailops-imap).

A task with engine: imapsync is run by upstream imapsync: the program named by $MAILOPS_IMAP_IMAPSYNC (a path
or a command name), else imapsync from PATH. Its passwords go to imapsync in files of mode 0600 that exist
only while it runs; run --check runs imapsync --dry. A missing imapsync fails the run (exit 1) with kind
missing_program, imapsync's own failure with kind imapsync_failed; a definition that imapsync cannot run
equivalently is refused (exit 2). A task with an OAuth2 remote_auth gives imapsync its access token in such a
file too (--oauthaccesstoken1), renewed while it runs.

With an OAuth2 remote_auth (docs/oauth2.md), run and validate obtain a token first; a failure names the token
endpoint (with its error code, such as AADSTS7000215) or the IMAP server that refused the token.
"""


def exit_code(status: Status | str) -> int:
    """The exit code of ``run`` for a result status (an unknown status counts as failed)."""
    return EXIT_CODES.get(t.cast(Status, status), EXIT_FAILED)


class UsageError(Exception):
    """Bad command-line usage; the message is a sentence, the usage line belongs to ``parser``."""

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of exiting, so that ``main`` always returns its exit code."""

    def error(self, message: str) -> t.NoReturn:
        raise UsageError(message, self)


def _task_name(value: str) -> str:
    try:
        return check_name("tasks", value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``imapsyncctl`` (global options are accepted before or after the command)."""
    common = _Parser(add_help=False)
    common.add_argument("--config-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help=f"where targets and tasks are defined (default: ${ENV_CONFIG_DIR}, else {CONFIG_DIR})")
    common.add_argument("--state-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help=f"where sync state, results and logs are kept (default: ${ENV_STATE_DIR}, else {STATE_DIR})")

    parser = _Parser(prog=PROG, parents=[common], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Run and inspect the mailops.imap sync tasks defined on this host.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", parents=[common], help="run a task now",
                              description="Run a task now. SIGTERM or Ctrl-C stops it after the current batch, "
                                          "with its state saved; the next run continues where it stopped. "
                                          "A task with engine: imapsync runs imapsync (from "
                                          f"${engine_imapsync.ENV_IMAPSYNC}, else PATH), which a stop ends with SIGTERM.")
    run.add_argument("task", metavar="TASK", type=_task_name)
    run.add_argument("--check", action="store_true", help="compute what a run would do, write nothing anywhere")
    run.add_argument("--json", action="store_true", help="print the result as JSON instead of a summary")

    status = commands.add_parser("status", parents=[common], help="show tasks, their last run and their next run")
    status.add_argument("task", metavar="TASK", type=_task_name, nargs="?")
    status.add_argument("--json", action="store_true", help="print a JSON list of tasks")

    log = commands.add_parser("log", parents=[common], help="print the log of the newest run of a task")
    log.add_argument("task", metavar="TASK", type=_task_name)

    stop = commands.add_parser("stop", parents=[common], help="stop the running run of a task gracefully",
                               description="Stop the running run of a task: it finishes its current batch, saves its "
                                           "state and ends; it does not count as a failure.")
    stop.add_argument("task", metavar="TASK", type=_task_name)
    stop.add_argument("--timeout", metavar="SECONDS", type=float, default=STOP_TIMEOUT_S,
                      help=f"how long to wait for the run to end (default: {STOP_TIMEOUT_S:g})")

    validate = commands.add_parser("validate", parents=[common], help="log in to both servers of a task")
    validate.add_argument("task", metavar="TASK", type=_task_name)
    validate.add_argument("--json", action="store_true", help="print the list of errors as JSON")
    return parser


def _store(args: argparse.Namespace) -> Store:
    config_dir = getattr(args, "config_dir", None) or os.environ.get(ENV_CONFIG_DIR) or CONFIG_DIR
    state_dir = getattr(args, "state_dir", None) or os.environ.get(ENV_STATE_DIR) or STATE_DIR
    return Store(config_dir, state_dir)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(f"{PROG}: {text}\n")
    sys.stderr.flush()


# -- run ------------------------------------------------------------------------------------------------


class _StopOnSignal:
    """While active, SIGTERM and SIGINT set ``event`` (a graceful stop); a second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.previous: dict[int, t.Any] = {}

    def __enter__(self) -> _StopOnSignal:
        for signum in self.SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: t.Any) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt()
        self.event.set()
        name = signal.Signals(signum).name
        more = " (Ctrl-C again to interrupt at once)" if signum == signal.SIGINT else ""
        # os.write, not sys.stderr: a signal handler must not re-enter a buffered stream being written.
        with contextlib.suppress(OSError):
            os.write(2, f"{PROG}: {name} received: stopping after the current batch, with the state saved{more}.\n".encode())


def _progress_printer() -> t.Callable[[str], None]:
    started = time.monotonic()

    def show(message: str) -> None:
        elapsed = int(time.monotonic() - started)
        sys.stderr.write(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {message}\n")
        sys.stderr.flush()

    return show


def cmd_run(args: argparse.Namespace) -> int:
    store = _store(args)
    task = store.load_task(args.task)  # a missing or invalid definition is refused before anything else
    store.load_target(task.target)
    progress = _progress_printer() if sys.stderr.isatty() else None
    if progress is not None and not task.enabled:
        progress(f"task {args.task} is disabled (its timer does not run it); running it because you asked")
    stop = threading.Event()
    try:
        with _StopOnSignal(stop):
            result = runner.run_task(store, args.task, check_mode=args.check, progress=progress, stop=stop)
    except KeyboardInterrupt:
        _err(f"interrupted; the run of task {args.task} ended without its summary. "
             "Its state holds every batch confirmed so far: the next run continues without duplicates.")
        return EXIT_INTERRUPTED
    if args.json:
        _out(json.dumps(result.as_dict(), indent=2, sort_keys=True, ensure_ascii=False))
    else:
        if args.check:
            _out(f"check mode: nothing was written; a run of task {args.task} would do this:")
        for line in runner.summary_lines(result):
            _out(line)
    return exit_code(result.status)


# -- status ---------------------------------------------------------------------------------------------


def _schedule_text(definition: t.Mapping[str, t.Any]) -> str:
    if definition.get("schedule") == "interval":
        return f"every {definition.get('interval_minutes')} min"
    return str(definition.get("schedule", "manual"))


def _last_text(last: t.Mapping[str, t.Any] | None) -> str:
    if not last:
        return "-"
    totals = last.get("totals") or {}
    check = " (check mode)" if last.get("check_mode") else ""
    return (f"{last.get('status', '?')}{check} {last.get('finished', '?')}, "
            f"{totals.get('copied', 0)} copied, {totals.get('errors', 0)} errors")


def status_rows(entries: list[dict[str, t.Any]]) -> list[str]:
    """The human table of ``status``: a header and one line per task."""
    rows = [("TASK", "ENABLED", "SCHEDULE", "RUNNING", "LAST RUN", "NEXT RUN")]
    for entry in entries:
        definition = entry["definition"]
        if entry["running"]:
            running = f"yes (pid {entry['pid']})" if entry["pid"] else "yes"
        else:
            running = "no"
        if definition is None:  # unreadable
            enabled, schedule = "?", "?"
        else:
            enabled, schedule = "yes" if definition.get("enabled", True) else "no", _schedule_text(definition)
        rows.append((entry["name"], enabled, schedule, running, _last_text(entry["last_result"]), entry["next_run"] or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]).rstrip() for row in rows]


def cmd_status(args: argparse.Namespace) -> int:
    store = _store(args)
    entries: list[dict[str, t.Any]] = []
    broken = False
    if args.task is not None:
        entries.append(info.task_info(store, args.task))  # an undefined task is refused (ConfigError)
    else:
        for name in store.names("tasks"):
            try:
                entries.append(info.task_info(store, name))
            except ConfigError as exc:  # one broken definition hides no other task
                _err(str(exc))
                broken = True
                pid = store.running_pid(name)
                entries.append({"name": name, "definition": None, "target": None, "running": pid is not None,
                                "pid": pid if pid is not None and pid > 0 else None, "last_result": store.last_result(name),
                                "next_run": None})
    upcoming = timers.next_runs([entry["name"] for entry in entries if entry["definition"] is not None])
    for entry in entries:
        entry["next_run"] = upcoming.get(entry["name"])
    if args.json:
        _out(json.dumps(entries, indent=2, sort_keys=True, ensure_ascii=False))
    elif not entries:
        _out(f"No sync task is defined in {store.config_dir}.")
    else:
        for line in status_rows(entries):
            _out(line)
    return EXIT_USAGE if broken else EXIT_SUCCESS


# -- log, stop, validate ------------------------------------------------------------------------------------


def cmd_log(args: argparse.Namespace) -> int:
    store = _store(args)
    path = store.newest_log(args.task)
    if path is None:
        _err(f"task {args.task} has no run log in {store.runs_dir(args.task)}: it has not run yet "
             "(check-mode runs keep no log).")
        return EXIT_USAGE
    try:
        with open(path, encoding="utf-8", errors="replace", newline="\n") as handle:
            for line in handle:
                sys.stdout.write(_terminal_safe(line.rstrip("\n")) + "\n")
    except OSError as exc:
        _err(f"cannot read {path} ({exc.strerror}); run as root.")
        return EXIT_FAILED
    sys.stdout.flush()
    return EXIT_SUCCESS


def _terminal_safe(line: str) -> str:
    """A log line as written, or escaped whole when it holds a raw control character (a log written by an earlier
    version, or by hand): server text in a log is escaped when logged, and is not escaped twice here."""
    safe = printable(line)
    return line if safe == line.replace("\\", "\\\\") else safe


def cmd_stop(args: argparse.Namespace) -> int:
    store = _store(args)
    pid = store.running_pid(args.task)
    named_by = time.monotonic() + min(PID_WAIT_S, max(0.0, args.timeout))
    while pid is not None and pid < 0 and time.monotonic() < named_by:
        time.sleep(0.05)  # a run that has just taken the lock writes its pid file right after
        pid = store.running_pid(args.task)
    if pid is None:
        _out(f"task {args.task} is not running.")
        return EXIT_SUCCESS
    if pid <= 1 or pid == os.getpid():
        _err(f"task {args.task} is running, but its process is not known (no pid file in {store.runs_dir(args.task)}); "
             "stop it where it was started.")
        return EXIT_FAILED
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it ended in the meantime
    except PermissionError:
        _err(f"not allowed to signal process {pid} running task {args.task}; run as root (or as its user).")
        return EXIT_FAILED
    _out(f"asked the run of task {args.task} (pid {pid}) to stop; waiting up to {args.timeout:g} s for it "
         "to finish its current batch.")
    deadline = time.monotonic() + max(0.0, args.timeout)
    while store.running_pid(args.task) is not None:
        if time.monotonic() >= deadline:
            _err(f"task {args.task} is still running (pid {pid}) after {args.timeout:g} s; it stops after its current "
                 "batch: wait, or try again with a longer --timeout.")
            return EXIT_FAILED
        time.sleep(0.1)
    _out(f"task {args.task} stopped; the next run continues where it stopped.")
    return EXIT_SUCCESS


def cmd_validate(args: argparse.Namespace) -> int:
    store = _store(args)
    task = store.load_task(args.task)
    target = store.load_target(task.target)
    problems = runner.validate(store, args.task)
    if args.json:
        _out(json.dumps(problems, indent=2, sort_keys=True, ensure_ascii=False))
    elif not problems:
        _out(f"OK: task {args.task} logs in to the remote server {task.remote_host}:{task.remote_port} as "
             f"{task.remote_user} and to the local server {target.host}:{target.port} as {task.local_user} "
             f"(master user {target.master_user}).")
    else:
        for problem in problems:
            _out(f"{problem['kind']} ({problem['side']}): {problem['detail']}")
    return EXIT_FAILED if problems else EXIT_SUCCESS


COMMANDS: dict[str, t.Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "status": cmd_status, "log": cmd_log, "stop": cmd_stop, "validate": cmd_validate,
}


def main(argv: list[str] | None = None) -> int:
    """Run ``imapsyncctl`` with ``argv`` (default: the process arguments); returns the exit code."""
    for stream in (sys.stdout, sys.stderr):  # a folder name the terminal's charset lacks is no reason to fail
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError):
                reconfigure(errors="backslashreplace")
    too_old = pyversion.unsupported_python()
    if too_old is not None:
        _err(too_old)
        return EXIT_FAILED
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        (exc.parser or parser).print_usage(sys.stderr)
        _err(f"{exc}")
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted.")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into a reader that went away (head, ...)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except SyncError as exc:  # a state_dir that cannot be used (full, read-only, unsafe) outside a run
        _err(exc.message)
        return EXIT_FAILED
    except OSError as exc:
        if getattr(exc, "filename", None) and exc.errno not in (errno.EACCES, errno.EPERM):
            _err(files.describe(str(exc.filename), exc))  # a full or read-only filesystem: the path and the fix
        else:
            where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            _err(f"cannot access{where}: {exc.strerror or exc}; run as root, or give --config-dir / --state-dir.")
        return EXIT_FAILED
    except Exception as exc:  # pylint: disable=broad-exception-caught
        if os.environ.get(ENV_DEBUG):
            raise
        _err(f"internal error ({type(exc).__name__}: {exc}); please report it (set {ENV_DEBUG}=1 for the details).")
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
