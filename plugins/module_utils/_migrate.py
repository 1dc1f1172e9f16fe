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

import datetime
import os
import pickle
import selectors
import signal
import threading
import time
import typing as t

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.mailops.imap.plugins.module_utils._argspec import Account, MigratePlan, parse_migrate
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, errors, files, pyversion, runner, sync
from ansible_collections.mailops.imap.plugins.module_utils._engine.contract import Kind, Status, plain
from ansible_collections.mailops.imap.plugins.module_utils._engine.result import RunResult
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store

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


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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


def run_inline(task: config.Task, target: config.Target, state_dir: str, check_mode: bool) -> RunResult:
    """One inline run (no defined task): the builtin engine with the account's inline state of the store, and the same
    locks as every run (the task's, here of the inline state, and the account's). Raises ConfigError."""
    store = Store(state_dir=state_dir)
    return sync.run(task, target, store.inline_state_path(task, target), check_mode=check_mode, task_name=None,
                    state_dir=store.state_dir)


def run_inline_account(task: config.Task, target: config.Target, state_dir: str, check_mode: bool) -> RunResult:
    """One account with its inline state; never raises (an unexpected error is a failed result)."""
    try:
        return run_inline(task, target, state_dir, check_mode)
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
    try:
        outcome = run_inline(plan.task, plan.target, state_dir, module.check_mode)
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
                 parallel: int) -> list[RunResult]:
    """Run every account, ``parallel`` at a time; the results in the order of ``accounts``.

    With one at a time the accounts run in this process; else each runs in a forked worker process
    (:func:`_run_in_workers`): threads of one process would share one core for the engine's Python work."""
    workers = max(1, min(parallel, len(accounts)))
    if workers == 1:
        return [run_inline_account(account.task, target, state_dir, check_mode) for account in accounts]
    return _run_in_workers(accounts, target, state_dir, check_mode, workers)


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


def _worker_main(write_fd: int, account: Account, target: config.Target, state_dir: str, check_mode: bool) -> t.NoReturn:
    """The body of a forked worker: run the account, write its pickled result to ``write_fd``, leave with os._exit
    (the parent's exit handlers and buffered output belong to the parent)."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        outcome = run_inline_account(account.task, target, state_dir, check_mode)
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
                    workers: int) -> list[RunResult]:
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
                    _worker_main(write_fd, account, target, state_dir, check_mode)
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
        "status": plain(status), "check_mode": check_mode, "started": started, "finished": _now(), "duration_s": duration_s,
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
    started, t0 = _now(), time.monotonic()
    outcomes = run_accounts(accounts, plan.target, state_dir, module.check_mode, plan.parallel)
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


def main(module: ModuleLike) -> t.NoReturn:
    """Run what the validated parameters ask for and exit the module."""
    too_old = pyversion.unsupported_python()
    if too_old is not None:
        module.fail_json(msg=too_old)
    try:
        plan = parse_migrate(module.params)
    except errors.ConfigError as exc:
        module.fail_json(msg=str(exc))
    if not sync.HAS_IMAPCLIENT:
        module.fail_json(msg=f"{missing_required_lib('imapclient')} {pyversion.ENVIRONMENT_HINT}",
                         exception=sync.IMAPCLIENT_IMPORT_ERROR)
    if plan.mode == "task":
        run_defined(module, plan)
    if plan.mode == "bulk":
        run_bulk(module, plan)
    run_single(module, plan)
