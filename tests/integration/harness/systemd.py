"""A real systemd user manager for tests, in a private mount namespace, with its own HOME and XDG_RUNTIME_DIR.

systemd is not PID 1 on the test machines, but a user manager runs fine once /run/systemd/system exists
(it tells systemd tools that systemd is the init system); a tmpfs over /run/systemd in a private mount
namespace keeps that from leaking to the machine. Commands that talk to the manager (``systemctl --user``,
``ansible-playbook``) run inside the namespace through ``nsenter``. Only ever a *user* manager: booting
``systemd --system`` in a namespace would run its boot-time tmpfiles pass and empty the machine's /tmp.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

SYSTEMD = "/lib/systemd/systemd"


class UserManager:
    """``with UserManager() as manager: manager.run(["systemctl", "--user", ...])``."""

    def __init__(self, startup_timeout: float = 20.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mailops-systemd-"))
        self.home = self.root / "home"
        self.runtime_dir = self.root / "run"
        self.log_path = self.root / "manager.log"
        self.home.mkdir(mode=0o700)
        self.runtime_dir.mkdir(mode=0o700)
        self.unit_dir = self.home / ".config" / "systemd" / "user"
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process that talks to this manager."""
        return dict(os.environ, HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime_dir),
                    DBUS_SESSION_BUS_ADDRESS=f"unix:path={self.runtime_dir}/bus")

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the user manager is not running")
        return self._proc.pid

    def start(self) -> UserManager:
        if not os.path.exists(SYSTEMD):
            raise RuntimeError(f"{SYSTEMD} is missing: install the systemd package")
        script = "mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/system && exec " + SYSTEMD + " --user"
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the systemd user manager exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            probe = self.run(["systemctl", "--user", "is-system-running"], check=False)
            if probe.stdout.strip() in ("running", "degraded"):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the systemd user manager did not come up: {self.log_path.read_text(errors='replace')[-2000:]}")

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 300.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the manager's mount namespace, with its HOME and XDG_RUNTIME_DIR."""
        full_env = self.env
        full_env.update(env or {})
        proc = subprocess.run(
            ["nsenter", "--target", str(self.pid), "--mount", *argv],
            env=full_env, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{argv} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
        return proc

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(["systemctl", "--user", *args], check=check)

    def log_text(self) -> str:
        """What the manager and its units printed (there is no journal in this setup)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> UserManager:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
