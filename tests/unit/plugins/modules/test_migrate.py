# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the migrate module maps a run's result onto Ansible's (changed, check mode, diff, failure)."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
import typing as t
from unittest import mock

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.imap.plugins.module_utils import _migrate
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, result
from ansible_collections.mailops.imap.plugins.modules import migrate

SECRET = "Rem0te'pw\"X"


class Exit(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs)
        self.kwargs = kwargs


class Fail(Exit):
    pass


class Outcome(t.NamedTuple):
    exc: Exit
    run: mock.MagicMock
    warnings: list


def outcome(status=None, copied=0, check_mode=False, errors=(), notices=()):
    run = result.RunResult(task=None, check_mode=check_mode)
    run.folders.append(result.FolderResult(remote="INBOX", local="INBOX", copied=copied, bytes=10 * copied, local_before=2))
    for kind, detail in errors:
        run.add_error(kind, detail)
    for text in notices:
        run.notice(text)
    run.finish(status)
    return run


def run_module(tmp_path, run, check_mode=False, diff=False, **changes):
    args = {
        "local_user": "alice", "remote_user": "alice", "remote_password": SECRET, "remote_host": "imap.example.org",
        "state_dir": str(tmp_path / "state"), "target": {"master_password": "M"},
        "_ansible_check_mode": check_mode, "_ansible_diff": diff,
        "progress_interval": 0,  # the run in this process (the progress's detached run: test_progress_playbook.py)
    }
    args.update(changes)
    warnings = []

    def exit_json(self, **kwargs):
        raise Exit(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs.pop("exception", None)
        raise Fail(dict(kwargs, msg=msg, failed=True))

    fake_run = mock.MagicMock(return_value=run)
    with patch_module_args(args), \
            mock.patch.object(basic.AnsibleModule, "exit_json", exit_json), \
            mock.patch.object(basic.AnsibleModule, "fail_json", fail_json), \
            mock.patch.object(basic.AnsibleModule, "warn", lambda self, text, **kw: warnings.append(text)), \
            mock.patch.object(_migrate.sync, "run", fake_run), \
            mock.patch.object(_migrate.sync, "HAS_IMAPCLIENT", True):
        with pytest.raises(Exit) as exc_info:
            migrate.main()
    return Outcome(exc_info.value, fake_run, warnings)


def test_success_changed_and_state(tmp_path):
    ran = run_module(tmp_path, outcome(copied=3))
    exc, fake_run, warnings = ran.exc, ran.run, ran.warnings
    assert not isinstance(exc, Fail)
    res = exc.kwargs
    assert res["changed"] is True and res["status"] == "success" and res["totals"]["copied"] == 3
    assert "diff" not in res and warnings == []
    assert set(result.RunResult(None, False).as_dict()) <= set(res)
    task, target, state_path = fake_run.call_args.args
    assert fake_run.call_args.kwargs["check_mode"] is False
    assert task.remote_password == SECRET and target.master_password == "M"
    assert state_path == os.path.join(str(tmp_path / "state"), config.state_key(task, target) + ".sqlite")
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert SECRET not in repr(res)


def test_nothing_to_do_is_not_changed(tmp_path):
    exc = run_module(tmp_path, outcome(copied=0)).exc
    assert exc.kwargs["changed"] is False


def test_check_mode_writes_nothing_and_predicts_change(tmp_path):
    ran = run_module(tmp_path, outcome(copied=5, check_mode=True), check_mode=True, diff=True)
    exc, fake_run = ran.exc, ran.run
    assert fake_run.call_args.kwargs["check_mode"] is True
    assert not (tmp_path / "state").exists()
    assert exc.kwargs["changed"] is True and exc.kwargs["check_mode"] is True
    assert exc.kwargs["diff"]["before"] == "INBOX: 2 messages\n" and exc.kwargs["diff"]["after"] == "INBOX: 7 messages\n"


def test_failed_run_fails_with_first_detail(tmp_path):
    run = outcome(status="failed", errors=[("auth_failed", "The remote server refused the login."), ("timeout", "Later.")])
    exc = run_module(tmp_path, run).exc
    assert isinstance(exc, Fail)
    assert exc.kwargs["msg"] == "The remote server refused the login."
    assert exc.kwargs["status"] == "failed" and exc.kwargs["errors"][0]["kind"] == "auth_failed"
    assert exc.kwargs["changed"] is False


def test_partial_run_succeeds_with_warning(tmp_path):
    run = outcome(copied=2, errors=[("append_failed", "The local server refused a message.")])
    assert run.status == "partial"
    ran = run_module(tmp_path, run)
    exc, warnings = ran.exc, ran.warnings
    assert not isinstance(exc, Fail)
    assert exc.kwargs["status"] == "partial" and exc.kwargs["changed"] is True
    assert any("partial" in w for w in warnings)


def test_notices_become_warnings(tmp_path):
    ran = run_module(tmp_path, outcome(notices=["The local server cannot run Sieve."]))
    exc, warnings = ran.exc, ran.warnings
    assert "The local server cannot run Sieve." in warnings
    assert exc.kwargs["notices"] == ["The local server cannot run Sieve."]


def test_skipped_run(tmp_path):
    exc = run_module(tmp_path, outcome(status="skipped", notices=["Another run of this task is active; this run was skipped."])).exc
    assert not isinstance(exc, Fail)
    assert exc.kwargs["skipped"] is True and exc.kwargs["changed"] is False and exc.kwargs["status"] == "skipped"


def test_exclude_without_all_except_warns(tmp_path):
    warnings = run_module(tmp_path, outcome(), exclude=["^Spam$"]).warnings
    assert any("exclude is ignored" in w for w in warnings)


def test_bad_definition_fails_before_anything(tmp_path):
    ran = run_module(tmp_path, outcome(), remote_port=70000)
    exc, fake_run = ran.exc, ran.run
    assert isinstance(exc, Fail) and exc.kwargs["msg"].startswith("remote_port:")
    fake_run.assert_not_called()
    assert not (tmp_path / "state").exists()


def test_missing_imapclient(tmp_path):
    with mock.patch.object(_migrate.sync, "IMAPCLIENT_IMPORT_ERROR", "Traceback ..."):
        args = {"local_user": "a", "remote_user": "b", "remote_password": "c", "remote_host": "h", "state_dir": str(tmp_path / "s")}

        def fail_json(self, msg, **kwargs):
            raise Fail(dict(kwargs, msg=msg))

        with patch_module_args(args), mock.patch.object(basic.AnsibleModule, "fail_json", fail_json), \
                mock.patch.object(_migrate.sync, "HAS_IMAPCLIENT", False):
            with pytest.raises(Fail) as exc_info:
                migrate.main()
    assert "imapclient" in exc_info.value.kwargs["msg"]
    assert not (tmp_path / "s").exists()


# --- a defined task -------------------------------------------------------------------------------------------


def run_args(tmp_path, args, fake_run=None, fake_task=None, check_mode=False, diff=False):
    """Run the module with ``args``; sync.run and runner.run_task are replaced by the given mocks."""
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff, progress_interval=0)
    args.setdefault("state_dir", str(tmp_path / "state"))
    warnings = []

    def exit_json(self, **kwargs):
        raise Exit(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs.pop("exception", None)
        raise Fail(dict(kwargs, msg=msg, failed=True))

    fake_run = fake_run or mock.MagicMock(side_effect=AssertionError("sync.run must not be called"))
    fake_task = fake_task or mock.MagicMock(side_effect=AssertionError("run_task must not be called"))
    with patch_module_args(args), \
            mock.patch.object(basic.AnsibleModule, "exit_json", exit_json), \
            mock.patch.object(basic.AnsibleModule, "fail_json", fail_json), \
            mock.patch.object(basic.AnsibleModule, "warn", lambda self, text, **kw: warnings.append(text)), \
            mock.patch.object(_migrate.sync, "run", fake_run), \
            mock.patch.object(_migrate.runner, "run_task", fake_task), \
            mock.patch.object(_migrate.sync, "HAS_IMAPCLIENT", True):
        with pytest.raises(Exit) as exc_info:
            migrate.main()
    return exc_info.value, warnings


def named(status=None, copied=0, check_mode=False, errors=(), notices=()):
    run = outcome(status=status, copied=copied, check_mode=check_mode, errors=errors, notices=notices)
    run.task = "inbox-carol"
    return run


@pytest.mark.parametrize("check_mode", [False, True])
def test_task_by_name_runs_the_defined_task(tmp_path, check_mode):
    fake_task = mock.MagicMock(return_value=named(copied=2, check_mode=check_mode))
    exc, _warnings = run_args(tmp_path, {"task": "inbox-carol", "config_dir": str(tmp_path / "etc")}, fake_task=fake_task,
                              check_mode=check_mode, diff=True)
    assert not isinstance(exc, Fail)
    assert exc.kwargs["task"] == "inbox-carol" and exc.kwargs["changed"] is True and exc.kwargs["totals"]["copied"] == 2
    assert exc.kwargs["diff"]["after"] == "INBOX: 4 messages\n"
    used_store, name = fake_task.call_args.args
    kwargs = fake_task.call_args.kwargs
    assert name == "inbox-carol" and kwargs["check_mode"] == check_mode
    assert not kwargs["stop"].is_set(), "a SIGTERM handler ends the run gracefully; nothing asked it to stop"
    assert used_store.config_dir == str(tmp_path / "etc") and used_store.state_dir == str(tmp_path / "state")


def test_task_by_name_failures(tmp_path):
    fake_task = mock.MagicMock(return_value=named(status="failed", errors=[("auth_failed", "The remote server refused.")]))
    exc, _warnings = run_args(tmp_path, {"task": "inbox-carol"}, fake_task=fake_task)
    assert isinstance(exc, Fail) and exc.kwargs["msg"] == "The remote server refused." and exc.kwargs["task"] == "inbox-carol"

    missing = mock.MagicMock(side_effect=config.ConfigError("The sync task 'inbox-carol' is not defined in /etc; define it."))
    exc, _warnings = run_args(tmp_path, {"task": "inbox-carol"}, fake_task=missing)
    assert isinstance(exc, Fail) and "is not defined" in exc.kwargs["msg"]

    busy = mock.MagicMock(return_value=named(status="skipped", notices=["Another run of this task is active; this run was skipped."]))
    exc, _warnings = run_args(tmp_path, {"task": "inbox-carol"}, fake_task=busy)
    assert exc.kwargs["skipped"] is True and exc.kwargs["changed"] is False


def test_task_by_name_excludes_inline_fields(tmp_path):
    exc, _warnings = run_args(tmp_path, {"task": "inbox-carol", "local_user": "x"})
    assert isinstance(exc, Fail) and "mutually exclusive" in exc.kwargs["msg"]


def test_accounts_file_must_come_through_the_action(tmp_path):
    exc, _warnings = run_args(tmp_path, {"accounts_file": "users.csv", "remote_host": "h"})
    assert isinstance(exc, Fail) and exc.kwargs["msg"].startswith("accounts_file is read on the controller")


# --- many accounts ---------------------------------------------------------------------------------------------

ACCOUNTS = [
    {"local_user": "alice", "remote_user": "alice@x", "remote_password": SECRET},
    {"local_user": "bob", "remote_user": "bob@x", "remote_password": "B0b'pw", "folders": "all_except", "exclude": ["^Spam$"]},
    {"local_user": "carol", "remote_user": "carol@x", "remote_password": "C'pw", "remote_port": 10143},
]


def bulk_args(**changes):
    data = {"accounts": [dict(a) for a in ACCOUNTS], "remote_host": "imap.example.org", "target": {"master_password": "M"},
            "parallel": 2}
    data.update(changes)
    return data


def by_user(results, tmp_path):
    """A fake sync.run answering per local user. With ``parallel`` above 1 it runs in the accounts' worker processes,
    so each call is recorded as a line of JSON in tmp_path/calls.jsonl (see :func:`calls`)."""
    def run(task, target, state_path, **kwargs):
        started = time.monotonic()
        made = results[task.local_user]
        made = made() if callable(made) else made
        record = {"local_user": task.local_user, "folders": task.folders, "remote_port": task.remote_port,
                  "validate_certs": task.validate_certs, "state_path": state_path, "check_mode": kwargs["check_mode"],
                  "pid": os.getpid(), "started": started, "ended": time.monotonic()}
        with open(tmp_path / "calls.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        return made
    return mock.MagicMock(side_effect=run)


def calls(tmp_path):
    """The calls of the fake sync.run of :func:`by_user` (in any process), by local user; then the log is emptied."""
    path = tmp_path / "calls.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    path.unlink(missing_ok=True)
    return {record["local_user"]: record for record in records}


def test_bulk_runs_every_account_with_its_own_state_and_aggregates(tmp_path):
    fake = by_user(tmp_path=tmp_path, results={"alice": outcome(copied=1), "bob": outcome(copied=2), "carol": outcome(copied=0)})
    exc, warnings = run_args(tmp_path, bulk_args(folders="all", validate_certs=False), fake_run=fake, diff=True)
    assert not isinstance(exc, Fail), exc.kwargs
    res = exc.kwargs
    assert res["status"] == "success" and res["changed"] is True and res["check_mode"] is False
    assert res["summary"] == {"accounts": 3, "success": 3, "partial": 0, "failed": 0, "skipped": 0}
    assert res["totals"]["copied"] == 3 and res["totals"]["bytes"] == 30
    assert [a["account"] for a in res["accounts"]] == [
        "alice@x at imap.example.org -> alice", "bob@x at imap.example.org -> bob", "carol@x at imap.example.org -> carol"]
    assert [a["totals"]["copied"] for a in res["accounts"]] == [1, 2, 0]
    assert set(result.RunResult(None, False).as_dict()) <= set(res["accounts"][0])
    assert [d["before_header"] for d in res["diff"]] == [a["account"] for a in res["accounts"]]
    tasks = calls(tmp_path)
    assert tasks["bob"]["folders"] == "all_except" and tasks["alice"]["folders"] == "all", "an account's own value wins"
    assert tasks["carol"]["remote_port"] == 10143 and tasks["alice"]["remote_port"] == 143
    assert all(t["validate_certs"] is False for t in tasks.values()), "the call's value is the default of every account"
    state_paths = {t["state_path"] for t in tasks.values()}
    assert len(state_paths) == 3 and all(os.path.basename(p).startswith("inline-") for p in state_paths)
    assert warnings == []
    assert SECRET not in repr(res) and "B0b'pw" not in repr(res)


def _peak(records):
    """The most calls that overlapped in time."""
    events = sorted([(r["started"], 1) for r in records] + [(r["ended"], -1) for r in records], key=lambda e: (e[0], e[1]))
    active = peak = 0
    for _when, step in events:
        active += step
        peak = max(peak, active)
    return peak


def test_bulk_runs_parallel_accounts_at_a_time_each_in_its_own_process(tmp_path):
    def slow():
        time.sleep(0.3)
        return outcome(copied=1)

    accounts = [{"local_user": f"u{i}", "remote_user": f"u{i}@x", "remote_password": "p"} for i in range(5)]
    fake = by_user(tmp_path=tmp_path, results={f"u{i}": slow for i in range(5)})
    exc, _warnings = run_args(tmp_path, bulk_args(accounts=accounts, parallel=2), fake_run=fake)
    assert exc.kwargs["summary"]["success"] == 5
    assert [a["account"].rsplit(" ", 1)[-1] for a in exc.kwargs["accounts"]] == [f"u{i}" for i in range(5)]
    records = list(calls(tmp_path).values())
    assert len(records) == 5 and _peak(records) == 2, "two accounts at a time, no more"
    pids = {r["pid"] for r in records}
    assert len(pids) == 5 and os.getpid() not in pids, "each account in a worker process of its own"

    run_args(tmp_path, bulk_args(accounts=accounts, parallel=1), fake_run=by_user(tmp_path=tmp_path, results={f"u{i}": slow for i in range(5)}))
    records = list(calls(tmp_path).values())
    assert len(records) == 5 and _peak(records) == 1
    assert {r["pid"] for r in records} == {os.getpid()}, "one at a time: in the module's process"


def test_bulk_a_worker_that_dies_fails_that_account_only(tmp_path):
    def killed():
        os.kill(os.getpid(), signal.SIGKILL)

    fake = by_user(tmp_path=tmp_path, results={"alice": outcome(copied=1), "bob": killed, "carol": outcome(copied=2)})
    exc, _warnings = run_args(tmp_path, bulk_args(parallel=3), fake_run=fake)
    assert isinstance(exc, Fail)
    assert [a["status"] for a in exc.kwargs["accounts"]] == ["success", "failed", "success"]
    bob = exc.kwargs["accounts"][1]
    assert bob["errors"][0]["kind"] == "internal_error"
    assert bob["errors"][0]["detail"].startswith("The account's worker process was killed by SIGKILL before it returned a result")
    assert exc.kwargs["msg"].startswith("1 of 3 account(s) failed (bob@x at imap.example.org -> bob: The account's worker")
    assert exc.kwargs["totals"]["copied"] == 3


def test_bulk_fails_when_any_account_failed_after_all_ran(tmp_path):
    fake = by_user(tmp_path=tmp_path, results={
        "alice": outcome(copied=1),
        "bob": outcome(status="failed", errors=[("auth_failed", "The remote server refused the login of bob@x.")]),
        "carol": outcome(copied=2, errors=[("append_refused", "Over quota.")])})
    exc, warnings = run_args(tmp_path, bulk_args(), fake_run=fake)
    assert isinstance(exc, Fail)
    assert exc.kwargs["msg"] == ("1 of 3 account(s) failed (bob@x at imap.example.org -> bob: The remote server refused the login "
                                 "of bob@x.). The other accounts ran; see accounts for each result.")
    assert exc.kwargs["status"] == "failed" and exc.kwargs["changed"] is True
    assert [a["status"] for a in exc.kwargs["accounts"]] == ["success", "failed", "partial"]
    assert set(calls(tmp_path)) == {"alice", "bob", "carol"}
    assert any("ended partial" in w for w in warnings)


def test_bulk_partial_and_skipped(tmp_path):
    fake = by_user(tmp_path=tmp_path, results={
        "alice": outcome(copied=1, errors=[("append_refused", "Over quota.")]),
        "bob": outcome(status="skipped", notices=["Another run of this task is active; this run was skipped."]),
        "carol": outcome()})
    exc, warnings = run_args(tmp_path, bulk_args(), fake_run=fake)
    assert not isinstance(exc, Fail)
    assert exc.kwargs["status"] == "partial" and "skipped" not in exc.kwargs
    assert "bob@x at imap.example.org -> bob: Another run of this task is active; this run was skipped." in warnings
    assert any("1 account(s) were skipped" in w for w in warnings)

    all_busy = by_user(tmp_path=tmp_path, results={u: outcome(status="skipped") for u in ("alice", "bob", "carol")})
    exc, _warnings = run_args(tmp_path, bulk_args(), fake_run=all_busy)
    assert exc.kwargs["status"] == "skipped" and exc.kwargs["skipped"] is True and exc.kwargs["changed"] is False


def test_bulk_an_unexpected_error_fails_that_account_only(tmp_path):
    def boom():
        raise RuntimeError("something odd")

    fake = by_user(tmp_path=tmp_path, results={"alice": outcome(copied=1), "bob": boom, "carol": outcome()})
    exc, _warnings = run_args(tmp_path, bulk_args(), fake_run=fake)
    assert isinstance(exc, Fail)
    bob = exc.kwargs["accounts"][1]
    assert bob["status"] == "failed" and bob["errors"][0]["kind"] == "internal_error"
    assert "RuntimeError: something odd" in bob["errors"][0]["detail"]
    assert exc.kwargs["accounts"][0]["status"] == "success"


def test_bulk_check_mode_writes_nothing(tmp_path):
    fake = by_user(tmp_path=tmp_path, results={u: outcome(copied=1, check_mode=True) for u in ("alice", "bob", "carol")})
    exc, _warnings = run_args(tmp_path, bulk_args(), fake_run=fake, check_mode=True)
    assert exc.kwargs["check_mode"] is True and exc.kwargs["changed"] is True
    records = calls(tmp_path)
    assert len(records) == 3 and all(record["check_mode"] is True for record in records.values())
    assert not (tmp_path / "state").exists()


def test_bulk_exclude_warning_once(tmp_path):
    fake = by_user(tmp_path=tmp_path, results={u: outcome() for u in ("alice", "bob", "carol")})
    _exc, warnings = run_args(tmp_path, bulk_args(exclude=["^Junk$"]), fake_run=fake)
    assert warnings == ["exclude is ignored for 2 account(s) whose folders is not all_except (alice@x at imap.example.org -> "
                        "alice, carol@x at imap.example.org -> carol); use folders: all_except to exclude folders."]


def test_bulk_bad_account_fails_before_anything(tmp_path):
    fake = by_user(tmp_path=tmp_path, results={})
    exc, _warnings = run_args(tmp_path, bulk_args(accounts=[ACCOUNTS[0], {"local_user": "x", "remote_user": "y"}]), fake_run=fake)
    assert isinstance(exc, Fail) and exc.kwargs["msg"].startswith("accounts entry 2: remote_password is required")
    fake.assert_not_called()
    assert not (tmp_path / "state").exists()
