"""``engine: imapsync`` through ``imapsyncctl`` as a real process, with the fake ``imapsync`` of harness/fakeimapsync.py.

The fake records what it was given (its argument vector, the content and mode of its password files, its
environment, its session), logs in to the session's real servers with the credentials of the rendered command
as imapsync 2.229 does, prints what imapsync 2.229 prints, and exits with the status a test chooses.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, engine_imapsync, state, store as store_mod
from ansible_collections.mailops.imap.plugins.module_utils._engine.contract import Kind
from harness import fakeimapsync, mail

REMOTE_PASSWORD = "r3m0te p\u00e4'ss\"w\u00f6rd\\x $HOME `id`"
STOP_NOTICE = "stopped on request"


class Host:
    """Definitions and state in temporary directories, the fake imapsync first on PATH, imapsyncctl run against them.

    The task migrates ``account`` (real users of the session's servers); with ``login`` the fake logs in to both
    servers with the credentials of the command, as imapsync does (a few tenths of a second per run).
    """

    def __init__(self, launcher: str, root: Path, account, login: bool = False) -> None:
        self.launcher = launcher
        self.root = root
        self.account = account
        self.remote = account.remote_server
        self.local = account.local_server
        self.passwords = [account.remote_password, self.local.master_password]
        self.config_dir = root / "etc"
        self.state_dir = root / "var"
        self.store = store_mod.Store(str(self.config_dir), str(self.state_dir))
        self.bin_dir = root / "bin"
        self.bin_dir.mkdir()
        self.fake = fakeimapsync.install(self.bin_dir)
        self.record_path = root / "record.json"
        self.tmp_dir = root / "tmp"
        self.tmp_dir.mkdir()
        self.env = dict(os.environ, MAILOPS_IMAP_CONFIG_DIR=str(self.config_dir), MAILOPS_IMAP_STATE_DIR=str(self.state_dir),
                        PATH=f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", TMPDIR=str(self.tmp_dir),
                        # imapsync would take a password from these: they never reach it
                        IMAPSYNC_PASSWORD1="from-the-environment-1", IMAPSYNC_PASSWORD2="from-the-environment-2",
                        **{fakeimapsync.ENV_RECORD: str(self.record_path), fakeimapsync.ENV_LOGIN: "1" if login else "0"})
        self.env.pop(engine_imapsync.ENV_IMAPSYNC, None)

    def define(self, name: str = "t1", target: dict | None = None, **overrides) -> str:
        """Write the target ``default`` (the local server, overridden by ``target``) and the task ``name``."""
        local = self.local
        target_data = {"host": local.host, "port": local.port, "ca_file": str(local.cert_path),
                       "master_user": local.master_user, "master_password": local.master_password}
        target_data.update(target or {})
        parsed_target = config.parse_target(target_data)
        self.store.write("targets", "default", parsed_target.public(), parsed_target.master_password)
        data = {"name": name, "local_user": self.account.local_user, "remote_user": self.account.remote_user,
                "remote_password": self.account.remote_password, "remote_host": self.remote.host,
                "remote_port": self.remote.port, "ca_file": str(self.remote.cert_path), "engine": "imapsync"}
        data.update(overrides)
        task = config.parse_task(data)
        self.store.write("tasks", name, task.public(), task.remote_password)
        return name

    def ctl(self, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run([self.launcher, *args], env=env or self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        self.assert_clean(done.stdout + done.stderr)
        return done

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.launcher, *args], env=self.env, text=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def record(self) -> dict:
        return fakeimapsync.read_record(self.record_path)

    def wait_record(self, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while not self.record_path.exists():
            assert time.monotonic() < deadline, "the fake imapsync never started"
            time.sleep(0.05)
        return self.record()

    def runs_dir(self, name: str = "t1") -> Path:
        return Path(self.store.runs_dir(name))

    def secrets_dirs(self, name: str = "t1") -> list[Path]:
        runs = self.runs_dir(name)
        return sorted(runs.glob(store_mod.PRIVATE_PREFIX + "*")) if runs.exists() else []

    def everything_written(self) -> str:
        """Every file under state_dir (logs, last result, pid...) as text."""
        texts = []
        for path in sorted(self.state_dir.rglob("*")):
            if path.is_file():
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(texts)

    def assert_clean(self, text: str) -> None:
        assert "Traceback" not in text, text
        for password in self.passwords:
            assert password not in text


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


@pytest.fixture
def host(imapsyncctl, make_account, tmp_path) -> Host:
    return Host(imapsyncctl, tmp_path, make_account(remote_password=REMOTE_PASSWORD))


def test_run_gives_passwords_in_private_files_only_and_maps_the_statistics(host):
    host.env[fakeimapsync.ENV_LOGIN] = "1"
    account = host.account
    mail.seed(host.remote, account.remote_user, account.remote_password, "INBOX",
              [(mail.make_message(f"for the fake {i}"), (), None) for i in range(2)])
    name = host.define()
    host.env[fakeimapsync.ENV_STATS] = json.dumps({"duplicate1": 2})
    done = host.ctl("run", name, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)

    record = host.record()
    argv = record["argv"]
    assert argv[0] == str(host.fake)
    assert "--dry" not in argv and "--nolog" in argv and "--syncduplicates" in argv
    assert {"--noauthmd5", "--allowsizemismatch", "--skipsize", "--fastio1", "--fastio2"} <= set(argv)
    # The remote's NAMESPACE (read first) has no other users' or shared namespace: nothing to exclude, and not
    # the fixed ^Shared/^Public of a remote without NAMESPACE.
    assert "--exclude" not in argv
    for password in host.passwords:
        assert all(password not in arg for arg in argv)
        assert all(password not in value for value in record["env"].values())
    assert "IMAPSYNC_PASSWORD1" not in record["env"] and "IMAPSYNC_PASSWORD2" not in record["env"]
    assert record["passfile1"]["content"] == REMOTE_PASSWORD + "\n"
    assert record["passfile2"]["content"] == host.local.master_password + "\n"
    # The credentials the command carries are the ones the servers accept: the fake logged in with them, to the
    # account of the task on both sides (imapsync's LOGIN on host1, SASL PLAIN as user2 by authuser2 on host2).
    assert record["host1"] == {"user": account.remote_user, "ok": True, "answer": record["host1"]["answer"],
                               "security": "starttls", "mech": "LOGIN", "folders": ["INBOX", "Sent Items"], "inbox_messages": 2}
    assert record["host2"]["ok"] and record["host2"]["security"] == "starttls"
    assert (record["host2"]["user"], record["host2"]["authuser"]) == (account.local_user, host.local.master_user)
    private = Path(record["passfile1"]["path"]).parent
    assert private.parent == host.runs_dir(name) and private.name.startswith(store_mod.PRIVATE_PREFIX)
    assert Path(record["passfile2"]["path"]).parent == private
    for key in ("passfile1", "passfile2"):
        assert record[key]["mode"] == 0o600 and record[key]["dir_mode"] == 0o700 and record[key]["uid"] == os.getuid()
    assert record["cwd"] == str(private) and record["env"]["TMPDIR"] == str(private)
    assert record["sid"] == record["pid"]  # a session of its own: a Ctrl-C on the terminal does not reach it
    assert not private.exists() and host.secrets_dirs(name) == []  # gone once imapsync has ended

    assert result["task"] == name and result["status"] == "success" and result["check_mode"] is False
    assert result["folders"] == []
    assert result["totals"] == {"copied": 5, "bytes": 12345, "already_present": 7, "flags_updated": 0,
                                "deleted_remote": 2, "folders_created": 0, "errors": 0}
    assert result["errors"] == [] and engine_imapsync.NOTICE_TOTALS_ONLY in result["notices"]
    assert any(notice.startswith("imapsync found 2 remote message(s) sharing their identifying headers")
               for notice in result["notices"])  # "Messages found duplicate on host1 : 2": copied, and said
    assert host.store.last_result(name) == result
    assert host.store.running_pid(name) is None

    log = host.ctl("log", name).stdout
    assert f"run of task {name}: {account.remote_user} at {host.remote.host}:{host.remote.port}" in log
    assert "engine imapsync: " in log and "--passfile1 " + record["passfile1"]["path"] in log
    assert "Messages transferred                    : 5" in log  # imapsync's own output, line by line
    assert f"Host1: success login on [{host.remote.host}] with user [{account.remote_user}] auth [LOGIN]" in log
    assert "status success: 5 messages copied (12345 bytes), 7 already present" in log
    assert "imapsync synced 3 of 3 folders" in log
    host.assert_clean(host.everything_written())

    summary = host.ctl("run", name)
    assert summary.returncode == 0
    assert "status success: 5 messages copied (12345 bytes)" in summary.stdout
    assert "notice: engine: imapsync reports totals only" in summary.stdout


def test_a_password_that_imapsync_prints_is_masked_everywhere(host):
    name = host.define()
    host.env[fakeimapsync.ENV_MODE] = "leak"
    done = host.ctl("run", name, "--json")  # ctl asserts no password in what imapsyncctl printed
    assert done.returncode == 0, done.stderr
    log = host.ctl("log", name).stdout
    assert "Host1: password is MASKED" in log and "Host2: password [MASKED] for vmail" in log  # stderr too
    host.assert_clean(host.everything_written())


def test_progress_goes_to_the_terminal_without_passwords(host):
    name = host.define()
    host.env[fakeimapsync.ENV_MODE] = "leak"
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([host.launcher, "run", name], env=host.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=slave, text=True)
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    out, _err = proc.communicate(timeout=60)
    terminal = b"".join(chunks).decode("utf-8", "replace")
    host.assert_clean(out + terminal)
    assert proc.returncode == 0
    assert f"run of task {name}" in terminal and "Messages transferred" in terminal and "password is MASKED" in terminal
    assert "status success" in out and "status success" not in terminal


def test_imapsync_failure_is_a_failed_run_with_its_last_error_lines(host):
    name = host.define()
    host.env[fakeimapsync.ENV_MODE] = "authfail"
    done = host.ctl("run", name, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "failed"
    assert [error["kind"] for error in result["errors"]] == [Kind.IMAPSYNC_FAILED]
    detail = result["errors"][0]["detail"]
    assert detail.startswith("imapsync exited with status 161 (EXIT_AUTHENTICATION_FAILURE_USER1): ")
    assert (f"Host1 failure: Error login on [{host.remote.host}] with user [{host.account.remote_user}] auth [LOGIN]: "
            "2 NO [AUTHENTICATIONFAILED] Authentication failed") in detail
    assert engine_imapsync.NOTICE_NO_STATISTICS in result["notices"] and result["totals"]["errors"] == 1
    assert host.store.last_result(name) == result and host.secrets_dirs(name) == []
    shown = host.ctl("run", name)
    assert shown.returncode == 1 and "error imapsync_failed: imapsync exited with status 161" in shown.stdout


def test_a_remote_password_the_remote_refuses_fails_before_imapsync_starts(host):
    wrong = "wr\u00f6ng'remote\"pw"
    host.passwords.append(wrong)
    name = host.define(remote_password=wrong)
    done = host.ctl("run", name, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "failed" and [e["kind"] for e in result["errors"]] == [Kind.AUTH_FAILED]
    assert "remote server" in result["errors"][0]["detail"]
    assert not host.record_path.exists() and host.secrets_dirs(name) == []  # imapsync never ran


def test_messages_imapsync_leaves_behind_make_the_run_partial(host):
    name = host.define()
    host.env[fakeimapsync.ENV_STATS] = json.dumps({"not_copied": 3})
    done = host.ctl("run", name, "--json")
    result = json.loads(done.stdout)
    assert result["status"] == "partial" and result["totals"]["copied"] == 5, result
    assert [e["kind"] for e in result["errors"]] == [Kind.IMAPSYNC_FAILED]
    assert "imapsync ended with 3 remote message(s) not on the local server" in result["errors"][0]["detail"]


def test_a_master_password_the_local_server_refuses_fails_the_run_as_imapsync_does(host):
    wrong = "wr\u00f6ng'master\"pw"
    host.passwords.append(wrong)
    host.env[fakeimapsync.ENV_LOGIN] = "1"
    name = host.define(target={"master_password": wrong})
    done = host.ctl("run", name, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    record = host.record()
    assert record["host1"]["ok"] is True and record["host2"]["ok"] is False  # refused by the real local server
    assert result["status"] == "failed" and result["errors"][0]["kind"] == Kind.IMAPSYNC_FAILED
    detail = result["errors"][0]["detail"]
    assert detail.startswith("imapsync exited with status 162 (EXIT_AUTHENTICATION_FAILURE_USER2): ")
    assert f"Host2 failure: Error login on [{host.local.host}] with user [{host.account.local_user}] auth [PLAIN]" in detail
    assert "AUTHENTICATIONFAILED" in detail and host.secrets_dirs(name) == []
    host.assert_clean(host.everything_written())


def test_imapsync_errors_keep_the_counts_and_fail(host):
    name = host.define()
    host.env[fakeimapsync.ENV_MODE] = "errors"
    done = host.ctl("run", name, "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["status"] == "failed" and result["totals"]["copied"] == 5 and result["totals"]["errors"] == 2
    detail = result["errors"][0]["detail"]
    assert detail.startswith("imapsync exited with status 114 (EXIT_ERR_APPEND): ")
    assert "- msg INBOX/2 {2048} could not append" in detail and "to folder Work: 9 NO [SERVERBUG]" in detail
    assert detail.count("msg INBOX/2") == 1  # imapsync prints its errors twice (as they happen, then listed); the detail once


@pytest.mark.parametrize("code, exit_code, status", [(0, 0, "success"), (1, 1, "failed"), (70, 1, "failed")])
def test_exit_status_of_imapsync_and_of_imapsyncctl(host, code, exit_code, status):
    name = host.define()
    host.env[fakeimapsync.ENV_EXIT] = str(code)
    done = host.ctl("run", name, "--json")
    assert done.returncode == exit_code, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == status and result["totals"]["copied"] == 5
    if code:
        assert result["errors"][0]["detail"].startswith(f"imapsync exited with status {code} ")


def test_check_mode_runs_imapsync_dry_and_writes_nothing(host):
    name = host.define()
    done = host.ctl("run", name, "--check", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    record = host.record()
    assert "--dry" in record["argv"]
    private = Path(record["passfile1"]["path"]).parent
    assert private.parent == host.tmp_dir and record["passfile1"]["mode"] == 0o600 and record["passfile1"]["dir_mode"] == 0o700
    assert not private.exists() and list(host.tmp_dir.iterdir()) == []
    assert result["check_mode"] is True and result["status"] == "success"
    assert result["totals"]["copied"] == 5 and result["totals"]["bytes"] == 0  # "0 (could be 5 without dry mode)"
    assert engine_imapsync.NOTICE_DRY in result["notices"]
    assert not host.state_dir.exists()  # no log, no result, no lock file, no state
    text = host.ctl("run", name, "--check")
    assert text.returncode == 0 and "check mode: nothing was written" in text.stdout


def test_a_second_run_is_skipped_and_stop_ends_imapsync_gracefully(host):
    name = host.define()
    host.env[fakeimapsync.ENV_MODE] = "sleep"
    first = host.popen("run", name, "--json")
    try:
        record = host.wait_record()
        private = Path(record["passfile1"]["path"]).parent
        assert private.exists()
        assert host.store.running_pid(name) == first.pid

        second = host.ctl("run", name, "--json")
        assert second.returncode == 75, second.stdout + second.stderr
        assert json.loads(second.stdout)["status"] == "skipped"
        with pytest.raises(state.Busy):  # the very lock of the builtin engine
            state.State(host.store.state_path(name)).lock()

        stopper = host.ctl("stop", name, "--timeout", "30")
        assert stopper.returncode == 0, stopper.stdout + stopper.stderr
        assert f"task {name} stopped" in stopper.stdout
    finally:
        if first.poll() is None:
            first.kill()
    out, err = first.communicate(timeout=60)
    host.assert_clean(out + err)
    assert first.returncode == 0, err  # a stopped run is not a failure
    assert "SIGTERM received" in err
    result = json.loads(out)
    assert result["status"] == "success" and any(STOP_NOTICE in notice for notice in result["notices"])
    assert json.loads(Path(str(host.record_path) + ".sigterm").read_text(encoding="utf-8"))["signal"] == signal.SIGTERM
    wait_gone(record["pid"])
    assert not private.exists() and host.secrets_dirs(name) == []
    assert host.store.running_pid(name) is None
    assert host.store.last_result(name)["status"] == "success"
    assert "Got a signal TERM" in host.ctl("log", name).stdout
    host.assert_clean(host.everything_written())


def test_a_builtin_run_holding_the_lock_makes_the_imapsync_run_skip(host):
    name = host.define()
    holder = state.State(host.store.state_path(name))
    holder.lock()
    try:
        done = host.ctl("run", name, "--json")
        assert done.returncode == 75, done.stdout + done.stderr
        assert json.loads(done.stdout)["status"] == "skipped"
        checked = host.ctl("run", name, "--check", "--json")
        assert checked.returncode == 75  # check mode honours a held lock too
    finally:
        holder.close()
    assert not host.record_path.exists()  # imapsync never ran
    assert host.ctl("run", name).returncode == 0


def test_a_run_killed_outright_keeps_the_task_locked_until_its_imapsync_ends(host):
    name = host.define()
    host.env[fakeimapsync.ENV_MODE] = "ignore-term"
    first = host.popen("run", name)
    record = host.wait_record()
    first.kill()  # SIGKILL: no chance to clean up
    first.communicate(timeout=30)
    assert alive(record["pid"])
    try:
        assert host.store.running_pid(name) is not None  # imapsync inherited the task's lock
        assert host.ctl("run", name).returncode == 75
        assert len(host.secrets_dirs(name)) == 1
    finally:
        os.kill(record["pid"], signal.SIGKILL)
    wait_gone(record["pid"])
    host.env[fakeimapsync.ENV_MODE] = "done"
    done = host.ctl("run", name, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert host.secrets_dirs(name) == []  # the next run removed what the killed one left


def test_sigterm_to_imapsyncctl_ends_imapsync_and_removes_the_password_files(host):
    name = host.define()
    host.env[fakeimapsync.ENV_MODE] = "sleep"
    run = host.popen("run", name, "--json")
    record = host.wait_record()
    private = Path(record["passfile1"]["path"]).parent
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    host.assert_clean(out + err)
    assert run.returncode == 0 and json.loads(out)["status"] == "success"
    wait_gone(record["pid"])
    assert not private.exists()


def test_override_names_the_program(host, tmp_path):
    name = host.define()
    elsewhere = tmp_path / "opt" / "imapsync-2.229"
    elsewhere.parent.mkdir()
    host.fake.rename(elsewhere)
    env = dict(host.env, **{engine_imapsync.ENV_IMAPSYNC: str(elsewhere)})
    done = host.ctl("run", name, "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert host.record()["argv"][0] == str(elsewhere)


def test_missing_imapsync_is_a_failed_run_that_says_how_to_install_it(host):
    name = host.define()
    host.fake.unlink()
    env = dict(host.env, PATH=str(host.bin_dir))
    done = host.ctl("run", name, "--json", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "failed" and [e["kind"] for e in result["errors"]] == [Kind.MISSING_PROGRAM]
    detail = result["errors"][0]["detail"]
    assert "imapsync is not installed on this host" in detail and "https://imapsync.lamiral.info/" in detail
    assert engine_imapsync.ENV_IMAPSYNC in detail and "engine: builtin" in detail
    assert host.store.last_result(name) == result
    assert "error missing_program: imapsync is not installed" in host.ctl("log", name).stdout

    wrong = dict(host.env, **{engine_imapsync.ENV_IMAPSYNC: str(host.root / "nowhere" / "imapsync")})
    done = host.ctl("run", name, "--json", env=wrong)
    assert done.returncode == 1
    detail = json.loads(done.stdout)["errors"][0]["detail"]
    assert detail.startswith(f"${engine_imapsync.ENV_IMAPSYNC} names ") and "not an executable program" in detail
    checked = host.ctl("run", name, "--check", "--json", env=wrong)
    assert checked.returncode == 1 and json.loads(checked.stdout)["errors"][0]["kind"] == Kind.MISSING_PROGRAM


def test_a_definition_imapsync_cannot_run_is_refused_with_exit_2(host):
    name = host.define()
    definition = Path(host.store.definition_path("tasks", name))
    data = json.loads(definition.read_text(encoding="utf-8"))
    data.update(folders="inbox", sieve=True)  # edited by hand: imapsync cannot mark the copied messages \Seen
    definition.write_text(json.dumps(data), encoding="utf-8")
    for args in (("run", name), ("run", name, "--check")):
        done = host.ctl(*args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "folders: inbox cannot be rendered for imapsync 2.229" in done.stderr and done.stdout == ""
    assert not host.record_path.exists()
    assert host.store.last_result(name) is None and host.store.logs(name) == []


def test_password_files_never_stay_after_runs(host):
    name = host.define()
    for mode, code in (("done", 0), ("authfail", 1), ("errors", 1)):
        host.env[fakeimapsync.ENV_MODE] = mode
        assert host.ctl("run", name).returncode == code
        assert host.secrets_dirs(name) == []
    for path in host.state_dir.rglob("*"):  # logs, last result, pid, lock: for root only
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE(host.runs_dir(name).stat().st_mode) == 0o700
