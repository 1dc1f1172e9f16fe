"""The ``mailops.imap.imapsync`` role through a real ``ansible-playbook``, in a real systemd user manager, against
real Dovecot servers.

One user manager (harness.systemd, a private mount namespace with its own HOME) serves the whole module; the tests
run in file order and build on each other: check mode on a fresh host, a first apply (an interval task of 1 minute
and a manual task), the timer firing, the manual service started by hand, a tick meeting a running sync, a second
apply, check mode on a changed inventory, and a purge. Everything of the role lives under the manager's HOME (the
user-scope defaults), imapclient comes from a local wheel directory (the offline path).

There is no journal in the namespace: a test-only drop-in sends the service's standard output and error to a
file (``StandardOutput=append:``), which is checked for passwords like the unit files, ``systemctl show`` and the
manager's own log. While the module runs, a watcher checks that no password appears in any process's command
line or environment.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ansible_collections.mailops.imap.plugins.module_utils import _units as units
from conftest import download_wheels
from harness import mail
from harness.secrets import SecretWatcher
from harness.systemd import SYSTEMD, UserManager

UNIT = "mailops-imapsync@"
FIRST_DELAY = "3s"
TICK_DEADLINE_S = 100.0  # the first tick comes FIRST_DELAY after the apply, the next one a minute later
DIFF_LINES = 600  # the output of a first apply with --diff
RECAP_RE = re.compile(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def user_manager_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "it needs root (a mount namespace)"
    for tool in ("unshare", "nsenter", "systemctl", "systemd-analyze", SYSTEMD):
        if shutil.which(tool) is None and not os.path.exists(tool):
            return f"{tool} is missing"
    return None


def ansible_playbook() -> str:
    path = shutil.which("ansible-playbook")
    if path is None:
        pytest.fail("ansible-playbook is not on PATH: run the integration tests through `make integration`", pytrace=False)
    return path


@dataclass
class Account:
    remote_user: str
    remote_password: str
    local_user: str


@dataclass
class Deployment:
    """The user manager, the inventory of the role and where things land."""

    manager: UserManager
    work: Path
    wheel_dir: Path
    remote: object
    local: object
    accounts: dict[str, Account]
    output_log: Path
    watcher: SecretWatcher
    secrets: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # the steps that passed, for the later tests

    @property
    def home(self) -> Path:
        return self.manager.home

    @property
    def config_dir(self) -> Path:
        return self.home / ".config" / "mailops-imap"

    @property
    def state_dir(self) -> Path:
        return self.home / ".local" / "state" / "mailops-imap"

    @property
    def unit_dir(self) -> Path:
        return self.manager.unit_dir

    @property
    def launcher(self) -> Path:
        return self.home / ".local" / "bin" / "imapsyncctl"

    def target(self) -> dict:
        return {"host": self.local.host, "port": self.local.port, "ca_file": str(self.local.cert_path),
                "master_user": self.local.master_user, "master_password": self.local.master_password}

    def task(self, name: str, **fields) -> dict:
        account = self.accounts[name]
        task = {"name": name, "local_user": account.local_user, "remote_user": account.remote_user,
                "remote_password": account.remote_password, "remote_host": self.remote.host,
                "remote_port": self.remote.port, "ca_file": str(self.remote.cert_path)}
        task.update(fields)
        return task

    def inventory(self, tasks: list[dict], **more) -> dict:
        role_vars = {"imapsync_scope": "user", "imapsync_pip_wheel_dir": str(self.wheel_dir),
                     "imapsync_target": self.target(), "imapsync_tasks": tasks,
                     "imapsync_timer_first_delay": FIRST_DELAY}
        role_vars.update(more)
        return role_vars

    def play(self, role_vars: dict, *args: str) -> tuple[str, dict[str, int]]:
        """Apply the role with ``role_vars`` (an extra-vars file of mode 0600) inside the manager's namespace."""
        self.work.mkdir(exist_ok=True)
        playbook = self.work / "play.yml"
        playbook.write_text("- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: mailops.imap.imapsync\n",
                            encoding="utf-8")
        extra = self.work / "vars.json"
        extra.write_text(json.dumps(role_vars), encoding="utf-8")
        os.chmod(extra, 0o600)
        env = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_LOCALHOST_WARNING": "0",
               "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
               "ANSIBLE_PYTHON_INTERPRETER": str(Path(ansible_playbook()).parent / "python")}
        proc = self.manager.run([ansible_playbook(), "-i", "localhost,", "-c", "local", str(playbook), "-e", f"@{extra}",
                                 *args], env=env, check=False, timeout=600)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        assert "Traceback" not in output, output
        for secret in self.secrets:
            assert secret not in output, "a password appeared in the output of ansible-playbook"
        match = RECAP_RE.search(output)
        assert match, output
        recap = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))
        return output, recap

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.manager.run(["systemctl", "--user", *args], check=check)

    def show(self, unit: str) -> dict[str, str]:
        out = self.systemctl("show", unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def imapsyncctl(self, *args: str) -> subprocess.CompletedProcess:
        return self.manager.run([str(self.launcher), *args], check=False)

    def last_result(self, task: str) -> dict | None:
        try:
            return json.loads((self.state_dir / "runs" / task / "last.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def local_subjects(self, name: str, folder: str = "INBOX") -> list[str]:
        infos = mail.messages(self.local, self.accounts[name].local_user, None, folder, master=True)
        return sorted(info.subject or "" for info in infos)

    def diagnostics(self, task: str) -> str:
        """What to look at when a run of ``task`` did not do what a test expects."""
        parts = [f"last result: {self.last_result(task)}"]
        for unit in (f"{UNIT}{task}.timer", f"{UNIT}{task}.service"):
            shown = self.show(unit)
            parts.append(f"{unit}: " + ", ".join(f"{k}={shown.get(k)}" for k in (
                "LoadState", "ActiveState", "SubState", "Result", "ExecMainStatus", "NextElapseUSecMonotonic")))
        if self.output_log.exists():
            parts.append("service output (tail):\n" + self.output_log.read_text(encoding="utf-8", errors="replace")[-3000:])
        parts.append("manager log (tail):\n" + self.manager.log_text()[-3000:])
        return "\n".join(parts)

    def require(self, *steps: str) -> None:
        missing = [step for step in steps if step not in self.applied]
        if missing:
            pytest.skip(f"an earlier step failed: {', '.join(missing)}")


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """Every path under ``root`` with its type, mode, symlink target and content hash (not times)."""
    found: dict[str, tuple] = {}
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for name in dirs + files:
            path = here / name
            info = path.lstat()
            if path.is_symlink():
                found[str(path)] = ("link", os.readlink(path))
            elif path.is_dir():
                found[str(path)] = ("dir", oct(info.st_mode))
            else:
                found[str(path)] = ("file", oct(info.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def unit_states(deployment: Deployment) -> list[str]:
    """The unit files of the role with their states, and its loaded timers with theirs (not the services, whose
    state changes with every tick, nor times)."""
    units = deployment.systemctl("list-units", "--all", "--plain", "--no-legend", "--full", f"{UNIT}*.timer").stdout
    files = deployment.systemctl("list-unit-files", "--no-legend", f"{UNIT}*", check=False).stdout
    return sorted(" ".join(line.split()[0:3]) for line in units.splitlines() if line.strip()) + \
        sorted(" ".join(line.split()[0:2]) for line in files.splitlines() if line.strip())


def wait_for(predicate, deadline_s: float, what: str, interval: float = 1.0, details=None):
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {deadline_s:g} s" + (f"\n{details()}" if details else ""))
        time.sleep(interval)


@pytest.fixture(scope="module")
def deployment(remote_server, local_server, wheel_dir, tmp_path_factory):
    reason = user_manager_unavailable()
    if reason is not None:
        pytest.skip(f"a private systemd user manager cannot run: {reason}")
    accounts = {}
    for name in ("tick", "manual", "third"):
        password = f"r\u00f6le'pw\"{name}\\{uuid.uuid4().hex[:8]}"
        remote_user = remote_server.add_user(f"role{name}{uuid.uuid4().hex[:8]}", password)
        local_user = local_server.add_user(f"lrole{name}{uuid.uuid4().hex[:8]}", f"local-{uuid.uuid4().hex}")
        accounts[name] = Account(remote_user, password, local_user)
    watcher = SecretWatcher([a.remote_password for a in accounts.values()]).start()
    work = tmp_path_factory.mktemp("role")
    with UserManager() as manager:
        output_log = manager.root / "service-output.log"
        dropin = manager.unit_dir / f"{UNIT}.service.d"
        dropin.mkdir(parents=True)
        # Test only: no journal in the namespace, so the service's output goes to a file the tests read.
        (dropin / "test-output.conf").write_text(
            f"[Service]\nStandardOutput=append:{output_log}\nStandardError=append:{output_log}\n", encoding="utf-8")
        deployment = Deployment(manager=manager, work=work, wheel_dir=wheel_dir, remote=remote_server, local=local_server,
                                accounts=accounts, output_log=output_log, watcher=watcher,
                                secrets=[a.remote_password for a in accounts.values()] + [local_server.master_password])
        try:
            yield deployment
        finally:
            watcher.stop()
            for task in ("tick", "manual", "third"):  # nothing of ours keeps running once the manager is gone
                manager.run(["systemctl", "--user", "stop", f"{UNIT}{task}.timer", f"{UNIT}{task}.service"], check=False)
    assert not watcher.seen, f"a password appeared in a process's command line or environment: {watcher.seen}"


def test_check_mode_on_a_fresh_host_changes_nothing(deployment):
    d = deployment
    inventory = d.inventory([d.task("tick", folders="inbox", schedule="interval", interval_minutes=1),
                             d.task("manual", schedule="manual")])
    before, units_before = snapshot(d.home, skip=(d.home / ".ansible",)), unit_states(d)
    output, recap = d.play(inventory, "--check", "--diff")
    assert recap["failed"] == 0 and recap["changed"] > 0, output
    assert snapshot(d.home, skip=(d.home / ".ansible",)) == before, "check mode wrote on the host"
    assert unit_states(d) == units_before, "check mode changed units"
    assert f"{UNIT}tick.timer" in output, "the diff names the timer it would write"
    warnings = [line for line in output.splitlines() if "[WARNING]" in line and "mail target 'default'" not in line]
    assert not warnings, "only the target that an earlier task would define is missing"
    d.applied.append("check-fresh")


def test_apply_installs_a_timer_for_the_interval_task_only_and_it_fires(deployment):
    d = deployment
    mail.seed(d.remote, d.accounts["tick"].remote_user, d.accounts["tick"].remote_password, "INBOX",
              [(mail.make_message("tick unseen"), (), None), (mail.make_message("tick seen"), (b"\\Seen",), None)])
    mail.seed(d.remote, d.accounts["manual"].remote_user, d.accounts["manual"].remote_password, "INBOX",
              [(mail.make_message("manual inbox"), (), None)])
    mail.seed(d.remote, d.accounts["manual"].remote_user, d.accounts["manual"].remote_password, "Projects/Role",
              [(mail.make_message("manual project"), (b"\\Flagged",), None)])
    inventory = d.inventory([d.task("tick", folders="inbox", schedule="interval", interval_minutes=1),
                             d.task("manual", schedule="manual")])

    output, recap = d.play(inventory, "--diff")

    assert recap["failed"] == 0 and recap["changed"] > 0, output
    # --diff shows the definitions and the units, not the engine's Python source (one line per copied file).
    assert "from __future__ import annotations" not in output and "def " not in output, output
    assert "OnUnitActiveSec=1min" in output and "ExecStart=" in output and '"remote_user"' in output, output
    assert len(output.splitlines()) < DIFF_LINES, f"{len(output.splitlines())} lines of output"
    timers = sorted(p.name for p in d.unit_dir.glob(f"{UNIT}*.timer"))
    assert timers == [f"{UNIT}tick.timer"], timers
    assert (d.unit_dir / f"{UNIT}.service").is_file()
    assert (d.unit_dir / "timers.target.wants" / f"{UNIT}tick.timer").is_symlink()
    tick_timer = d.show(f"{UNIT}tick.timer")
    assert tick_timer["ActiveState"] == "active" and tick_timer["UnitFileState"] == "enabled", tick_timer
    assert d.show(f"{UNIT}manual.timer")["LoadState"] == "not-found"
    listed = d.systemctl("list-timers", "--all", "--no-legend", f"{UNIT}*").stdout
    assert f"{UNIT}tick.timer" in listed and f"{UNIT}manual" not in listed, listed
    assert (d.home / ".local" / "share" / "mailops-imap" / "venv" / "bin" / "python").exists()
    assert os.access(d.launcher, os.X_OK)
    assert (d.config_dir / "secrets" / "tasks" / "tick").stat().st_mode & 0o077 == 0

    # The timer really fires (FIRST_DELAY after the apply) and the unseen message arrives, unseen, once.
    result = wait_for(lambda: (d.last_result("tick") or {}).get("status") == "success" and d.last_result("tick"),
                      TICK_DEADLINE_S, "a successful run of the tick timer", details=lambda: d.diagnostics("tick"))
    assert result["totals"]["copied"] == 1, result
    assert d.local_subjects("tick") == ["tick unseen"]
    d.applied.append("apply")


def test_every_run_has_a_time_limit_and_a_memory_limit(deployment):
    d = deployment
    d.require("apply")
    limits = d.systemctl("show", "-p", "TimeoutStartUSec,MemoryMax", f"{UNIT}manual.service").stdout.split()
    assert sorted(limits) == ["MemoryMax=1073741824", "TimeoutStartUSec=12h"], limits
    unit = (d.unit_dir / f"{UNIT}.service").read_text(encoding="utf-8")
    assert "\nTimeoutStartSec=12h\n" in unit and "\nMemoryMax=1G\n" in unit


def test_a_path_with_a_line_feed_is_refused_before_anything_is_written(deployment):
    d = deployment
    d.require("apply")
    inventory = d.inventory([d.task("manual", schedule="manual")], imapsync_state_dir=f"{d.state_dir}\n",
                            imapsync_service_timeout="2h")
    before = snapshot(d.home, skip=(d.home / ".ansible", d.state_dir))
    with pytest.raises(AssertionError) as refused:
        d.play(inventory)
    assert "imapsync_state_dir: " in str(refused.value) and "must be an absolute path" in str(refused.value)
    assert "control characters" in str(refused.value)
    assert snapshot(d.home, skip=(d.home / ".ansible", d.state_dir)) == before, "the role wrote before refusing"
    assert "TimeoutStartSec=12h" in (d.unit_dir / f"{UNIT}.service").read_text(encoding="utf-8")


@pytest.mark.parametrize("bad, phrases", [
    # The role's own check: every bad variable named in one message, with what it takes.
    ({"imapsync_timer_accuracy": "bogus", "imapsync_timer_first_delay": "1min; ExecStart=/bin/sh",
      "imapsync_service_memory_max": "1X", "imapsync_pip_index_url": "ftp://index.example",
      "imapsync_service_read_paths": ["relative/path"]},
     ["imapsync_timer_accuracy: \"bogus\" is not a systemd time span", "imapsync_timer_first_delay: ",
      "imapsync_service_memory_max: \"1X\" is not valid", "imapsync_pip_index_url: ", "imapsync_service_read_paths: "]),
    # The argument spec (meta/argument_specs.yml): types and choices.
    ({"imapsync_scope": "bogus", "imapsync_stop_timeout": "soon", "imapsync_oauth_libraries": "sometimes"},
     ["imapsync_scope", "imapsync_stop_timeout", "imapsync_oauth_libraries"]),
])
def test_bad_values_are_refused_before_anything_is_written_naming_each_variable(deployment, bad, phrases):
    d = deployment
    d.require("apply")
    inventory = d.inventory([d.task("manual", schedule="manual")], imapsync_service_timeout="2h", **bad)
    before = snapshot(d.home, skip=(d.home / ".ansible", d.state_dir))
    with pytest.raises(AssertionError) as refused:
        d.play(inventory)
    for phrase in phrases:
        assert phrase in str(refused.value), str(refused.value)
    assert snapshot(d.home, skip=(d.home / ".ansible", d.state_dir)) == before, "the role wrote before refusing"


def test_starting_the_manual_service_delivers_and_status_shows_both(deployment):
    d = deployment
    d.require("apply")
    started = d.systemctl("start", f"{UNIT}manual.service", check=False)
    assert started.returncode == 0, started.stdout + started.stderr
    service = d.show(f"{UNIT}manual.service")
    assert service["Result"] == "success" and service["ExecMainStatus"] == "0", service
    assert d.local_subjects("manual") == ["manual inbox"]
    assert d.local_subjects("manual", "Projects.Role") == ["manual project"]

    status = d.imapsyncctl("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    entries = {entry["name"]: entry for entry in json.loads(status.stdout)}
    assert set(entries) == {"tick", "manual"}
    assert entries["manual"]["last_result"]["status"] == "success"
    assert entries["manual"]["last_result"]["totals"]["copied"] == 2
    assert entries["tick"]["last_result"]["status"] == "success"
    assert entries["tick"]["next_run"] is not None and entries["manual"]["next_run"] is None, entries
    d.applied.append("manual")


def test_a_start_that_meets_a_running_sync_is_skipped_not_failed(deployment):
    d = deployment
    d.require("apply")
    lock = d.state_dir / "tasks" / "tick.sqlite.lock"
    with open(lock, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as a run of the task started elsewhere holds it
        try:
            started = d.systemctl("start", f"{UNIT}tick.service", check=False)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    assert started.returncode == 0, started.stdout + started.stderr
    service = d.show(f"{UNIT}tick.service")
    assert service["ExecMainStatus"] == "75" and service["Result"] == "success", service
    assert service["ActiveState"] != "failed"
    assert d.last_result("tick")["status"] == "skipped"


def test_a_second_apply_changes_nothing(deployment):
    d = deployment
    d.require("apply")
    inventory = d.inventory([d.task("tick", folders="inbox", schedule="interval", interval_minutes=1),
                             d.task("manual", schedule="manual")])
    output, recap = d.play(inventory)
    assert recap["changed"] == 0 and recap["failed"] == 0, output
    d.applied.append("second")


def test_a_reload_that_an_earlier_run_did_not_get_is_done_by_the_next_apply(deployment):
    """A run that wrote a unit file and failed before systemd reloaded leaves the file as the role wants it and
    systemd running the old one (NeedDaemonReload=yes): the next apply reloads, though no file changes."""
    d = deployment
    d.require("second")
    timer = d.unit_dir / f"{UNIT}tick.timer"
    wanted = timer.read_text(encoding="utf-8")
    timer.write_text(wanted.replace("AccuracySec=1s", "AccuracySec=1h"), encoding="utf-8")
    d.systemctl("daemon-reload")  # systemd runs the old timer ...
    timer.write_text(wanted, encoding="utf-8")  # ... and the new file is in place, as the failed run left it
    assert d.show(f"{UNIT}tick.timer")["NeedDaemonReload"] == "yes"
    assert d.show(f"{UNIT}tick.timer")["AccuracyUSec"] == "1h"
    inventory = d.inventory([d.task("tick", folders="inbox", schedule="interval", interval_minutes=1),
                             d.task("manual", schedule="manual")])

    output, recap = d.play(inventory, "--diff")

    assert recap["changed"] == 1 and recap["failed"] == 0, output
    assert "systemd has not loaded the current file of mailops-imapsync@tick.timer" in output, output
    shown = d.show(f"{UNIT}tick.timer")
    assert shown["NeedDaemonReload"] == "no" and shown["AccuracyUSec"] == "1s", shown


def test_no_password_in_unit_files_systemctl_show_or_what_the_service_prints(deployment):
    d = deployment
    d.require("apply", "manual")
    texts = {}
    for path in d.unit_dir.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    for unit in (f"{UNIT}tick.timer", f"{UNIT}tick.service", f"{UNIT}manual.service", f"{UNIT}.service"):
        texts[f"systemctl show {unit}"] = d.systemctl("show", unit, check=False).stdout
        texts[f"systemctl cat {unit}"] = d.systemctl("cat", unit, check=False).stdout
    texts["service output"] = d.output_log.read_text(encoding="utf-8", errors="replace")
    texts["user manager log"] = d.manager.log_text()
    texts["imapsyncctl status"] = d.imapsyncctl("status").stdout
    for path in (d.state_dir / "runs").rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    texts["launcher"] = d.launcher.read_text(encoding="utf-8")

    assert "status success" in texts["service output"], "the service's output was captured"
    assert "run %i" in texts[str(d.unit_dir / f"{UNIT}.service")], "ExecStart names the task, nothing else"
    for where, text in texts.items():
        for secret in d.secrets:
            assert secret not in text, f"a password appeared in {where}"
    environment = d.show(f"{UNIT}tick.service").get("Environment", "")
    assert environment == "", environment


def render_service(d: Deployment, scope: str, dest: Path) -> str:
    """The service the role writes, rendered for ``scope`` with the paths of this deployment by the code that writes
    it (sync_timers' service option; no role run: the system manager is not there to apply it to)."""
    install = d.home / ".local" / "share" / "mailops-imap"
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(install / "venv" / "bin" / "python")))
    reads = [str(d.config_dir), str(install), str(d.launcher), prefix, d.target()["ca_file"], d.task("manual")["ca_file"]]
    service = units.parse_service({
        "launcher": str(d.launcher), "config_dir": str(d.config_dir), "state_dir": str(d.state_dir),
        "stop_timeout": 300, "start_timeout": "12h", "memory_max": "1G", "sandbox": True,
        "read_paths": [path for path in dict.fromkeys(reads) if units.PATH_RE.match(path)], "write_paths": [],
    })
    text = units.render_service(service, scope)
    dest.write_text(text, encoding="utf-8")
    return text


def exposure(text: str) -> float:
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", text)
    assert match, text
    return float(match.group(1))


def test_the_system_scope_service_is_hardened_and_runs_under_a_root_manager(deployment):
    """The system manager is not available here: the system-scope unit is analysed offline, and run in the user
    manager, which runs as root like the system manager, so that its hardening is known not to break a sync."""
    d = deployment
    d.require("apply", "manual")
    written = (d.unit_dir / f"{UNIT}.service").read_text(encoding="utf-8")
    assert written == render_service(d, "user", d.work / "user.service"), "the role's service is the code's, for its paths"
    unit = render_service(d, "system", d.work / f"{UNIT}.service")
    for directive in ("PrivateUsers=yes", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes",
                      "ProtectKernelTunables=yes", "ProtectKernelLogs=yes", "CapabilityBoundingSet=\n",
                      f"ReadWritePaths={d.state_dir}\n", "Wants=network-online.target", "SuccessExitStatus=75",
                      "TimeoutStartSec=12h\n", "MemoryMax=1G\n"):
        assert directive in unit, directive
    analysed = subprocess.run(["systemd-analyze", "security", "--offline=true", str(d.work / f"{UNIT}.service")],
                              capture_output=True, text=True, check=False)
    assert exposure(analysed.stdout + analysed.stderr) <= 2.5, analysed.stdout
    user = d.systemctl("cat", f"{UNIT}.service").stdout
    assert "ProtectKernelTunables=yes" not in user and "PrivateUsers=yes" in user and "ProtectHome=tmpfs" in user
    analysed = d.manager.run(["systemd-analyze", "--user", "security", f"{UNIT}manual.service"], check=False)
    assert exposure(analysed.stdout + analysed.stderr) <= 2.5, analysed.stdout

    name = "mailops-imapsync-system@"
    (d.unit_dir / f"{name}.service").write_text(unit, encoding="utf-8")
    dropin = d.unit_dir / f"{name}.service.d"
    dropin.mkdir(exist_ok=True)
    (dropin / "test-output.conf").write_text((d.unit_dir / f"{UNIT}.service.d" / "test-output.conf").read_text())
    try:
        d.systemctl("daemon-reload")
        started = d.systemctl("start", f"{name}manual.service", check=False)
        service = d.show(f"{name}manual.service")
        assert started.returncode == 0 and service["ExecMainStatus"] == "0", d.diagnostics("manual")
        result = d.last_result("manual")
        assert result["status"] == "success" and result["totals"]["copied"] == 0 and not result["errors"], result
    finally:
        shutil.rmtree(dropin)
        (d.unit_dir / f"{name}.service").unlink()
        d.systemctl("daemon-reload")


def test_check_mode_on_a_changed_inventory_changes_nothing(deployment):
    d = deployment
    d.require("apply")
    changed = d.inventory([d.task("tick", folders="inbox", schedule="interval", interval_minutes=2),
                           d.task("manual", schedule="interval", interval_minutes=5, enabled=False),
                           d.task("third", schedule="interval", interval_minutes=7)],
                          imapsync_purge=True, imapsync_timer_first_delay="1min",
                          imapsync_target=dict(d.target(), master_password=d.local.master_password + "x"))
    # The state directory changes with every tick of the timer: the role never writes there, runs do.
    skip = (d.home / ".ansible", d.state_dir / "runs", d.state_dir / "tasks")
    before, units_before = snapshot(d.home, skip=skip), unit_states(d)
    output, recap = d.play(changed, "--check", "--diff")
    assert recap["failed"] == 0 and recap["changed"] > 0, output
    assert snapshot(d.home, skip=skip) == before, "check mode wrote on the host"
    assert unit_states(d) == units_before, "check mode changed units"
    assert f"{UNIT}third.timer" in output and "******** (changed)" in output, output


def test_purge_removes_the_timer_unit_instance_definition_and_secret_of_a_dropped_task(deployment):
    d = deployment
    d.require("apply")
    assert d.show(f"{UNIT}tick.service")["LoadState"] == "loaded"  # it ran
    inventory = d.inventory([d.task("manual", schedule="manual")], imapsync_purge=True)

    output, recap = d.play(inventory, "--diff")

    assert recap["changed"] > 0 and recap["failed"] == 0, output
    assert not (d.unit_dir / f"{UNIT}tick.timer").exists()
    assert not (d.unit_dir / "timers.target.wants" / f"{UNIT}tick.timer").exists()
    assert not (d.config_dir / "tasks" / "tick.json").exists()
    assert not (d.config_dir / "secrets" / "tasks" / "tick").exists()
    assert (d.config_dir / "tasks" / "manual.json").exists() and (d.config_dir / "secrets" / "tasks" / "manual").exists()

    def gone() -> bool:
        listed = d.systemctl("list-units", "--all", "--plain", "--no-legend", f"{UNIT}tick*").stdout
        return not listed.strip()

    # No tick unit is loaded any more: neither the timer nor the service instance (not even a failed one).
    # (systemctl show would load the instance again from the template, which stays for the other tasks.)
    wait_for(gone, 15.0, "the unloading of the tick units", interval=0.5)
    assert d.show(f"{UNIT}tick.timer")["LoadState"] == "not-found"
    assert (d.state_dir / "runs" / "tick" / "last.json").exists(), "the sync state and logs of a removed task are kept"

    again_output, again = d.play(inventory)
    assert again["changed"] == 0, again_output


def test_a_client_credentials_task_gets_the_oauth_libraries_and_runs_in_the_sandboxed_service(
        deployment, oauth_server, oauth_remote_server, make_oauth_account, tmp_path_factory):
    """An Entra ID application's task (docs/oauth2.md): the role puts msal into the engine's environment
    (imapsync_oauth_libraries: auto, from a wheel directory; imapsync_oauth_requirements narrowed to msal), stores the
    client secret as the task's 0600 secret, and the service obtains a token from the token endpoint and copies the
    mail; the secret and the tokens are in no output."""
    d = deployment
    d.require("apply")
    pins = [line.strip() for line in (Path(__file__).parents[1] / "requirements.txt").read_text(encoding="utf-8").splitlines()
            if line.split("==")[0].strip() in ("msal", "imapclient")]
    assert len(pins) == 2, pins
    wheels = download_wheels(tmp_path_factory.mktemp("oauth-wheels"), pins, deps=True)
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant)
    account = make_oauth_account(tenant.domain)
    mail.seed(oauth_remote_server, account.remote_user, account.remote_password, "INBOX", [mail.make_message("via oauth")])
    d.accounts["m365"] = Account(account.remote_user, "", account.local_user)
    d.secrets.append(app.secret)
    task = {"name": "m365", "schedule": "manual", "local_user": account.local_user, "remote_user": account.remote_user,
            "remote_host": oauth_remote_server.host, "remote_port": oauth_remote_server.port,
            "ca_file": str(oauth_remote_server.cert_path), "remote_auth": "client_credentials",
            "remote_oauth_client_id": app.client_id, "remote_oauth_tenant": tenant.domain,
            "remote_oauth_client_secret": app.secret, "remote_oauth_authority": oauth_server.url,
            "remote_oauth_ca_file": str(oauth_server.ca_path)}
    # msal only (imapsync_oauth_requirements names google-auth too, which a client-credentials task does not use)
    output, recap = d.play(d.inventory([task], imapsync_pip_wheel_dir=str(wheels),
                                       imapsync_oauth_requirements=[pin for pin in pins if pin.startswith("msal")]))
    assert recap["failed"] == 0, output
    secret = d.config_dir / "secrets" / "tasks" / "m365"
    assert secret.read_text(encoding="utf-8") == app.secret and (secret.stat().st_mode & 0o777) == 0o600
    assert app.secret not in (d.config_dir / "tasks" / "m365.json").read_text(encoding="utf-8")

    started = d.systemctl("start", f"{UNIT}m365.service", check=False)
    assert started.returncode == 0, d.diagnostics("m365")
    assert d.local_subjects("m365") == ["via oauth"]
    tokens = [issued.token for issued in oauth_server.issued(app.client_id)]
    assert len(tokens) == 1, "the service obtained one token from the token endpoint"
    written = d.output_log.read_text(encoding="utf-8", errors="replace") + json.dumps(d.last_result("m365"))
    written += "".join(path.read_text(encoding="utf-8", errors="replace") for path in d.unit_dir.glob(f"{UNIT}*")
                       if path.is_file())
    assert app.secret not in written and tokens[0] not in written


def test_a_run_past_its_time_limit_is_stopped_by_systemd_and_frees_the_lock(deployment):
    """Last: it applies a tiny time limit. A remote server that accepts the connection and never greets holds the run
    (the engine's own read timeout is minutes long); systemd stops it and the task's lock is free afterwards."""
    d = deployment
    d.require("apply")
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # never accepts: the connection opens, no greeting ever comes
    try:
        inventory = d.inventory([d.task("manual", schedule="manual"),
                                 d.task("third", schedule="manual", remote_port=silent.getsockname()[1],
                                        remote_security="none")],
                                imapsync_service_timeout="3s", imapsync_stop_timeout=2)
        output, recap = d.play(inventory)
        assert recap["failed"] == 0, output
        assert d.show(f"{UNIT}third.service")["TimeoutStartUSec"] == "3s"
        began = time.monotonic()
        started = d.systemctl("start", f"{UNIT}third.service", check=False)
        elapsed = time.monotonic() - began
        service = d.show(f"{UNIT}third.service")
        assert started.returncode != 0 and service["Result"] == "timeout", d.diagnostics("third")
        assert elapsed < 30, elapsed
        assert service["ActiveState"] in ("failed", "inactive"), service
        locks = [path for path in d.state_dir.rglob("*.lock") if "third" in path.name]
        assert locks, "the run took its lock"
        for lock in locks:
            with open(lock, "a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError while a run holds it
    finally:
        silent.close()
