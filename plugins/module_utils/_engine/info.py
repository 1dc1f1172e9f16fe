# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is known about defined tasks, without a secret (``sync_task_info``, ``imapsyncctl status``).

Pure Python, no Ansible imports. Reads only the public definition files, never a secret file, so it works
for a user who may read ``config_dir`` but not ``config_dir/secrets``; writes nothing.
"""

from __future__ import annotations

import typing as t

from . import timers
from .schema import Target, Task, secret_fields
from .errors import ConfigError
from .store import Store, check_name

# Keys that must never leave the host, whatever a hand-edited definition file holds.
SECRET_KEYS = tuple(dict.fromkeys(secret_fields(Task) + secret_fields(Target)))

NextRuns = t.Callable[[t.List[str]], t.Dict[str, t.Optional[str]]]  # typing.List: importable on Python 3.8 (pyversion.py)


def read_public(store: Store, kind: str, name: str) -> dict[str, t.Any] | None:
    """The stored public definition (None when not defined), without any secret key; ConfigError when unreadable."""
    data = store.read_public(kind, name).definition()
    if data is None:
        return None
    for key in SECRET_KEYS:
        data.pop(key, None)
    return data


def _running(store: Store, name: str) -> tuple[bool, int | None]:
    try:
        pid = store.running_pid(name)
    except PermissionError:
        raise ConfigError(
            f"Whether task {name!r} is running cannot be read in {store.state_dir} (permission denied); run as root (become: true)."
        ) from None
    except OSError as exc:
        raise ConfigError(f"Whether task {name!r} is running cannot be read in {store.state_dir} ({exc.strerror}); check state_dir.") from None
    if pid is None:
        return False, None
    return True, (pid if pid > 0 else None)


def task_info(store: Store, name: str, next_run: str | None = None) -> dict[str, t.Any]:
    """One task: definition, its target, running or not, last result and the given next run.

    Raises ConfigError when the task is not defined or cannot be read.
    """
    check_name("tasks", name)
    definition = read_public(store, "tasks", name)
    if definition is None:
        raise ConfigError(
            f"The sync task {name!r} is not defined in {store.config_dir}; define it with mailops.imap.sync_task, "
            "or leave name out to list the defined tasks."
        )
    definition["name"] = name
    target_name = definition.get("target") or "default"
    target = read_public(store, "targets", target_name) if isinstance(target_name, str) and _valid(target_name) else None
    running, pid = _running(store, name)
    return {
        "name": name,
        "definition": definition,
        "target": target,
        "running": running,
        "pid": pid,
        "last_result": store.last_result(name),
        "next_run": next_run,
    }


def _valid(name: str) -> bool:
    try:
        check_name("targets", name)
    except ConfigError:
        return False
    return True


def tasks_info(store: Store, name: str | None = None, next_runs: NextRuns | None = None) -> list[dict[str, t.Any]]:
    """Every defined task (sorted by name), or only ``name``; ``next_runs`` defaults to asking systemd."""
    names = [name] if name is not None else store.names("tasks")
    if name is not None:
        check_name("tasks", name)
    infos = [task_info(store, each) for each in names]
    when = (next_runs or timers.next_runs)([info["name"] for info in infos]) if infos else {}
    for info in infos:
        info["next_run"] = when.get(info["name"])
    return infos
