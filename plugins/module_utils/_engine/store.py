# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Definitions and run records on a host.

Layout (both directories relocatable, for tests and unprivileged users)::

    config_dir/targets/NAME.json           mail target, without its secret   0644
    config_dir/tasks/NAME.json             sync task, without its secret     0644
    config_dir/secrets/targets/NAME        the target's master password      0600 (directories 0700)
    config_dir/secrets/tasks/NAME          the task's remote password        0600
    state_dir/tasks/NAME.sqlite            the task's sync state (+ .lock)   0600
    state_dir/runs/NAME/last.json          the last result (SPEC result)     0600
    state_dir/runs/NAME/YYYYmmddTHHMMSSZ.log   human logs of the last runs   0600
    state_dir/runs/NAME/pid                the process of the running run
    state_dir/runs/NAME/current            the log file name of the running run

Every write is atomic (a temporary file in the same directory, fsync, rename). Secrets never go anywhere
else: not in the definitions, not in the logs, not in the results.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import typing as t

from . import config
from .errors import ConfigError

CONFIG_DIR = "/etc/mailops-imap"
STATE_DIR = "/var/lib/mailops-imap"
KINDS = ("targets", "tasks")
KEEP_LOGS = 10


def atomic_write(path: str, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (the file never exists with a wider mode)."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def check_name(kind: str, name: t.Any) -> str:
    if not isinstance(name, str) or not config.TASK_NAME_RE.match(name):
        what = "task" if kind == "tasks" else "target"
        raise ConfigError(
            f"{name!r} is not a valid {what} name; use 1 to 64 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit."
        )
    return name


class Store:
    """Definitions under ``config_dir`` and run records under ``state_dir``."""

    def __init__(self, config_dir: str = CONFIG_DIR, state_dir: str = STATE_DIR) -> None:
        self.config_dir = config_dir
        self.state_dir = state_dir

    # -- paths ------------------------------------------------------------------------------------------
    def definition_path(self, kind: str, name: str) -> str:
        return os.path.join(self.config_dir, kind, check_name(kind, name) + ".json")

    def secret_path(self, kind: str, name: str) -> str:
        return os.path.join(self.config_dir, "secrets", kind, check_name(kind, name))

    def state_path(self, task: str) -> str:
        return os.path.join(self.state_dir, "tasks", check_name("tasks", task) + ".sqlite")

    def runs_dir(self, task: str) -> str:
        return os.path.join(self.state_dir, "runs", check_name("tasks", task))

    # -- definitions --------------------------------------------------------------------------------------
    def read(self, kind: str, name: str) -> tuple[dict[str, t.Any] | None, str | None]:
        """The stored public definition and secret (None where absent)."""
        public: dict[str, t.Any] | None = None
        secret: str | None = None
        try:
            with open(self.definition_path(kind, name), encoding="utf-8") as handle:
                public = json.load(handle)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            raise ConfigError(f"The definition {self.definition_path(kind, name)} cannot be read ({exc}); fix or remove it.") from None
        try:
            with open(self.secret_path(kind, name), encoding="utf-8", newline="") as handle:
                secret = handle.read()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ConfigError(f"The secret of {kind[:-1]} {name!r} cannot be read ({exc.strerror}); run as root.") from None
        return public, secret

    def write(self, kind: str, name: str, public: t.Mapping[str, t.Any], secret: str | None) -> None:
        """Store a definition (secret first, so a definition never exists without its secret)."""
        secret_path = self.secret_path(kind, name)
        for directory, mode in ((self.config_dir, 0o755), (os.path.join(self.config_dir, kind), 0o755),
                                (os.path.join(self.config_dir, "secrets"), 0o700), (os.path.dirname(secret_path), 0o700)):
            os.makedirs(directory, mode=mode, exist_ok=True)
        if secret is not None:
            atomic_write(secret_path, secret.encode("utf-8"), 0o600)
        text = json.dumps(dict(public), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write(self.definition_path(kind, name), text.encode("utf-8"), 0o644)

    def remove(self, kind: str, name: str) -> bool:
        """Remove a definition and its secret; whether anything was there."""
        removed = False
        for path in (self.definition_path(kind, name), self.secret_path(kind, name)):
            try:
                os.unlink(path)
                removed = True
            except FileNotFoundError:
                pass
        return removed

    def names(self, kind: str) -> list[str]:
        try:
            entries = os.listdir(os.path.join(self.config_dir, kind))
        except FileNotFoundError:
            return []
        return sorted(e[:-5] for e in entries if e.endswith(".json") and config.TASK_NAME_RE.match(e[:-5]))

    def load_target(self, name: str) -> config.Target:
        public, secret = self.read("targets", name)
        if public is None:
            raise ConfigError(
                f"The mail target {name!r} is not defined in {self.config_dir}; define it with mailops.imap.mail_target first."
            )
        return config.parse_target(dict(public, master_password=secret or ""))

    def load_task(self, name: str) -> config.Task:
        public, secret = self.read("tasks", name)
        if public is None:
            raise ConfigError(f"The sync task {name!r} is not defined in {self.config_dir}; define it with mailops.imap.sync_task.")
        return config.parse_task(dict(public, remote_password=secret or "", name=name))

    # -- runs ---------------------------------------------------------------------------------------------
    def _runs(self, task: str) -> str:
        path = self.runs_dir(task)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def last_result(self, task: str) -> dict[str, t.Any] | None:
        try:
            with open(os.path.join(self.runs_dir(task), "last.json"), encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def record_result(self, task: str, result: t.Mapping[str, t.Any]) -> None:
        data = json.dumps(dict(result), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write(os.path.join(self._runs(task), "last.json"), data.encode("utf-8"), 0o600)

    def new_log(self, task: str, stamp: str) -> str:
        """The path of a new run log (older logs beyond the newest KEEP_LOGS are removed).

        The log of a run in progress is never removed: skipped runs, one a timer tick, would otherwise
        rotate away the log of the long run they met.
        """
        directory = self._runs(task)
        current = self.current_log(task)
        logs = [path for path in self.logs(task) if path != current]
        keep = KEEP_LOGS - 1 - (1 if current else 0)
        for old in logs[:max(0, len(logs) - keep)]:
            with contextlib.suppress(OSError):
                os.unlink(old)
        path = os.path.join(directory, f"{stamp}.log")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        return path

    def logs(self, task: str) -> list[str]:
        """The run logs of a task, oldest first."""
        try:
            entries = os.listdir(self.runs_dir(task))
        except FileNotFoundError:
            return []
        return [os.path.join(self.runs_dir(task), e) for e in sorted(entries) if e.endswith(".log")]

    def newest_log(self, task: str) -> str | None:
        """The log to show for a task: the running run's, else the one written last (None when there is none).

        Written last, not started last: a run skipped while a long run was active started later than the long
        run but ended long before it.
        """
        current = self.current_log(task)
        if current is not None:
            return current
        stamped = []
        for path in self.logs(task):
            with contextlib.suppress(OSError):
                stamped.append((os.stat(path).st_mtime_ns, path))
        return max(stamped)[1] if stamped else None

    def set_current_log(self, task: str, path: str) -> None:
        """Name the log of the run that holds the task's lock (kept from rotation, shown by ``newest_log``)."""
        atomic_write(os.path.join(self._runs(task), "current"), (os.path.basename(path) + "\n").encode("utf-8"), 0o600)

    def current_log(self, task: str) -> str | None:
        """The log of the run in progress, or None (no run active, or its log is not known)."""
        if self.running_pid(task) is None:
            return None
        try:
            with open(os.path.join(self.runs_dir(task), "current"), encoding="utf-8") as handle:
                name = handle.read().strip()
        except OSError:
            return None
        path = os.path.join(self.runs_dir(task), name)
        if not name.endswith(".log") or os.sep in name or not os.path.isfile(path):
            return None
        return path

    def clear_current_log(self, task: str, path: str) -> None:
        """Forget the current log, if it still names ``path`` (a later run may have named its own already)."""
        current = os.path.join(self.runs_dir(task), "current")
        with contextlib.suppress(OSError):
            with open(current, encoding="utf-8") as handle:
                if handle.read().strip() == os.path.basename(path):
                    os.unlink(current)

    def running_pid(self, task: str) -> int | None:
        """The process running the task now, or None (the task's lock is the truth; the pid file only names it)."""
        lock_path = self.state_path(task) + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
        finally:
            os.close(fd)
        try:
            with open(os.path.join(self.runs_dir(task), "pid"), encoding="ascii") as handle:
                return int(handle.read().strip() or 0) or -1
        except (OSError, ValueError):
            return -1  # running, but the process is not known (for example a run by another tool)

    def write_pid(self, task: str) -> None:
        atomic_write(os.path.join(self._runs(task), "pid"), f"{os.getpid()}\n".encode("ascii"), 0o600)

    def clear_pid(self, task: str) -> None:
        path = os.path.join(self.runs_dir(task), "pid")
        with contextlib.suppress(OSError):
            with open(path, encoding="ascii") as handle:
                if handle.read().strip() == str(os.getpid()):
                    os.unlink(path)
