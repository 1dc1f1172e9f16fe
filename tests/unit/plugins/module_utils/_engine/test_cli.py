# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""imapsyncctl without servers: parsing, exit codes, status from systemd, stop, and the log the ``log`` command shows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import cli, config, runner, store as store_mod, timers
from ansible_collections.mailops.imap.plugins.module_utils._engine.result import RunResult

SECRET = "pä'ss\"wörd\\x"
MASTER = "m@ster'pw"


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A store with target ``default`` and task ``t1`` defined, and imapsyncctl pointed at it through the environment."""
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target({"master_password": MASTER})
    st.write("targets", "default", target.public(), MASTER)
    task = config.parse_task({"name": "t1", "local_user": "alice", "remote_user": "a@x", "remote_password": SECRET,
                              "remote_host": "imap.example.org", "schedule": "interval", "interval_minutes": 5})
    st.write("tasks", "t1", task.public(), SECRET)
    monkeypatch.setenv(cli.ENV_CONFIG_DIR, st.config_dir)
    monkeypatch.setenv(cli.ENV_STATE_DIR, st.state_dir)
    monkeypatch.setattr(timers, "next_runs", lambda names: {name: None for name in names})
    return st


def output(capsys) -> tuple[str, str]:
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert "Traceback" not in text and SECRET not in text and MASTER not in text
    return captured.out, captured.err


@pytest.mark.parametrize("status, code", [("success", 0), ("failed", 1), ("partial", 3), ("skipped", 75), ("odd", 1)])
def test_exit_code_of_each_status(status, code):
    assert cli.exit_code(status) == code


@pytest.mark.parametrize("argv, says", [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice"),
    (["run"], "the following arguments are required: TASK"),
    (["run", "Bad"], "'Bad' is not a valid task name"),
    (["run", "../etc"], "is not a valid task name"),
    (["status", "x", "y"], "unrecognized arguments"),
    (["stop", "t1", "--timeout", "soon"], "invalid float value"),
])
def test_usage_errors_exit_2_with_a_sentence(argv, says, capsys):
    assert cli.main(argv) == 2
    out, err = output(capsys)
    assert out == "" and says in err and "usage: imapsyncctl" in err


def test_help_exits_0(capsys):
    assert cli.main(["--help"]) == 0
    out, _err = output(capsys)
    assert "75 skipped" in out and "run" in out and "validate" in out


def test_directories_from_options_before_or_after_the_command_else_environment(monkeypatch):
    parser = cli.build_parser()
    monkeypatch.delenv(cli.ENV_CONFIG_DIR, raising=False)
    monkeypatch.delenv(cli.ENV_STATE_DIR, raising=False)
    defaults = cli._store(parser.parse_args(["status"]))  # pylint: disable=protected-access
    assert (defaults.config_dir, defaults.state_dir) == (store_mod.CONFIG_DIR, store_mod.STATE_DIR)
    monkeypatch.setenv(cli.ENV_CONFIG_DIR, "/env/etc")
    monkeypatch.setenv(cli.ENV_STATE_DIR, "/env/var")
    from_env = cli._store(parser.parse_args(["status"]))  # pylint: disable=protected-access
    assert (from_env.config_dir, from_env.state_dir) == ("/env/etc", "/env/var")
    before = cli._store(parser.parse_args(["--config-dir", "/a", "run", "t1"]))  # pylint: disable=protected-access
    after = cli._store(parser.parse_args(["run", "t1", "--state-dir", "/b"]))  # pylint: disable=protected-access
    assert (before.config_dir, before.state_dir) == ("/a", "/env/var")
    assert (after.config_dir, after.state_dir) == ("/env/etc", "/b")


@pytest.mark.parametrize("status, code", [("success", 0), ("failed", 1), ("partial", 3), ("skipped", 75)])
def test_run_prints_the_result_and_exits_by_status(host, monkeypatch, capsys, status, code):
    def fake_run_task(store, name, *, check_mode=False, progress=None, stop=None):
        assert store.config_dir == host.config_dir and name == "t1" and check_mode is False and stop is not None
        result = RunResult(task=name, check_mode=check_mode)
        result.finish(status)
        return result

    monkeypatch.setattr(runner, "run_task", fake_run_task)
    assert cli.main(["run", "t1", "--json"]) == code
    out, _err = output(capsys)
    result = json.loads(out)
    assert result["status"] == status and result["task"] == "t1"
    assert cli.main(["run", "t1"]) == code
    out, _err = output(capsys)
    assert out.splitlines()[-1].startswith(f"status {status}:")


def test_run_stops_gracefully_on_sigterm(host, monkeypatch, capsys):
    def fake_run_task(store, name, *, check_mode=False, progress=None, stop=None):
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        result = RunResult(task=name, check_mode=check_mode)
        if stop.is_set():
            result.notice("The run was stopped on request; the next run continues where it stopped.")
        result.finish()
        return result

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(runner, "run_task", fake_run_task)
    assert cli.main(["run", "t1"]) == 0
    out, err = output(capsys)
    assert "notice: The run was stopped on request" in out
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored after the run
    del err


def test_run_check_mode_is_announced(host, monkeypatch, capsys):
    def fake_run_task(store, name, *, check_mode=False, progress=None, stop=None):
        result = RunResult(task=name, check_mode=check_mode)
        result.finish()
        return result

    monkeypatch.setattr(runner, "run_task", fake_run_task)
    assert cli.main(["run", "t1", "--check"]) == 0
    out, _err = output(capsys)
    assert out.startswith("check mode: nothing was written")


def test_definition_errors_and_internal_errors_are_sentences(host, monkeypatch, capsys):
    assert cli.main(["run", "nosuch"]) == 2
    _out, err = output(capsys)
    assert err.startswith("imapsyncctl: The sync task 'nosuch' is not defined")

    def broken(*_args, **_kwargs):
        raise RuntimeError("something unexpected")

    monkeypatch.setattr(runner, "run_task", broken)
    assert cli.main(["run", "t1"]) == 1
    _out, err = output(capsys)
    assert "internal error (RuntimeError: something unexpected)" in err


def test_status_lists_tasks_without_secrets(host, capsys):
    host.record_result("t1", {"status": "partial", "finished": "2026-01-02T03:04:05+00:00", "check_mode": False,
                              "totals": {"copied": 7, "errors": 1}})
    assert cli.main(["status", "--json"]) == 0
    out, _err = output(capsys)
    (entry,) = json.loads(out)
    assert {"name", "definition", "running", "pid", "last_result", "next_run"} <= set(entry)
    assert entry["name"] == "t1" and entry["running"] is False and entry["pid"] is None
    assert entry["last_result"]["status"] == "partial" and "remote_password" not in entry["definition"]
    assert cli.main(["status"]) == 0
    out, _err = output(capsys)
    header, line = out.splitlines()
    assert header.startswith("TASK") and line.split()[:5] == ["t1", "yes", "every", "5", "min"]
    assert "partial 2026-01-02T03:04:05+00:00, 7 copied, 1 errors" in line and line.endswith("-")


def test_status_shows_every_task_when_one_definition_is_broken(host, capsys):
    host.write("tasks", "t0", {"broken": True}, None)
    with open(host.definition_path("tasks", "t0"), "w", encoding="utf-8") as handle:
        handle.write("{not json")
    assert cli.main(["status"]) == 2
    out, err = output(capsys)
    assert "t0.json cannot be read" in err
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["t0", "?", "?"] and lines[2].startswith("t1 ")


def test_log_shows_the_newest_log(host, capsys):
    assert cli.main(["log", "t1"]) == 2
    _out, err = output(capsys)
    assert "task t1 has no run log" in err
    first = host.new_log("t1", "20260101T000000000000Z")
    with open(first, "w", encoding="utf-8") as handle:
        handle.write("first run\n")
    second = host.new_log("t1", "20260101T000001000000Z")
    with open(second, "w", encoding="utf-8") as handle:
        handle.write("second run\n")
    os.utime(first, (time.time() + 5, time.time() + 5))  # written last: a long run that ended after a skipped one
    assert cli.main(["log", "t1"]) == 0
    out, _err = output(capsys)
    assert out == "first run\n"


def test_log_never_sends_a_raw_control_character_to_the_terminal(host, capsys):
    path = host.new_log("t1", "20260101T000000000000Z")
    with open(path, "w", encoding="utf-8") as handle:  # an escaped line as the engine writes it, and a raw one
        handle.write("folder x\\n2026 status success\\x1b[2J done\nold folder y\x1b[2J\rstatus success \\o/\n")
    assert cli.main(["log", "t1"]) == 0
    out, _err = output(capsys)
    assert out == "folder x\\n2026 status success\\x1b[2J done\nold folder y\\x1b[2J\\rstatus success \\\\o/\n"


HOLDER = r"""
import fcntl, os, signal, sys, time
lock, pid_file, ignore = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
os.makedirs(os.path.dirname(lock), exist_ok=True)
fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore else (lambda *_: sys.exit(0)))
with open(pid_file, "w") as handle:
    handle.write(f"{os.getpid()}\n")
print("locked", flush=True)
time.sleep(30)
"""


def hold_lock(st, ignore_sigterm: bool) -> subprocess.Popen:
    """A process that holds task t1's lock and names itself in the pid file, as a run does."""
    os.makedirs(st.runs_dir("t1"), exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, st.state_path("t1") + ".lock", os.path.join(st.runs_dir("t1"), "pid"),
                             "1" if ignore_sigterm else "0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_stop_signals_the_run_and_waits_for_the_lock(host, capsys):
    assert cli.main(["stop", "t1"]) == 0
    out, _err = output(capsys)
    assert out == "task t1 is not running.\n"

    proc = hold_lock(host, ignore_sigterm=False)
    try:
        assert host.running_pid("t1") == proc.pid
        assert cli.main(["stop", "t1", "--timeout", "10"]) == 0
        out, _err = output(capsys)
        assert f"(pid {proc.pid}) to stop" in out and "task t1 stopped" in out
        assert proc.wait(5) == 0 and host.running_pid("t1") is None
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_stop_times_out_with_exit_1(host, capsys):
    proc = hold_lock(host, ignore_sigterm=True)
    try:
        assert cli.main(["stop", "t1", "--timeout", "0.3"]) == 1
        _out, err = output(capsys)
        assert "still running" in err and "--timeout" in err
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_stop_of_a_run_whose_process_is_unknown(host, capsys, monkeypatch):
    monkeypatch.setattr(cli, "PID_WAIT_S", 0.2)
    monkeypatch.setattr(store_mod.Store, "running_pid", lambda self, task: -1)
    assert cli.main(["stop", "t1"]) == 1
    _out, err = output(capsys)
    assert "its process is not known" in err


def test_status_shows_the_next_run_systemd_gives(host, monkeypatch, capsys):
    asked = []

    def next_runs(names):
        asked.append(list(names))
        return {"t1": "2026-01-01T00:05:00+00:00"}

    monkeypatch.setattr(timers, "next_runs", next_runs)
    assert cli.main(["status", "t1", "--json"]) == 0
    out, _err = output(capsys)
    assert json.loads(out)[0]["next_run"] == "2026-01-01T00:05:00+00:00" and asked == [["t1"]]
    assert cli.main(["status"]) == 0
    out, _err = output(capsys)
    assert out.splitlines()[1].endswith("  2026-01-01T00:05:00+00:00")


def test_the_running_runs_log_is_kept_from_rotation_and_shown(host):
    host.record_result("t1", {"status": "success"})
    proc = hold_lock(host, ignore_sigterm=False)
    try:
        long_run = host.new_log("t1", "20260101T000000000000Z")
        host.set_current_log("t1", long_run)
        for i in range(store_mod.KEEP_LOGS + 5):  # skipped runs, one a timer tick
            host.new_log("t1", f"20260101T0001{i:02d}000000Z")
        logs = host.logs("t1")
        assert long_run in logs and len(logs) == store_mod.KEEP_LOGS
        assert host.current_log("t1") == long_run and host.newest_log("t1") == long_run
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
    assert host.current_log("t1") is None  # nothing runs: the marker names nothing any more
    host.clear_current_log("t1", "/elsewhere/other.log")
    assert os.path.exists(os.path.join(host.runs_dir("t1"), "current"))  # names another log: left alone
    host.clear_current_log("t1", long_run)
    assert not os.path.exists(os.path.join(host.runs_dir("t1"), "current"))
