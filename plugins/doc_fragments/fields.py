# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The documentation of the task and target fields, rendered from the engine's schema when Ansible reads it.

Each field is documented once, in ``plugins/module_utils/_engine/schema.py``; the modules extend these fragments
(``mailops.imap.fields.migrate``, ``mailops.imap.fields.sync_task``, ``mailops.imap.fields.target``) and document
only their own options. The options that hold fields (migrate's ``target`` and ``accounts``, sync_task's
``tasks``) get their type and suboptions here; the module adds their description. The YAML is JSON (a subset).
"""

from __future__ import annotations

import json
import typing as t

from ansible_collections.mailops.imap.plugins.module_utils._engine import schema

Face = schema.Face


def _render(options: dict[str, t.Any]) -> str:
    return json.dumps({"options": options}, indent=2, ensure_ascii=False)


def _migrate() -> dict[str, t.Any]:
    options = schema.option_docs(schema.Task, Face.MIGRATE)
    options["target"] = {"type": "dict", "suboptions": schema.option_docs(schema.Target, Face.TARGET, "target.")}
    options["accounts"] = {"type": "list", "elements": "dict", "suboptions": schema.option_docs(schema.Task, Face.ACCOUNT)}
    return options


def _sync_task() -> dict[str, t.Any]:
    options = schema.option_docs(schema.Task, Face.TASK)
    options["tasks"] = {"type": "list", "elements": "dict", "suboptions": schema.option_docs(schema.Task, Face.TASK_ELEMENT)}
    return options


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """The fields of a mail target (DOCUMENTATION, TARGET), of migrate (MIGRATE) and of sync_task (SYNC_TASK).

    Annotated assignments: ansible-test's yamllint sanity test reads the plain assignments of a doc fragment's class
    as string literals (and fails on a computed one); these are rendered, checked by validate-modules on every module
    that extends them, and by tests/unit/plugins/module_utils/_engine/test_schema.py.
    """

    DOCUMENTATION: str = _render(schema.option_docs(schema.Target, Face.TARGET))
    TARGET: str = DOCUMENTATION
    MIGRATE: str = _render(_migrate())
    SYNC_TASK: str = _render(_sync_task())
