"""A throwaway managed host over SSH: an sshd of its own on a free loopback port and an unprivileged user who may
become root with sudo.

The sshd runs with its own configuration and host key (public keys only, no PAM), the user logs in with a key made
for it; nothing of the machine's own sshd configuration is used or changed. ``close()`` stops the sshd and removes
the user, its home, its sudoers entry and the files. It needs root (useradd, sudoers, sshd's privilege separation).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from harness.dovecot import LOOPBACK, free_port

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it


def unavailable() -> str | None:
    """Why a throwaway SSH host cannot run here, or None."""
    if os.geteuid() != 0:
        return "it needs root (useradd, sudoers)"
    for tool in (SSHD, "ssh", "ssh-keygen", "sudo", "useradd", "userdel"):
        if shutil.which(tool) is None and not os.path.exists(tool):
            return f"{tool} is missing (install openssh-server and sudo: make deps)"
    return None


class SshHost:
    """``with SshHost() as host: host.inventory_line()``: user ``host.user`` with key ``host.key`` on ``host.port``."""

    def __init__(self, startup_timeout: float = 15.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mailops-sshd-"))
        os.chmod(self.root, 0o755)  # the user's home lives below
        self.user = f"mailops{uuid.uuid4().hex[:8]}"
        self.home = self.root / "home"
        self.key = self.root / "client_key"
        self.known_hosts = self.root / "known_hosts"
        self.port = 0
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen | None = None
        self._user_added = False
        self._privsep_made = False
        self._sudoers = Path("/etc/sudoers.d") / f"{self.user}"

    def start(self) -> SshHost:
        run = _run
        # '*' as the password: no password login, and not "locked" (sshd without PAM refuses a locked account).
        run(["useradd", "--home-dir", str(self.home), "--create-home", "--shell", "/bin/sh", "--user-group",
             "--password", "*", self.user])
        self._user_added = True
        self._sudoers.write_text(f"{self.user} ALL=(ALL) NOPASSWD: ALL\n", encoding="utf-8")
        os.chmod(self._sudoers, 0o440)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mailops-test", "-f", str(self.key)])
        host_key = self.root / "host_key"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mailops-test-host", "-f", str(host_key)])
        authorized = self.root / "authorized_keys"
        authorized.write_text(Path(f"{self.key}.pub").read_text(encoding="utf-8"), encoding="utf-8")
        os.chmod(authorized, 0o644)
        if not PRIVSEP_DIR.is_dir():
            PRIVSEP_DIR.mkdir(mode=0o755)
            self._privsep_made = True
        self.port = free_port()
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {LOOPBACK}:{self.port}",
            f"HostKey {host_key}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            f"AllowUsers {self.user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin no",
            "StrictModes no",  # the authorized keys live in the test's directory
            f"Subsystem sftp {SFTP_SERVER}",
            "LogLevel ERROR",
        ]) + "\n", encoding="utf-8")
        with open(self.root / "sshd.log", "wb") as log:
            self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text(errors='replace')}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {LOOPBACK}:{self.port} within {self.startup_timeout:g} s")

    def inventory_vars(self) -> dict[str, str]:
        """The connection variables of this host for an Ansible inventory."""
        return {
            "ansible_connection": "ssh", "ansible_host": LOOPBACK, "ansible_port": str(self.port),
            "ansible_user": self.user, "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=accept-new",
            # Ansible's persistent connections, with their sockets here so that close() can end them.
            "ansible_ssh_args": f"-o ControlMaster=auto -o ControlPersist=60s -o ControlPath={self.root}/cp-%C",
            "ansible_become_method": "sudo",
            "ansible_pipelining": "true",  # one SSH round trip a task (sudo without requiretty, Debian's default)
        }

    def processes(self) -> list[int]:
        """The processes running as the user (none once a playbook ended and its connections closed)."""
        done = subprocess.run(["pgrep", "-u", self.user], capture_output=True, text=True, check=False)
        return [int(pid) for pid in done.stdout.split()]

    def end_connections(self, timeout: float = 10.0) -> list[int]:
        """End Ansible's persistent connections (ControlPersist); the user's processes still running after them."""
        for socket_path in self.root.glob("cp-*"):
            subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "managed"], capture_output=True,
                           check=False, timeout=10)
        deadline = time.monotonic() + timeout
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def close(self) -> None:
        self.end_connections(timeout=0)
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
        if self._user_added:
            for pid in self.processes():  # an ssh session Ansible left behind (ControlPersist ends with the sshd)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["userdel", "--remove", self.user], capture_output=True, check=False)
        self._sudoers.unlink(missing_ok=True)
        if self._privsep_made:
            shutil.rmtree(PRIVSEP_DIR, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SshHost:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
