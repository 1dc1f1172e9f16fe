# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specifications of ``mailops.imap.mail_target`` and ``mailops.imap.sync_task``.

Built from the engine's :mod:`schema` (a fresh copy on every call), so the modules accept the same
fields, choices and defaults as ``migrate``. With ``state: absent`` only ``name`` (and
``config_dir``) matter: the fields a definition needs are required through ``required_if`` instead
of ``required``. The semantic checks (ports, hosts, names, regexes, combinations) are
:func:`config.parse_target` / :func:`config.parse_task`.

No Ansible imports: plain dicts only.
"""

from __future__ import annotations

import typing as t

from ansible_collections.mailops.imap.plugins.module_utils._argspec import common_options
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, schema

STATE_CHOICES = ["present", "absent"]

# Fields of a definition that are required with state: present only.
TARGET_REQUIRED_WHEN_PRESENT = list(schema.needed(schema.Target))
TASK_REQUIRED_WHEN_PRESENT = list(schema.needed(schema.Task))


def mail_target_argument_spec() -> dict[str, dict[str, t.Any]]:
    """The argument spec of ``mailops.imap.mail_target``."""
    spec = schema.argument_spec(schema.Target, schema.Face.TARGET)
    spec["state"] = {"type": "str", "default": "present", "choices": list(STATE_CHOICES)}
    spec.update(common_options())
    return spec


def mail_target_required_if() -> list[list[t.Any]]:
    """The ``required_if`` of ``mailops.imap.mail_target``: the master password with state: present."""
    return [["state", "present", list(TARGET_REQUIRED_WHEN_PRESENT)]]


def sync_task_argument_spec() -> dict[str, dict[str, t.Any]]:
    """The argument spec of one task by name (``name`` required): the options of ``mailops.imap.sync_task``
    without ``tasks`` and ``purge``."""
    spec = schema.argument_spec(schema.Task, schema.Face.TASK)
    spec["name"]["required"] = True
    spec.update({
        "state": {"type": "str", "default": "present", "choices": list(STATE_CHOICES)},
        "validate": {"type": "bool", "default": False},
    })
    spec.update(common_options())
    return spec


def sync_task_required_if() -> list[list[t.Any]]:
    """The ``required_if`` of ``mailops.imap.sync_task``: the account fields with state: present."""
    return [["state", "present", list(TASK_REQUIRED_WHEN_PRESENT)]]


# --- the module: one task (name) or many (tasks) -----------------------------------------------------------

# The fields of one element of ``tasks`` (bulk mode): every task field, with neither defaults nor ``required``
# (but ``name``): a field an element leaves out takes the value of the module call's option of the same name,
# or its default, like the accounts of ``migrate``. The required ones are checked after that merge.
BULK_TASK_FIELDS = tuple(name for name in config.TASK_FIELDS if name != "name")
# Options that only make sense for one task (name) and not with tasks.
SINGLE_ONLY = ("name", "state")


def sync_task_element_options() -> dict[str, dict[str, t.Any]]:
    """The options of one element of ``tasks`` (a fresh copy on every call): the schema's task element face."""
    return schema.argument_spec(schema.Task, schema.Face.TASK_ELEMENT)


def sync_task_module_argument_spec() -> dict[str, dict[str, t.Any]]:
    """The argument spec of the ``mailops.imap.sync_task`` module: one task by ``name``, or many in ``tasks``.

    :func:`sync_task_argument_spec` (one task) with ``name`` optional, plus ``tasks`` (each element a task,
    its missing fields taken from the module call's options) and ``purge``. The fields a task needs are
    checked by :func:`missing_fields` after the merge, not by ``required_if``, since in bulk mode they may
    come from the elements.
    """
    spec = sync_task_argument_spec()
    spec["name"] = {"type": "str"}
    spec["tasks"] = {"type": "list", "elements": "dict", "options": sync_task_element_options()}
    spec["purge"] = {"type": "bool", "default": False}
    return spec


def sync_task_mutually_exclusive() -> list[list[str]]:
    """``name`` (one task) and ``tasks`` (many) exclude each other (checked before defaults apply)."""
    return [["name", "tasks"]]


def sync_task_required_one_of() -> list[list[str]]:
    return [["name", "tasks"]]


def task_defaults(params: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The task fields of the module call that apply to every element of ``tasks`` which leaves them out."""
    return {name: params.get(name) for name in BULK_TASK_FIELDS if params.get(name) is not None}


def merge_task(defaults: t.Mapping[str, t.Any], element: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """One element of ``tasks`` with the module call's values where it gives none."""
    merged = dict(defaults)
    merged.update({name: value for name, value in element.items() if value is not None})
    return merged


def missing_fields(data: t.Mapping[str, t.Any]) -> list[str]:
    """The fields a task needs (with state: present) that ``data`` lacks (an empty value is refused later, by
    :func:`config.parse_task`, with a sentence of its own)."""
    return [name for name in TASK_REQUIRED_WHEN_PRESENT if data.get(name) is None]
