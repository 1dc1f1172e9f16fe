# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Definitions and run records on a host.

Layout (both directories relocatable, for tests and unprivileged users)::

    config_dir/targets/NAME.json           mail target, without its secret   0600 (directory 0700)
    config_dir/tasks/NAME.json             sync task, without its secret     0600 (directory 0700)
    config_dir/secrets/targets/NAME        the target's master password      0600 (directories 0700)
    config_dir/secrets/tasks/NAME          the task's secret (:func:`task_secret`) 0600
    state_dir/tasks/NAME.sqlite            the task's sync state (+ .lock)   0600 (directories 0700)
    state_dir/KEY.sqlite                   an inline migrate's state (+ .lock; KEY: config.state_key)
    state_dir/locks/SHA256.lock            an account's run lock             0600
    state_dir/runs/NAME/last.json          the last result (docs/spec.md "The result")
    state_dir/runs/NAME/YYYYmmddTHHMMSSZ.log   human logs of the last runs   0600
    state_dir/runs/NAME/pid                the process of the running run
    state_dir/runs/NAME/current            the log file name of the running run
    state_dir/runs/NAME/.secrets-XXXXXXXX  an imapsync run's password and token files, while it runs (0700)

Every write is atomic (a temporary file in the same directory, fsync, rename). Secrets never go anywhere
else: not in the definitions, not in the logs, not in the results. Definitions say which remote account
lands in which local user: they are readable by their owner only, like the secrets. Directories are created
with these modes whatever the umask, and refused when another user owns them or can write them
(:mod:`files`); a failure under state_dir is a ``state_error`` naming the path and the fix.

:class:`Store` is the one place that knows this layout: every path above comes from one of its methods, every
definition and secret is read by :meth:`Store.read_public` and :meth:`Store.read_secret`, and every run (either
engine, a defined task or an inline migrate) takes its locks from :meth:`Store.run_locks`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import typing as t

from . import config, files, schema
from .errors import ConfigError

CONFIG_DIR = "/etc/mailops-imap"
STATE_DIR = "/var/lib/mailops-imap"
KINDS = ("targets", "tasks")
KEEP_LOGS = 10
DEFINITION_MODE = 0o600
PRIVATE_PREFIX = ".secrets-"  # the private directory of one run, in its task's run records
CONFIG_DIR_MODE = 0o755  # config_dir itself: what it holds is private (0700 directories)


def atomic_write(path: str, data: bytes, mode: int, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (the file never exists with a wider mode); ``durable``: on
    the disk (fsync of the file and its directory) before this returns, not only for readers."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if not durable:
        return
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# A task's secret fields (schema.secret_fields: the no_log ones): its secret file holds the one of them that its
# remote_auth uses (secret_field); the definition file holds none of them.
TASK_SECRETS = schema.secret_fields(config.Task)


def secret_field(remote_auth: t.Any) -> str:
    """The field of a task with ``remote_auth`` that its secret file holds: the secret among the fields of that
    remote_auth (schema.AUTH_FIELDS: the client secret of a client-credentials grant), else the remote password (which
    is "" for a token source that has no secret: a token file or command, a key file, a certificate are stored as
    paths)."""
    names = schema.AUTH_FIELDS.get(str(remote_auth or "password"), ())
    return next((name for name in names if name in TASK_SECRETS), "remote_password")


def task_secret(task: config.Task) -> str:
    """What the secret file of ``task`` holds: the value of its :func:`secret_field` ("" when it has none)."""
    return getattr(task, secret_field(task.remote_auth)) or ""


def check_name(kind: str, name: t.Any) -> str:
    if not isinstance(name, str) or not config.TASK_NAME_RE.match(name):
        what = "task" if kind == "tasks" else "target"
        raise ConfigError(
            f"{name!r} is not a valid {what} name; use 1 to 64 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit."
        )
    return name


@dataclasses.dataclass(frozen=True)
class Stored:
    """A definition file as found under config_dir."""

    path: str
    exists: bool
    data: dict[str, t.Any] | None = None  # the JSON object; None when absent or not a JSON object
    problem: str | None = None  # why an existing file holds no definition (a sentence naming the file and the fix)

    def definition(self) -> dict[str, t.Any] | None:
        """The definition (None when absent); ConfigError when the file holds none."""
        if self.problem is not None:
            raise ConfigError(self.problem)
        return self.data


class Store:
    """Definitions under ``config_dir`` and run records under ``state_dir``."""

    def __init__(self, config_dir: str = CONFIG_DIR, state_dir: str = STATE_DIR) -> None:
        self.config_dir = config_dir
        self.state_dir = state_dir

    # -- paths ------------------------------------------------------------------------------------------
    def definition_path(self, kind: str, name: str) -> str:
        return os.path.join(self.definitions_dir(kind), check_name(kind, name) + ".json")

    def secret_path(self, kind: str, name: str) -> str:
        return os.path.join(self.secrets_dir(kind), check_name(kind, name))

    def state_path(self, task: str) -> str:
        return os.path.join(self.state_dir, "tasks", check_name("tasks", task) + ".sqlite")

    def runs_dir(self, task: str) -> str:
        return os.path.join(self.state_dir, "runs", check_name("tasks", task))

    def definitions_dir(self, kind: str) -> str:
        return os.path.join(self.config_dir, kind)

    def secrets_dir(self, kind: str) -> str:
        return os.path.join(self.config_dir, "secrets", kind)

    def lock_path(self, task: str) -> str:
        """The task's lock (held by the run of the task, whatever its engine)."""
        return self.state_path(task) + ".lock"

    def inline_state_path(self, task: config.Task, target: config.Target) -> str:
        """The state of an inline migrate of ``task`` (no defined task: the key of the account and its options)."""
        return os.path.join(self.state_dir, config.state_key(task, target) + ".sqlite")

    def run_locks(self, name: str, account: t.Any, create: bool) -> files.RunLocks:
        """The locks a run of the task ``name`` holds: the task's (:meth:`lock_path`) and its account's (``account``:
        anything with ``remote_host``, ``remote_user`` and ``local_user``). Without ``create`` (check mode) nothing
        is created."""
        return files.RunLocks(self.state_path(name), self.state_dir, account, create)

    # -- definitions --------------------------------------------------------------------------------------
    def _config_dirs(self, *parts: str, create: bool = False) -> str:
        """config_dir/parts..., each level checked (and, with ``create``, created); ConfigError when unsafe."""
        path = self.config_dir
        try:
            for level, part in enumerate(("",) + parts):
                path = os.path.join(path, part) if part else path
                if create:
                    files.make_dirs(path, CONFIG_DIR_MODE if level == 0 else 0o700, tighten=level > 0)
                elif os.path.isdir(path):
                    files.check_dir(path)
        except files.Unsafe as exc:
            raise ConfigError(f"{exc} (config_dir {self.config_dir})") from None
        return path

    @staticmethod
    def _read_file(path: str) -> str:
        """The text of a file in our directories (never through a symbolic link)."""
        with os.fdopen(files.open_file(path, os.O_RDONLY), encoding="utf-8", newline="") as handle:
            return handle.read()

    def read_public(self, kind: str, name: str) -> Stored:
        """The stored public definition ``kind``/``name`` (the one reader of definition files); ConfigError when the
        file or its directory cannot be used. A file that holds no JSON object is returned with its ``problem``."""
        self._config_dirs(kind)
        path = self.definition_path(kind, name)
        try:
            text = self._read_file(path)
        except FileNotFoundError:
            return Stored(path, exists=False)
        except PermissionError:
            raise ConfigError(f"The definition {path} cannot be read (permission denied); run as root (become: true) "
                              "or choose a config_dir this user owns.") from None
        except (OSError, ValueError, files.Unsafe) as exc:
            raise ConfigError(f"The definition {path} cannot be read ({exc}); fix or remove it.") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            return Stored(path, exists=True, problem=f"The definition {path} cannot be read ({exc}); fix or remove it.")
        if not isinstance(data, dict):
            return Stored(path, exists=True, problem=f"The definition {path} is not a JSON object; fix or remove it.")
        return Stored(path, exists=True, data=data)

    def read_secret(self, kind: str, name: str) -> tuple[bool, str | None]:
        """Whether the secret of ``kind``/``name`` exists, and its text (None when it is not UTF-8); ConfigError
        when it or its directory cannot be used."""
        self._config_dirs("secrets", kind)
        path = self.secret_path(kind, name)
        try:
            with os.fdopen(files.open_file(path, os.O_RDONLY), "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return False, None
        except files.Unsafe as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(f"The secret of {kind[:-1]} {name!r} cannot be read ({exc.strerror}); run as root.") from None
        try:
            return True, raw.decode("utf-8")
        except UnicodeDecodeError:
            return True, None

    def read(self, kind: str, name: str) -> tuple[dict[str, t.Any] | None, str | None]:
        """The stored public definition and secret (None where absent); ConfigError when either cannot be read."""
        public = self.read_public(kind, name).definition()
        secret = self.read_secret(kind, name)[1]
        return public, secret

    def write(self, kind: str, name: str, public: t.Mapping[str, t.Any], secret: str | None) -> None:
        """Store a definition (secret first, so a definition never exists without its secret)."""
        self._config_dirs(kind, create=True)
        self._config_dirs("secrets", kind, create=True)
        if secret is not None:
            atomic_write(self.secret_path(kind, name), secret.encode("utf-8"), 0o600)
        text = json.dumps(dict(public), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write(self.definition_path(kind, name), text.encode("utf-8"), DEFINITION_MODE)

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
        """The names of the stored definitions of ``kind``."""
        try:
            entries = os.listdir(self.definitions_dir(kind))
        except FileNotFoundError:
            return []
        return sorted(e[:-5] for e in entries if e.endswith(".json") and config.TASK_NAME_RE.match(e[:-5]))

    def secret_names(self, kind: str) -> list[str]:
        """The names with a stored secret of ``kind`` (with a definition or not)."""
        try:
            entries = os.listdir(self.secrets_dir(kind))
        except FileNotFoundError:
            return []
        return sorted(entry for entry in entries if config.TASK_NAME_RE.fullmatch(entry))

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
        # A hand-edited definition holding a secret key gets it replaced (or removed) by the secret file's.
        data = {key: value for key, value in public.items() if key not in TASK_SECRETS}
        data[secret_field(public.get("remote_auth"))] = secret or ""
        return config.parse_task(dict(data, name=name), declared=False)

    # -- runs ---------------------------------------------------------------------------------------------
    def run_records(self, task: str) -> str:
        """The task's run records directory, created (0700) and checked; SyncError (state_error) when unusable."""
        path = self.runs_dir(task)
        try:
            return files.secure_path(self.state_dir, "runs", check_name("tasks", task))
        except (OSError, files.Unsafe) as exc:
            raise files.state_error(path, exc) from None

    def new_private_dir(self, task: str) -> str:
        """A new private directory (0700) in the task's run records, for files that must not outlive one run (the
        password files of imapsync); those that a run killed outright (SIGKILL, power cut) left are removed first.
        SyncError (state_error) when the run records cannot be used, OSError when the directory cannot be made."""
        runs_dir = self.run_records(task)
        with contextlib.suppress(OSError):
            for entry in os.listdir(runs_dir):
                if entry.startswith(PRIVATE_PREFIX):
                    shutil.rmtree(os.path.join(runs_dir, entry), ignore_errors=True)
        return tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=runs_dir)

    def _write_record(self, task: str, name: str, data: bytes) -> None:
        path = os.path.join(self.run_records(task), name)
        try:
            atomic_write(path, data, 0o600)
        except OSError as exc:
            raise files.state_error(path, exc) from None

    def _read_record(self, task: str, name: str) -> str | None:
        try:
            return self._read_file(os.path.join(self.runs_dir(task), name))
        except (OSError, ValueError, files.Unsafe):
            return None

    def last_result(self, task: str) -> dict[str, t.Any] | None:
        text = self._read_record(task, "last.json")
        try:
            return json.loads(text) if text is not None else None
        except ValueError:
            return None

    def record_result(self, task: str, result: t.Mapping[str, t.Any]) -> None:
        data = json.dumps(dict(result), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        self._write_record(task, "last.json", data.encode("utf-8"))

    def new_log(self, task: str, stamp: str) -> str:
        """The path of a new run log (older logs beyond the newest KEEP_LOGS are removed).

        The log of a run in progress is never removed: skipped runs, one a timer tick, would otherwise
        rotate away the log of the long run they met.
        """
        directory = self.run_records(task)
        current = self.current_log(task)
        logs = [path for path in self.logs(task) if path != current]
        keep = KEEP_LOGS - 1 - (1 if current else 0)
        for old in logs[:max(0, len(logs) - keep)]:
            with contextlib.suppress(OSError):
                os.unlink(old)
        path = os.path.join(directory, f"{stamp}.log")
        try:
            os.close(files.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
        except (OSError, files.Unsafe) as exc:
            raise files.state_error(path, exc) from None
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
        self._write_record(task, "current", (os.path.basename(path) + "\n").encode("utf-8"))

    def current_log(self, task: str) -> str | None:
        """The log of the run in progress, or None (no run active, or its log is not known)."""
        if self.running_pid(task) is None:
            return None
        name = (self._read_record(task, "current") or "").strip()
        path = os.path.join(self.runs_dir(task), name)
        if not name.endswith(".log") or os.sep in name or not os.path.isfile(path):
            return None
        return path

    def clear_current_log(self, task: str, path: str) -> None:
        """Forget the current log, if it still names ``path`` (a later run may have named its own already)."""
        if (self._read_record(task, "current") or "").strip() == os.path.basename(path):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.runs_dir(task), "current"))

    def running_pid(self, task: str) -> int | None:
        """The process running the task now, or None (the task's lock is the truth; the pid file only names it)."""
        if not files.lock_held(self.lock_path(task)):
            return None
        try:
            return int((self._read_record(task, "pid") or "").strip() or 0) or -1
        except ValueError:
            return -1  # running, but the process is not known (for example a run by another tool)

    def write_pid(self, task: str) -> None:
        self._write_record(task, "pid", f"{os.getpid()}\n".encode("ascii"))

    def clear_pid(self, task: str) -> None:
        if (self._read_record(task, "pid") or "").strip() == str(os.getpid()):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.runs_dir(task), "pid"))
