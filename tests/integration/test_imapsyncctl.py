"""``imapsyncctl`` as a real process against real Dovecot servers: run, check, JSON, lock, stop, log, validate, exit codes."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from harness import mail
from harness.proxy import CuttingProxy

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, store as store_mod

WHEN = datetime.datetime(2024, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)
RESULT_KEYS = {"task", "status", "check_mode", "started", "finished", "duration_s", "folders", "totals", "errors", "notices"}
FOLDER_KEYS = {"remote", "local", "created", "copied", "bytes", "already_present", "flags_updated", "deleted_remote", "errors"}
TOTAL_KEYS = {"copied", "bytes", "already_present", "flags_updated", "deleted_remote", "folders_created", "errors"}
STOP_NOTICE = "stopped on request"


class Host:
    """A host's definitions and state in temporary directories, and ``imapsyncctl`` run against them."""

    def __init__(self, launcher: str, root: Path) -> None:
        self.launcher = launcher
        self.config_dir = root / "etc"
        self.state_dir = root / "var"
        self.store = store_mod.Store(str(self.config_dir), str(self.state_dir))
        self.env = dict(os.environ, MAILOPS_IMAP_CONFIG_DIR=str(self.config_dir), MAILOPS_IMAP_STATE_DIR=str(self.state_dir))
        self.secrets: list[str] = []

    def define(self, account, name: str = "t1", remote_port: int | None = None, **overrides) -> str:
        """Write the target ``default`` and the task ``name`` as the modules would (secrets apart)."""
        local = account.local_server
        target = config.parse_target({
            "host": local.host, "port": local.port, "security": "starttls", "ca_file": str(local.cert_path),
            "master_user": local.master_user, "master_password": local.master_password,
        })
        self.store.write("targets", "default", target.public(), target.master_password)
        data = {
            "name": name, "local_user": account.local_user, "remote_user": account.remote_user,
            "remote_password": account.remote_password, "remote_host": account.remote_server.host,
            "remote_port": remote_port or account.remote_server.port, "remote_security": "starttls",
            "ca_file": str(account.remote_server.cert_path),
        }
        data.update(overrides)
        task = config.parse_task(data)
        self.store.write("tasks", name, task.public(), task.remote_password)
        self.secrets += [target.master_password, task.remote_password, account.remote_password, local.master_password]
        return name

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run([self.launcher, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        self.assert_clean(done.stdout + done.stderr)
        return done

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen([self.launcher, *args], env=self.env, text=True, stdin=subprocess.DEVNULL, **kwargs)

    def status(self, name: str) -> dict:
        done = self.ctl("status", name, "--json")
        assert done.returncode == 0, done.stderr
        entries = json.loads(done.stdout)
        assert [entry["name"] for entry in entries] == [name]
        return entries[0]

    def wait_running(self, name: str, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while (pid := self.store.running_pid(name)) is None or pid < 0:  # -1: locked, its pid not written yet
            assert time.monotonic() < deadline, f"task {name} never started running"
            time.sleep(0.05)
        return pid

    def assert_clean(self, text: str) -> None:
        """No traceback and no secret in what imapsyncctl printed or wrote."""
        assert "Traceback" not in text, text
        for secret in self.secrets:
            assert secret not in text


@pytest.fixture
def host(imapsyncctl, tmp_path) -> Host:
    return Host(imapsyncctl, tmp_path)


def seed_remote(account, inbox: int = 3, work: int = 2) -> None:
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message(f"Inbox {i}", date=WHEN), ["\\Seen"] if i % 2 else [], WHEN)
                                       for i in range(inbox)])
    mail.seed(srv, user, pw, "Work/Projects", [mail.make_message(f"Project {i}", date=WHEN) for i in range(work)])


def seed_many(account, count: int, size: int = 2048) -> None:
    messages = [mail.make_message(f"Bulk {i}", size=size, date=WHEN) for i in range(count)]
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX", messages)


def remote_snapshot(account):
    return mail.snapshot(account.remote_server, account.remote_user, account.remote_password)


def local_snapshot(account):
    return mail.snapshot(account.local_server, account.local_user, master=True)


def local_folders(account) -> set[str]:
    return set(mail.folders(account.local_server, account.local_user, master=True))


def assert_result_shape(result: dict) -> None:
    assert set(result) == RESULT_KEYS
    assert set(result["totals"]) == TOTAL_KEYS
    for folder in result["folders"]:
        assert set(folder) == FOLDER_KEYS


def run_on_terminal(host: Host, *args: str) -> tuple[int, str, str]:
    """Run imapsyncctl with stderr on a pseudo-terminal (stdout a pipe): exit code, stdout, the terminal's text."""
    master, slave = os.openpty()
    try:
        proc = host.popen(*args, stderr=slave)
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    stdout = proc.stdout.read() if proc.stdout else ""
    proc.wait(60)
    if proc.stdout:
        proc.stdout.close()
    terminal = b"".join(chunks).decode("utf-8", "replace")
    host.assert_clean(stdout + terminal)
    return proc.returncode, stdout, terminal


def test_check_then_run_then_nothing_to_do(account, host):
    seed_remote(account)
    name = host.define(account)
    before = local_snapshot(account)
    folders_before = local_folders(account)

    checked = host.ctl("run", name, "--check", "--json")
    assert checked.returncode == 0, checked.stderr
    plan = json.loads(checked.stdout)
    assert_result_shape(plan)
    assert plan["check_mode"] is True and plan["status"] == "success" and plan["totals"]["copied"] == 5
    assert local_snapshot(account) == before and local_folders(account) == folders_before
    assert not os.path.exists(host.store.state_path(name))
    assert host.store.last_result(name) is None and host.store.logs(name) == []

    code, stdout, terminal = run_on_terminal(host, "run", name)
    assert code == 0, stdout + terminal
    assert "status success: 5 messages copied" in stdout
    assert "INBOX -> INBOX: 3 copied" in stdout and "Work/Projects -> Work.Projects (created): 2 copied" in stdout
    assert f"run of task {name}" in terminal and "copying 3 messages" in terminal  # progress on a terminal
    assert "status success" not in terminal  # the summary goes to stdout once, not to the progress display
    remote = remote_snapshot(account)
    local = local_snapshot(account)
    assert local["INBOX"] == remote["INBOX"] and local["Work.Projects"] == remote["Work/Projects"]

    again = host.ctl("run", name, "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert_result_shape(result)
    assert result["task"] == name and result["status"] == "success" and result["check_mode"] is False
    assert result["totals"]["copied"] == 0 and result["errors"] == []
    assert local_snapshot(account) == local

    entry = host.status(name)
    assert entry["running"] is False and entry["pid"] is None and entry["next_run"] is None
    assert entry["last_result"] == result
    assert entry["definition"]["remote_user"] == account.remote_user and "remote_password" not in entry["definition"]


def test_log_shows_folders_counts_and_no_secret(account, host):
    seed_remote(account)
    name = host.define(account)
    missing = host.ctl("log", name)
    assert missing.returncode == 2 and "has no run log" in missing.stderr and missing.stdout == ""

    assert host.ctl("run", name).returncode == 0
    shown = host.ctl("log", name)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"run of task {name}: {account.remote_user} at" in text
    assert "INBOX -> INBOX: copying 3 messages" in text and "Work/Projects -> Work.Projects: copying 2 messages" in text
    assert "INBOX -> INBOX: 3 copied" in text and "Work/Projects -> Work.Projects (created): 2 copied" in text
    assert "status success: 5 messages copied" in text
    for path in host.store.logs(name) + [os.path.join(host.store.runs_dir(name), "last.json")]:
        host.assert_clean(Path(path).read_text(encoding="utf-8"))

    assert host.ctl("run", name).returncode == 0
    newest = host.ctl("log", name).stdout
    assert "status success: 0 messages copied" in newest and "3 copied" not in newest  # the newest run only

    listing = host.ctl("status")
    assert listing.returncode == 0
    header, line = listing.stdout.splitlines()
    assert header.split()[:4] == ["TASK", "ENABLED", "SCHEDULE", "RUNNING"]
    assert line.split()[:4] == [name, "yes", "manual", "no"] and "success" in line and line.endswith("-")


def test_two_runs_at_once_one_copies_the_other_is_skipped(account, host):
    seed_remote(account)
    with CuttingProxy(account.remote_server.host, account.remote_server.port) as proxy:
        name = host.define(account, remote_port=proxy.port)
        proxy.pause()  # the first run holds the lock and waits for the remote's greeting until resumed
        first = host.popen("run", name, "--json")
        try:
            pid = host.wait_running(name)
            assert pid == first.pid

            second = host.ctl("run", name, "--json")
            assert second.returncode == 75, second.stdout + second.stderr
            skipped = json.loads(second.stdout)
            assert skipped["status"] == "skipped" and skipped["totals"]["copied"] == 0

            entry = host.status(name)
            assert entry["running"] is True and entry["pid"] == first.pid
            assert entry["last_result"]["status"] == "skipped"
            table = host.ctl("status").stdout
            assert f"yes (pid {first.pid})" in table and "skipped" in table
        finally:
            proxy.resume()
        out, err = first.communicate(timeout=60)
    host.assert_clean(out + err)
    assert first.returncode == 0, err
    assert json.loads(out)["totals"]["copied"] == 5

    entry = host.status(name)
    assert entry["running"] is False and entry["last_result"]["status"] == "success"
    assert entry["last_result"]["totals"]["copied"] == 5
    assert "status success: 5 messages copied" in host.ctl("log", name).stdout  # the long run's log, not the skipped one's
    remote, local = remote_snapshot(account), local_snapshot(account)
    assert local["INBOX"] == remote["INBOX"] and local["Work.Projects"] == remote["Work/Projects"]


def test_stop_ends_a_run_gracefully_and_the_next_run_copies_the_rest(account, host):
    total = 1000
    seed_many(account, total)  # 4 batches of 250 messages
    with CuttingProxy(account.remote_server.host, account.remote_server.port) as proxy:
        name = host.define(account, remote_port=proxy.port)
        proxy.pause_after(150_000)  # inside the fetch of the first batch
        running = host.popen("run", name)
        try:
            assert proxy.wait_paused(30), "the run never reached the first batch"
            host.wait_running(name)
            stopper = host.popen("stop", name, "--timeout", "30", stderr=subprocess.STDOUT)
            assert stopper.stdout is not None
            first_line = stopper.stdout.readline()  # printed once SIGTERM was sent
            assert f"asked the run of task {name} (pid {running.pid}) to stop" in first_line
        finally:
            proxy.resume()
        rest = stopper.communicate(timeout=60)[0]
        assert stopper.returncode == 0, first_line + rest
        assert f"task {name} stopped" in rest
        out, err = running.communicate(timeout=60)
    host.assert_clean(out + err)
    assert running.returncode == 0, out + err  # a stopped run is not a failure
    assert "SIGTERM received" in err and STOP_NOTICE in out

    last = host.status(name)["last_result"]
    assert last["status"] == "success" and any(STOP_NOTICE in notice for notice in last["notices"])
    copied = last["totals"]["copied"]
    assert 0 < copied < total
    assert len(local_snapshot(account)["INBOX"]) == copied

    host.define(account, name)  # the remote directly again (the proxy is gone); the state is the task's
    rest_run = host.ctl("run", name, "--json")
    assert rest_run.returncode == 0, rest_run.stderr
    assert json.loads(rest_run.stdout)["totals"]["copied"] == total - copied
    assert local_snapshot(account)["INBOX"] == remote_snapshot(account)["INBOX"]  # no duplicate, nothing lost

    not_running = host.ctl("stop", name)
    assert not_running.returncode == 0 and "not running" in not_running.stdout


def test_validate_good_and_wrong_password(account, host):
    name = host.define(account)
    good = host.ctl("validate", name)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith("OK:")

    host.define(account, remote_password="wrong-" + account.remote_password[::-1])
    bad = host.ctl("validate", name)
    assert bad.returncode == 1
    assert bad.stdout.startswith("auth_failed (remote):") and account.remote_server.host in bad.stdout
    as_json = json.loads(host.ctl("validate", name, "--json").stdout)
    assert [(p["kind"], p["side"]) for p in as_json] == [("auth_failed", "remote")]


def test_refused_message_ends_partial_with_exit_3(account, host):
    account.local_server.set_user_quota(account.local_user, "1M")
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    big = mail.make_message("Too big for the quota", size=2 * 1024 * 1024, date=WHEN)
    mail.seed(srv, user, pw, "INBOX", [mail.make_message("Small one", date=WHEN), big, mail.make_message("Small two", date=WHEN)])
    name = host.define(account)
    done = host.ctl("run", name)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "status partial: 2 messages copied" in done.stdout and "error append_refused in INBOX" in done.stdout
    last = host.status(name)["last_result"]
    assert last["status"] == "partial" and [e["kind"] for e in last["errors"]] == ["append_refused"]


def test_bad_usage_and_definitions_exit_2_with_a_sentence(account, host):
    def refused(*args: str, says: str) -> None:
        done = host.ctl(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert says in done.stderr, (args, done.stderr)
        assert done.stdout == ""

    refused("run", "Bad/Name", says="is not a valid task name")
    refused("run", "nosuch", says="The sync task 'nosuch' is not defined")
    refused("validate", "nosuch", says="is not defined")
    refused("status", "nosuch", says="is not defined")
    refused("log", "nosuch", says="has no run log")
    refused("frobnicate", says="invalid choice")
    refused(says="the following arguments are required")
    refused("run", says="the following arguments are required: TASK")

    name = host.define(account)
    definition = Path(host.store.definition_path("tasks", name))
    definition.write_text(definition.read_text(encoding="utf-8").replace('"folders": "all"', '"folders": "most"'), encoding="utf-8")
    refused("run", name, says="folders: 'most' is not a valid value")
    refused("run", name, "--check", says="folders: 'most' is not a valid value")
    host.define(account)
    host.store.remove("targets", "default")
    refused("run", name, says="The mail target 'default' is not defined")
    assert host.store.last_result(name) is None and host.store.logs(name) == []

    elsewhere = host.ctl("--config-dir", str(host.config_dir / "nowhere"), "status")
    assert elsewhere.returncode == 0 and "No sync task is defined" in elsewhere.stdout
    assert host.ctl("status", "--json", "--config-dir", str(host.config_dir / "nowhere")).stdout.strip() == "[]"
