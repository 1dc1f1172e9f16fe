# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``mailops.imap.migrate`` does on the host: one inline run, one defined task, or many accounts.

The module itself only builds the AnsibleModule; this module maps the engine's results onto Ansible's
(``changed``, check mode, diff, warnings, failure). Many accounts run ``parallel`` at a time, each an
independent run of the engine with its own state (the inline key of :func:`config.state_key`): with
``parallel: 1`` one after the other in this process, else each in a worker process of its own (forked, so that
the accounts use every core and no secret leaves memory), which hands its result back through a pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import secrets
import select
import selectors
import shutil
import signal
import sys
import threading
import time
import typing as t


from ansible_collections.mailops.imap.plugins.module_utils._argspec import Account, MigratePlan, describe_account, parse_migrate
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, errors, files, runner, sync
from ansible_collections.mailops.imap.plugins.module_utils._engine.progress import Progress, write_json
from ansible_collections.mailops.imap.plugins.module_utils._engine.contract import Kind, Status, plain
from ansible_collections.mailops.imap.plugins.module_utils._engine.result import RunResult, now_iso
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store
from ansible_collections.mailops.imap.plugins.module_utils._requirements import refuse_unsupported_python, require_imapclient

STATUS_ORDER = tuple(plain(status) for status in Status)  # the order of the summary counts
TOTAL_KEYS = ("copied", "bytes", "already_present", "flags_updated", "deleted_remote", "folders_created", "errors")


class ModuleLike(t.Protocol):
    """The parts of AnsibleModule used here."""

    params: dict[str, t.Any]
    check_mode: bool
    _diff: bool

    def warn(self, warning: str) -> None: ...

    def fail_json(self, msg: str, **kwargs: t.Any) -> t.NoReturn: ...

    def exit_json(self, **kwargs: t.Any) -> t.NoReturn: ...


def _ensure_state_dir(module: ModuleLike) -> str:
    """The inline runs' state_dir: created (0700, missing parents too) and refused when another user can write it."""
    state_dir = module.params["state_dir"]
    try:
        if not module.check_mode:
            files.make_dirs(state_dir)
        elif os.path.isdir(state_dir):
            files.check_dir(state_dir)
    except (OSError, files.Unsafe) as exc:
        module.fail_json(msg=f"state_dir: {files.describe(state_dir, exc)}", kind=plain(Kind.STATE_ERROR))
    return state_dir


def _failed_result(kind: Kind | str, detail: str, check_mode: bool) -> RunResult:
    outcome = RunResult(task=None, check_mode=check_mode).fail(kind, detail)
    return outcome


def run_inline(task: config.Task, target: config.Target, state_dir: str, check_mode: bool, job: Job | None = None,
               number: int = 0) -> RunResult:
    """One inline run (no defined task): the builtin engine with the account's inline state of the store, and the same
    locks as every run (the task's, here of the inline state, and the account's). Raises ConfigError.

    A real run keeps a run log as a defined task's (runner.run_task), under the inline state's key:
    ``state_dir/runs/inline-KEY/STAMP.log``, the newest store.KEEP_LOGS kept. Check mode writes nothing. With ``job``
    (the migrate action shows the progress) the run rewrites its snapshot ``number`` in the job's directory and stops
    gracefully when the controller stopped asking (Job.abandoned)."""
    store = Store(state_dir=state_dir)
    key = config.state_key(task, target)
    progress = job.progress(number, describe_account(task)) if job is not None else None
    if progress is not None:
        progress.update(force=True)  # shown as starting until its folders are known
    stop = job.watch() if job is not None else None
    if stop is not None and stop.is_set():  # abandoned before this account (of a bulk run) started: it does not start
        outcome = RunResult(task=None, check_mode=check_mode)
        outcome.notice("The controller stopped waiting for this migration (interrupted or timed out); this account was "
                       "not started.")
        outcome.finish(Status.SKIPPED)
        return outcome
    try:
        with _run_log(store, key, task, target, check_mode) as log:
            outcome = sync.run(task, target, store.inline_state_path(task, target), check_mode=check_mode, task_name=None,
                               state_dir=store.state_dir, log=log.line, progress=progress, stop=stop)
            log.summary(outcome)
    finally:
        if progress is not None:
            progress.finish()
        if stop is not None:
            stop.set()  # ends the watcher
    return outcome


class _RunLog:
    """The run log of an inline run: lines stamped and written as runner.run_task's (runner.LogLines; never a
    secret); ``problem``: why the log is missing or incomplete (a notice of the run's result)."""

    def __init__(self, lines: runner.LogLines | None, problem: str | None) -> None:
        self.lines = lines
        self.problem = problem

    def line(self, message: str) -> None:
        if self.lines is not None:
            self.lines.write(message)
            self.problem = self.lines.problem

    def summary(self, outcome: RunResult) -> None:
        for text in runner.summary_lines(outcome):
            self.line(text)
        if self.problem:
            outcome.notice(f"The run log is incomplete: {self.problem}")


@contextlib.contextmanager
def _run_log(store: Store, key: str, task: config.Task, target: config.Target, check_mode: bool) -> t.Iterator[_RunLog]:
    if check_mode:
        yield _RunLog(None, None)
        return
    try:
        path = store.new_log(key, runner.stamp())
        fd = files.open_file(path, os.O_WRONLY | os.O_APPEND)
    except (OSError, files.Unsafe, errors.SyncError) as exc:
        message = exc.message if isinstance(exc, errors.SyncError) else str(exc)
        yield _RunLog(None, f"it cannot be written ({message})")
        return
    log = _RunLog(runner.LogLines(path, fd), None)
    try:
        log.line(f"inline run: {runner.describe(task, target)}")
        yield log
    finally:
        os.close(fd)


def run_inline_account(task: config.Task, target: config.Target, state_dir: str, check_mode: bool, job: Job | None = None,
                       number: int = 0) -> RunResult:
    """One account with its inline state; never raises (an unexpected error is a failed result)."""
    try:
        return run_inline(task, target, state_dir, check_mode, job, number)
    except errors.ConfigError as exc:
        return _failed_result(exc.kind, str(exc), check_mode)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # One account must not take the others down; the sentence names the error without a secret.
        return _failed_result(Kind.INTERNAL_ERROR, f"The run stopped on an unexpected {type(exc).__name__}: {exc}; "
                              "report it, with the host's Python and imapclient versions.", check_mode)


def _finish_single(module: ModuleLike, outcome: RunResult, skipped_msg: str) -> t.NoReturn:
    """Exit with one run's result at the top level (inline or defined task)."""
    for notice in outcome.notices:
        module.warn(notice)
    result = outcome.as_dict()
    result["changed"] = outcome.changed
    if module._diff:
        result["diff"] = outcome.diff()
    if outcome.status == Status.FAILED:
        detail = outcome.errors[0]["detail"] if outcome.errors else "The run failed without a reason; see the host's log."
        module.fail_json(msg=detail, **result)
    if outcome.status == Status.SKIPPED:
        result["skipped"] = True
        result["msg"] = outcome.notices[0] if outcome.notices else skipped_msg
    elif outcome.status == Status.PARTIAL:
        count = result["totals"]["errors"]
        module.warn(f"The migration ended partial: {count} error(s), for example messages refused by the local server; see errors.")
    module.exit_json(**result)


def _exclude_warning(module: ModuleLike, tasks: list[tuple[str, config.Task]]) -> None:
    ignored = [name for name, task in tasks if task.exclude and task.folders != "all_except"]
    if not ignored:
        return
    if len(tasks) == 1 and ignored == [tasks[0][0]]:
        module.warn(f"exclude is ignored with folders: {tasks[0][1].folders}; use folders: all_except to exclude folders.")
        return
    shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
    module.warn(f"exclude is ignored for {len(ignored)} account(s) whose folders is not all_except ({shown}); "
                "use folders: all_except to exclude folders.")


def run_single(module: ModuleLike, plan: MigratePlan) -> t.NoReturn:
    if plan.task is None or plan.target is None:
        module.fail_json(msg="An inline migration needs its task fields and target; give local_user, remote_user, remote_host "
                         "and remote_password (or the fields of remote_auth).")
    _exclude_warning(module, [("", plan.task)])
    state_dir = _ensure_state_dir(module)
    job = detach(module, state_dir, 1)
    with finishing(module, job):
        try:
            outcome = run_inline(plan.task, plan.target, state_dir, module.check_mode, job)
        except errors.ConfigError as exc:
            module.fail_json(msg=str(exc))
        _finish_single(module, outcome, "The same account is already being migrated on this host; this run was skipped.")


def run_defined(module: ModuleLike, plan: MigratePlan) -> t.NoReturn:
    """``task: NAME``: the same run as ``imapsyncctl run NAME`` and the timers (state, log, last result)."""
    name = plan.task_name or ""
    store = Store(module.params["config_dir"], module.params["state_dir"])
    # `imapsyncctl stop NAME` sends SIGTERM to whichever process runs the task: end gracefully here too
    # (current batch finished, state checkpointed, result recorded).
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        outcome = runner.run_task(store, name, check_mode=module.check_mode, stop=stop)
    except errors.ConfigError as exc:
        module.fail_json(msg=str(exc), task=name)
    except errors.SyncError as exc:
        module.fail_json(msg=exc.message, task=name, kind=exc.kind)
    except OSError as exc:
        module.fail_json(msg=f"The task {name!r} cannot run: {exc.strerror} ({exc.filename}); run as root (become: true) "
                         "or check config_dir and state_dir.", task=name)
    finally:
        signal.signal(signal.SIGTERM, previous)
    _finish_single(module, outcome, f"The task {name} is already running on this host; this run was skipped.")


def run_accounts(accounts: t.Sequence[Account], target: config.Target, state_dir: str, check_mode: bool,
                 parallel: int, job: Job | None = None) -> list[RunResult]:
    """Run every account, ``parallel`` at a time; the results in the order of ``accounts``.

    With one at a time the accounts run in this process; else each runs in a forked worker process
    (:func:`_run_in_workers`): threads of one process would share one core for the engine's Python work."""
    workers = max(1, min(parallel, len(accounts)))
    if workers == 1:
        return [run_inline_account(account.task, target, state_dir, check_mode, job, number)
                for number, account in enumerate(accounts)]
    return _run_in_workers(accounts, target, state_dir, check_mode, workers, job)


class _Worker:
    """One account's worker process: its pid, the read end of its result pipe and what it sent so far."""

    def __init__(self, index: int, pid: int, fd: int) -> None:
        self.index = index
        self.pid = pid
        self.fd = fd
        self.chunks: list[bytes] = []

    def outcome(self, wait_status: int, check_mode: bool) -> RunResult:
        """The account's result as the worker sent it, or a failed result saying how the worker ended without one."""
        data = b"".join(self.chunks)
        if os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0 and data:
            try:
                outcome = pickle.loads(data)  # nosec B301 - written by our own forked worker, not by a server
            except Exception:  # pylint: disable=broad-exception-caught
                outcome = None
            if isinstance(outcome, RunResult):
                return outcome
        if os.WIFSIGNALED(wait_status):
            signum = os.WTERMSIG(wait_status)
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = f"signal {signum}"
            detail = (f"The account's worker process was killed by {name} before it returned a result (SIGKILL is what the "
                      "kernel's out-of-memory killer sends); its state was saved after each batch, so run the migration "
                      "again, with a lower parallel if the host is short of memory.")
        else:
            detail = (f"The account's worker process ended (exit status {os.waitstatus_to_exitcode(wait_status)}) without "
                      "returning a result; run the migration again, and report it with the host's log if it repeats.")
        return _failed_result(Kind.INTERNAL_ERROR, detail, check_mode)


def _worker_main(write_fd: int, account: Account, target: config.Target, state_dir: str, check_mode: bool,
                 job: Job | None, number: int) -> t.NoReturn:
    """The body of a forked worker: run the account, write its pickled result to ``write_fd``, leave with os._exit
    (the parent's exit handlers and buffered output belong to the parent)."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        outcome = run_inline_account(account.task, target, state_dir, check_mode, job, number)
        try:
            data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            data = pickle.dumps(_failed_result(
                Kind.INTERNAL_ERROR, f"The account's result could not be handed back by its worker process "
                f"({type(exc).__name__}); report it, with the host's Python version.", check_mode))
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view):]
        code = 0
    finally:
        os._exit(code)  # pylint: disable=protected-access


def _run_in_workers(accounts: t.Sequence[Account], target: config.Target, state_dir: str, check_mode: bool,
                    workers: int, job: Job | None = None) -> list[RunResult]:
    """Each account in a forked worker process, ``workers`` at a time; the results in the order of ``accounts``.

    This process runs no thread while it forks (the workers must not inherit a lock held by another thread): it
    forks, reads the workers' pipes and reaps them. A worker that dies (killed, out of memory) is that account's
    failure. If this process is terminated (SIGTERM) or interrupted, the running workers are terminated and reaped
    before it leaves; their state was saved after each batch."""
    outcomes: list[RunResult | None] = [None] * len(accounts)
    queue = list(enumerate(accounts))
    queue.reverse()
    running: dict[int, _Worker] = {}  # by read fd
    selector = selectors.DefaultSelector()

    def terminate(signum: int, _frame: t.Any) -> t.NoReturn:
        raise SystemExit(128 + signum)

    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set a signal handler
    previous = signal.signal(signal.SIGTERM, terminate) if in_main_thread else None
    try:
        while queue or running:
            while queue and len(running) < workers:
                index, account = queue.pop()
                read_fd, write_fd = os.pipe()
                pid = os.fork()
                if pid == 0:  # the worker
                    os.close(read_fd)
                    for fd in running:
                        os.close(fd)
                    _worker_main(write_fd, account, target, state_dir, check_mode, job, index)
                os.close(write_fd)
                running[read_fd] = _Worker(index, pid, read_fd)
                selector.register(read_fd, selectors.EVENT_READ, running[read_fd])
            for key, _events in selector.select():
                worker = t.cast(_Worker, key.data)
                chunk = os.read(worker.fd, 1 << 16)
                if chunk:
                    worker.chunks.append(chunk)
                    continue
                selector.unregister(worker.fd)
                os.close(worker.fd)
                del running[worker.fd]
                _pid, wait_status = os.waitpid(worker.pid, 0)
                outcomes[worker.index] = worker.outcome(wait_status, check_mode)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        for worker in running.values():
            try:
                os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for worker in running.values():
            os.waitpid(worker.pid, 0)
            os.close(worker.fd)
        selector.close()
    return [t.cast(RunResult, outcome) for outcome in outcomes]


def failure(outcome: RunResult) -> dict[str, str] | None:
    """The failure that stopped a failed run, as ``kind`` and ``message`` (the error RunResult.fail recorded last; the
    engine's sentences hold no secret); None when the run did not fail."""
    if outcome.status != Status.FAILED:
        return None
    if not outcome.errors:
        return {"kind": plain(Kind.INTERNAL_ERROR), "message": "The run failed without a reason; see the host's log."}
    stopped = outcome.errors[-1]
    return {"kind": plain(stopped["kind"]), "message": stopped["detail"]}


def aggregate(accounts: t.Sequence[Account], outcomes: t.Sequence[RunResult], check_mode: bool, started: str,
              duration_s: float) -> dict[str, t.Any]:
    """The result of many accounts: totals, a count per status, one entry per account (with its ``failure``)."""
    entries = []
    totals = dict.fromkeys(TOTAL_KEYS, 0)
    summary = {"accounts": len(outcomes), **dict.fromkeys(STATUS_ORDER, 0)}
    for account, outcome in zip(accounts, outcomes):
        entry = {"account": account.name, **outcome.as_dict(), "failure": failure(outcome)}
        entries.append(entry)
        for key in TOTAL_KEYS:
            totals[key] += entry["totals"][key]
        summary[plain(outcome.status)] = summary.get(plain(outcome.status), 0) + 1
    if summary[Status.FAILED]:
        status = Status.FAILED
    elif summary[Status.PARTIAL]:
        status = Status.PARTIAL
    elif outcomes and summary[Status.SKIPPED] == len(outcomes):
        status = Status.SKIPPED
    else:
        status = Status.SUCCESS
    return {
        "status": plain(status), "check_mode": check_mode, "started": started, "finished": now_iso(), "duration_s": duration_s,
        "totals": totals, "summary": summary, "accounts": entries,
        "changed": any(outcome.changed for outcome in outcomes),
    }


def _account_diff(account: Account, outcome: RunResult) -> dict[str, str]:
    diff = outcome.diff()
    diff["before_header"] = diff["after_header"] = account.name
    return diff


def run_bulk(module: ModuleLike, plan: MigratePlan) -> t.NoReturn:
    if plan.target is None:
        module.fail_json(msg="Many accounts need a target; give target.")
    accounts = list(plan.accounts)
    _exclude_warning(module, [(account.name, account.task) for account in accounts])
    state_dir = _ensure_state_dir(module)
    job = detach(module, state_dir, len(accounts))
    with finishing(module, job):
        _bulk(module, plan, accounts, plan.target, state_dir, job)


def _bulk(module: ModuleLike, plan: MigratePlan, accounts: list[Account], target: config.Target, state_dir: str,
          job: Job | None) -> t.NoReturn:
    started, t0 = now_iso(), time.monotonic()
    outcomes = run_accounts(accounts, target, state_dir, module.check_mode, plan.parallel, job)
    result = aggregate(accounts, outcomes, module.check_mode, started, round(time.monotonic() - t0, 3))

    for account, outcome in zip(accounts, outcomes):
        for notice in outcome.notices:
            module.warn(f"{account.name}: {notice}")
    if module._diff:
        result["diff"] = [_account_diff(a, o) for a, o in zip(accounts, outcomes) if o.folders]

    summary = result["summary"]
    if summary[Status.PARTIAL]:
        module.warn(f"{summary[Status.PARTIAL]} of {summary['accounts']} account(s) ended partial, for example with messages "
                    "refused by the local server; see the errors of each in accounts.")
    if summary[Status.SKIPPED]:
        module.warn(f"{summary[Status.SKIPPED]} account(s) were skipped because the same account was already being migrated on this host.")
    if summary[Status.FAILED]:
        failed = [(a, o) for a, o in zip(accounts, outcomes) if o.status == Status.FAILED]
        details = "; ".join(f"{a.name}: {t.cast(dict, failure(o))['message']}" for a, o in failed[:10])
        more = f"; and {len(failed) - 10} more" if len(failed) > 10 else ""
        others = "The other accounts ran; see" if len(failed) < summary["accounts"] else "See"
        module.fail_json(msg=f"{len(failed)} of {summary['accounts']} account(s) failed ({details}{more}). "
                         f"{others} accounts for each result.", **result)
    if result["status"] == Status.SKIPPED:
        result["skipped"] = True
        result["msg"] = "Every account was already being migrated on this host; this run was skipped."
    module.exit_json(**result)


# -- progress: the run detached from the module call, polled by the migrate action -----------------------------------
# docs/playbooks.md "Progress and run logs": the first call forks the run into a process of its own and waits for it
# up to progress_interval seconds; a run that ends by then is answered at once, exactly as without progress. Else the
# call answers "running" with the job's id, and the action calls the module again (progress_job) every interval: each
# call waits up to an interval for the end, so the result comes as soon as the run ends, and shows the snapshots.

# The module options of the progress: the migrate action's, not the migration's (not in the argument spec of _argspec).
PROGRESS_OPTIONS: dict[str, dict[str, t.Any]] = {
    "progress_interval": {"type": "float", "default": 10},
    "progress_job": {"type": "str"},
}
JOBS = "jobs"  # state_dir/jobs/ID: one directory (0700) per detached run
JOB_ID_LENGTH = 32
ABANDONED_AFTER_S = 60.0  # a run stops gracefully when no poll came for this long plus three intervals
STALE_JOB_S = 86400.0  # a job directory untouched this long belongs to no run any more
WAIT_STEP_S = 0.05
SNAPSHOT_LIMIT = 64 * 1024  # bytes of one snapshot file read
SHOWN_ACCOUNTS = 50  # running accounts sent to the controller per poll at most


class Job:
    """The directory of one detached run: ``pid``, ``heartbeat`` (touched by every poll), ``accounts`` (their number),
    ``account-N.json`` (the snapshot of account N, progress.Progress) and ``result.json`` (the module's answer)."""

    def __init__(self, directory: str, interval: float) -> None:
        self.directory = directory
        self.interval = interval

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def progress(self, number: int, account: str) -> Progress:
        return Progress(self.path(f"account-{number}.json"), account)

    def touch(self) -> None:
        with contextlib.suppress(OSError):
            os.close(files.open_file(self.path("heartbeat"), os.O_WRONLY | os.O_CREAT))
            os.utime(self.path("heartbeat"))

    def abandoned(self) -> bool:
        """Whether the controller stopped asking (interrupted, timed out, unreachable)."""
        try:
            age = time.time() - os.stat(self.path("heartbeat")).st_mtime
        except OSError:
            return True
        return age > 3 * self.interval + ABANDONED_AFTER_S

    def watch(self) -> threading.Event:
        """An event set once the run is abandoned (checked every second by a daemon thread while the process lives)."""
        stop = threading.Event()
        if self.abandoned():
            stop.set()
            return stop

        def watcher() -> None:
            while not stop.wait(1.0):
                if self.abandoned():
                    stop.set()

        threading.Thread(target=watcher, name="mailops-imap-watch", daemon=True).start()
        return stop

    def pid(self) -> int | None:
        try:
            with open(self.path("pid"), encoding="ascii") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def wait(self, timeout: float, child: int | None = None, wake: int | None = None) -> str:
        """``result`` once the answer is there, ``running`` after ``timeout`` s, ``lost`` when the run's process ended
        without one (``child``: the run's pid when this process is its parent, which must reap it; ``wake``: the read
        end of a pipe whose write end the run holds until it leaves, so its end is seen at once)."""
        deadline = time.monotonic() + timeout
        while True:
            if os.path.exists(self.path("result.json")):
                return "result"
            if not self._alive(child):
                return "result" if os.path.exists(self.path("result.json")) else "lost"
            left = deadline - time.monotonic()
            if left <= 0:
                return "running"
            if wake is None:
                time.sleep(min(left, WAIT_STEP_S))
            elif select.select([wake], [], [], min(left, 1.0))[0]:
                os.close(wake)  # the run has left (end of file): its answer is there, or it is lost
                wake = None

    def _alive(self, child: int | None) -> bool:
        if child is not None:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(child, os.WNOHANG)[0] == 0:
                    return True
            return False
        pid = self.pid()
        if pid is None:
            return True  # the run has not written its pid yet
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def snapshots(self) -> dict[str, t.Any]:
        """The progress to show: the number of accounts, how many are done, the snapshots of the running ones."""
        try:
            with open(self.path("accounts"), encoding="ascii") as handle:
                accounts = int(handle.read().strip())
        except (OSError, ValueError):
            accounts = 0
        running: list[t.Any] = []
        done = 0
        with contextlib.suppress(OSError):
            names = sorted((n for n in os.listdir(self.directory) if n.startswith("account-") and n.endswith(".json")),
                           key=lambda n: int(n[8:-5]) if n[8:-5].isdigit() else 0)
            for name in names:
                try:
                    with open(self.path(name), encoding="utf-8") as handle:
                        snapshot = json.loads(handle.read(SNAPSHOT_LIMIT))
                except (OSError, ValueError):
                    continue
                if isinstance(snapshot, dict) and snapshot.get("state") == "done":
                    done += 1
                elif len(running) < SHOWN_ACCOUNTS:
                    running.append(snapshot)
        return {"job": os.path.basename(self.directory), "accounts": accounts, "done": done, "running": running}

    def answer(self) -> t.NoReturn:
        """Leave with the run's answer as this call's (the bytes the module printed), the job's directory removed."""
        with open(self.path("result.json"), "rb") as handle:
            data = handle.read()
        shutil.rmtree(self.directory, ignore_errors=True)
        _emit(data, detached=False)

    def pending(self, detached: bool) -> t.NoReturn:
        _emit(json.dumps({"changed": False, "mailops_progress": self.snapshots()}).encode("utf-8"), detached)


def _emit(data: bytes, detached: bool) -> t.NoReturn:
    """Print the module's answer and leave. The process that detached a run leaves with os._exit: the module's payload
    (AnsiballZ's temporary directory, which its normal exit removes) is the run's until it ends (_publish)."""
    sys.stdout.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
    if detached:
        os._exit(0)  # pylint: disable=protected-access
    # The answer is the run's own module output, already printed: exit_json would print a second one.
    raise SystemExit(0)


def _payload_dir() -> str | None:
    """AnsiballZ's temporary directory of this module's payload (None when not run by Ansible)."""
    for entry in sys.path:
        directory = os.path.dirname(entry)
        if entry.endswith("_payload.zip") and os.path.basename(directory).startswith("ansible_"):
            return directory
    return None


def _clean_stale(jobs: str) -> None:
    """Remove the directories of runs that ended unseen (the controller interrupted) long ago."""
    with contextlib.suppress(OSError):
        for name in os.listdir(jobs):
            path = os.path.join(jobs, name)
            with contextlib.suppress(OSError):
                touched = max(os.stat(path).st_mtime, os.stat(os.path.join(path, "heartbeat")).st_mtime)
                if time.time() - touched > STALE_JOB_S:
                    shutil.rmtree(path, ignore_errors=True)


def detach(module: ModuleLike, state_dir: str, accounts: int) -> Job | None:
    """Run the rest of this call in a process of its own that shows its progress (module option progress_interval).

    Returns None when progress is off (0, check mode, or no job directory can be made: the run is then the same in
    this process); in the run's process, its Job. This process never returns: it answers with the run's result if it
    ends within the interval, else with the job's id and progress (the action polls it, :func:`poll`)."""
    interval = float(module.params.get("progress_interval") or 0)
    if interval <= 0 or module.check_mode:
        return None
    try:
        jobs = files.secure_path(state_dir, JOBS)
        _clean_stale(jobs)
        directory = os.path.join(jobs, secrets.token_hex(JOB_ID_LENGTH // 2))
        os.mkdir(directory, 0o700)
        job = Job(directory, interval)
        write_json(job.path("accounts"), accounts)
        job.touch()
        out = files.open_file(job.path("result.tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    except (OSError, files.Unsafe):
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    wake, awake = os.pipe()
    pid = os.fork()
    if pid == 0:  # the run: a session of its own, its answer to result.tmp, nothing on the caller's terminal or pipes
        os.close(wake)  # ``awake`` stays open until the run leaves
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(null, 2)
        os.close(null)
        os.close(out)
        write_json(job.path("pid"), os.getpid())
        return job
    os.close(out)
    os.close(awake)
    if job.wait(interval, child=pid, wake=wake) == "result":
        job.answer()
    if not os.path.exists(job.path("pid")):  # the run died before it started
        shutil.rmtree(directory, ignore_errors=True)
        module.fail_json(msg="The migration process ended before it started; run the task again.", kind=plain(Kind.INTERNAL_ERROR))
    job.pending(detached=True)


@contextlib.contextmanager
def finishing(module: ModuleLike, job: Job | None) -> t.Iterator[None]:
    """In a run's process (``job``): whatever ends the run, its answer is published and the process leaves."""
    if job is None:
        yield
        return
    try:
        yield
    except SystemExit:
        pass
    except BaseException as exc:  # pylint: disable=broad-exception-caught
        with contextlib.suppress(SystemExit):
            module.fail_json(msg=f"The run stopped on an unexpected {type(exc).__name__}: {exc}; report it, with the host's "
                             "Python and imapclient versions.", kind=plain(Kind.INTERNAL_ERROR))
    _publish(job)


def _publish(job: Job) -> t.NoReturn:
    """The run's last act: its answer (the module's output) named result.json, the module's payload removed."""
    try:
        sys.stdout.flush()
        os.replace(job.path("result.tmp"), job.path("result.json"))
        payload = _payload_dir()
        if payload is not None:
            shutil.rmtree(payload, ignore_errors=True)
    finally:
        os._exit(0)  # pylint: disable=protected-access


def poll(module: ModuleLike, job_id: t.Any) -> t.NoReturn:
    """The action's poll of a detached run: its answer as soon as it has one (waiting up to progress_interval), else
    its progress. Each poll tells the run that the controller is still waiting for it."""
    if not isinstance(job_id, str) or len(job_id) != JOB_ID_LENGTH or not all(c in "0123456789abcdef" for c in job_id):
        module.fail_json(msg="progress_job is set by the migrate action only; remove it from the task.")
    interval = float(module.params.get("progress_interval") or 0) or 10.0
    job = Job(os.path.join(module.params["state_dir"], JOBS, job_id), interval)
    if not os.path.isdir(job.directory):
        module.fail_json(msg=f"The migration's job {job_id} is not on the host any more (its directory in state_dir was "
                         "removed); its run may have gone on: run the task again to continue where it stopped.",
                         kind=plain(Kind.INTERNAL_ERROR))
    job.touch()
    found = job.wait(interval)
    if found == "result":
        job.answer()
    if found == "lost":
        shutil.rmtree(job.directory, ignore_errors=True)
        module.fail_json(msg="The migration's process on the host ended without a result (killed, for example by the "
                         "out-of-memory killer); its state was saved after each batch, so run the task again.",
                         kind=plain(Kind.INTERNAL_ERROR))
    job.pending(detached=False)


def main(module: ModuleLike) -> t.NoReturn:
    """Run what the validated parameters ask for and exit the module."""
    refuse_unsupported_python(module)
    if module.params.get("progress_job"):
        poll(module, module.params["progress_job"])
    try:
        plan = parse_migrate(module.params)
    except errors.ConfigError as exc:
        module.fail_json(msg=str(exc))
    require_imapclient(module)
    if plan.mode == "task":
        run_defined(module, plan)
    if plan.mode == "bulk":
        run_bulk(module, plan)
    run_single(module, plan)
