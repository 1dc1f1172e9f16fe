# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Task and target definitions: the names the engine and the modules use, and the state key.

The fields, their defaults, validators and documentation are declared once, in :mod:`schema`; this module
re-exports them under their long-standing names (``config.Task``, ``config.parse_task``, ``config.*_CHOICES``...).
The hazard check of exclude patterns is :mod:`hazard`.

Pure Python, no Ansible imports: the same code runs in modules (through AnsiballZ) and on hosts
(``imapsyncctl``).
"""

from __future__ import annotations

import hashlib

from .errors import ConfigError
from .hazard import exclude_hazard
from .schema import (
    DELETE_CHOICES,
    DELIVERY_CHOICES,
    ENGINE_CHOICES,
    FOLDERS_CHOICES,
    SCHEDULE_CHOICES,
    SECURITY_CHOICES,
    TARGET_FIELDS,
    TASK_FIELDS,
    TASK_NAME_RE,
    Target,
    Task,
    check_host,
    parse_target,
    parse_task,
)

__all__ = [
    "ConfigError", "DELETE_CHOICES", "DELIVERY_CHOICES", "ENGINE_CHOICES", "FOLDERS_CHOICES", "SCHEDULE_CHOICES", "SECURITY_CHOICES",
    "TARGET_FIELDS", "TASK_FIELDS", "TASK_NAME_RE", "Target", "Task", "check_host", "exclude_hazard", "parse_target",
    "parse_task", "state_key",
]


def state_key(task: Task, target: Target) -> str:
    """The key of an inline migration's state: remote host, port, user, target and local user.

    Repeating the same inline migration finds the same state, so it is incremental.
    """
    ident = "\0".join((task.remote_host.lower(), str(task.remote_port), task.remote_user, target.name, task.local_user))
    return "inline-" + hashlib.sha256(ident.encode("utf-8")).hexdigest()[:32]
