# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specifications shared by the modules and their action plugins.

One spec per module, used twice: by ``AnsibleModule`` on the managed host and by the action plugin
on the controller (``ArgumentSpecValidator``), so both accept and refuse exactly the same input.
Choices and defaults come from the engine's :mod:`config`, the single source of truth; defaults that
depend on another field (``remote_port``: 143, or 993 with ``ssl``) stay ``None`` here and are
decided by :func:`config.parse_task` / :func:`config.parse_target`.

No Ansible imports: plain dicts only.
"""

from __future__ import annotations

import typing as t

from ansible_collections.mailops.imap.plugins.module_utils._engine import config

DEFAULT_CONFIG_DIR = "/etc/mailops-imap"
DEFAULT_STATE_DIR = "/var/lib/mailops-imap"

# The task fields an inline migrate accepts (SPEC "Sync task"). Not here: name, target (the
# migrate module takes an inline target instead), schedule, interval_minutes, engine, enabled.
MIGRATE_TASK_OPTIONS = (
    "local_user", "remote_user", "remote_password", "remote_host", "remote_security", "remote_port",
    "validate_certs", "ca_file", "folders", "exclude", "delete_remote", "delete_remote_days",
    "special_use_mapping", "sieve", "delivery",
)


def _default(cls: type, name: str) -> t.Any:
    return cls.__dataclass_fields__[name].default  # type: ignore[attr-defined]


def target_options() -> dict[str, dict[str, t.Any]]:
    """The options of a mail target (SPEC "Mail target"); ``port`` defaults by ``security``."""
    tgt = config.Target
    return {
        "name": {"type": "str", "default": _default(tgt, "name")},
        "host": {"type": "str", "default": _default(tgt, "host")},
        "port": {"type": "int"},
        "security": {"type": "str", "default": _default(tgt, "security"), "choices": list(config.SECURITY_CHOICES)},
        "validate_certs": {"type": "bool", "default": _default(tgt, "validate_certs")},
        "ca_file": {"type": "path"},
        "master_user": {"type": "str", "default": _default(tgt, "master_user")},
        "master_password": {"type": "str", "no_log": True},
        "master_separator": {"type": "str", "default": _default(tgt, "master_separator")},
        "lmtp_host": {"type": "str", "default": _default(tgt, "lmtp_host")},
        "lmtp_port": {"type": "int", "default": _default(tgt, "lmtp_port")},
    }


def task_options() -> dict[str, dict[str, t.Any]]:
    """The task options of an inline migration (SPEC "Sync task"); ``remote_port`` defaults by security."""
    task = config.Task
    return {
        "local_user": {"type": "str", "required": True},
        "remote_user": {"type": "str", "required": True},
        "remote_password": {"type": "str", "required": True, "no_log": True},
        "remote_host": {"type": "str", "required": True},
        "remote_security": {"type": "str", "default": _default(task, "remote_security"), "choices": list(config.SECURITY_CHOICES)},
        "remote_port": {"type": "int"},
        "validate_certs": {"type": "bool", "default": _default(task, "validate_certs")},
        "ca_file": {"type": "path"},
        "folders": {"type": "str", "default": _default(task, "folders"), "choices": list(config.FOLDERS_CHOICES)},
        "exclude": {"type": "list", "elements": "str", "default": []},
        "delete_remote": {"type": "str", "default": _default(task, "delete_remote"), "choices": list(config.DELETE_CHOICES)},
        "delete_remote_days": {"type": "int"},
        "special_use_mapping": {"type": "bool", "default": _default(task, "special_use_mapping")},
        "sieve": {"type": "bool", "default": _default(task, "sieve")},
        "delivery": {"type": "str", "default": _default(task, "delivery"), "choices": list(config.DELIVERY_CHOICES)},
    }


def common_options() -> dict[str, dict[str, t.Any]]:
    """Options every module takes (SPEC "Modules")."""
    return {
        "config_dir": {"type": "path", "default": DEFAULT_CONFIG_DIR},
        "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
    }


def migrate_argument_spec() -> dict[str, dict[str, t.Any]]:
    """The argument spec of ``mailops.imap.migrate`` (a fresh copy on every call)."""
    spec = task_options()
    spec["target"] = {"type": "dict", "options": target_options()}
    spec.update(common_options())
    return spec


def parse_migrate(params: t.Mapping[str, t.Any]) -> tuple[config.Task, config.Target]:
    """The semantic checks after the argument spec: build the inline task and its target.

    ``params`` are the validated module parameters. Raises :class:`errors.ConfigError` with a sentence.
    """
    target = config.parse_target(params.get("target"))
    data = {name: params.get(name) for name in MIGRATE_TASK_OPTIONS}
    data["target"] = target.name
    task = config.parse_task(data)
    return task, target
