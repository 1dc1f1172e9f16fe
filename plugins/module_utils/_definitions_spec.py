# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specifications of ``mailops.imap.mail_target`` and ``mailops.imap.sync_task``.

Built from the shared options of :mod:`_argspec` (a fresh copy on every call), so the modules accept
the same fields, choices and defaults as ``migrate``. With ``state: absent`` only ``name`` (and
``config_dir``) matter: the fields a definition needs are required through ``required_if`` instead
of ``required``. The semantic checks (ports, hosts, names, regexes, combinations) are
:func:`config.parse_target` / :func:`config.parse_task`.

No Ansible imports: plain dicts only.
"""

from __future__ import annotations

import typing as t

from ansible_collections.mailops.imap.plugins.module_utils._argspec import common_options, target_options, task_options
from ansible_collections.mailops.imap.plugins.module_utils._engine import config

STATE_CHOICES = ["present", "absent"]

# Fields of a definition that are required with state: present only.
TARGET_REQUIRED_WHEN_PRESENT = ["master_password"]
TASK_REQUIRED_WHEN_PRESENT = ["local_user", "remote_user", "remote_password", "remote_host"]


def _default(cls: type, name: str) -> t.Any:
    return cls.__dataclass_fields__[name].default  # type: ignore[attr-defined]


def mail_target_argument_spec() -> dict[str, dict[str, t.Any]]:
    """The argument spec of ``mailops.imap.mail_target``."""
    spec = target_options()
    spec["state"] = {"type": "str", "default": "present", "choices": list(STATE_CHOICES)}
    spec.update(common_options())
    return spec


def mail_target_required_if() -> list[list[t.Any]]:
    """The ``required_if`` of ``mailops.imap.mail_target``: the master password with state: present."""
    return [["state", "present", list(TARGET_REQUIRED_WHEN_PRESENT)]]


def sync_task_argument_spec() -> dict[str, dict[str, t.Any]]:
    """The argument spec of ``mailops.imap.sync_task``."""
    task = config.Task
    spec: dict[str, dict[str, t.Any]] = {
        "name": {"type": "str", "required": True},
        "target": {"type": "str", "default": _default(task, "target")},
    }
    for name, option in task_options().items():
        option.pop("required", None)
        spec[name] = option
    spec.update({
        "schedule": {"type": "str", "default": _default(task, "schedule"), "choices": list(config.SCHEDULE_CHOICES)},
        "interval_minutes": {"type": "int"},
        "engine": {"type": "str", "default": _default(task, "engine"), "choices": list(config.ENGINE_CHOICES)},
        "enabled": {"type": "bool", "default": _default(task, "enabled")},
        "state": {"type": "str", "default": "present", "choices": list(STATE_CHOICES)},
        "validate": {"type": "bool", "default": False},
    })
    spec.update(common_options())
    return spec


def sync_task_required_if() -> list[list[t.Any]]:
    """The ``required_if`` of ``mailops.imap.sync_task``: the account fields with state: present."""
    return [["state", "present", list(TASK_REQUIRED_WHEN_PRESENT)]]
