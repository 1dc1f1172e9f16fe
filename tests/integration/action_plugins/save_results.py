"""Test-only action plugin of tests/integration/playbook.py: ``save_results: {content: TEXT, dest: PATH}`` writes TEXT to
the controller's file PATH (mode 0600) in the ansible-playbook process itself.

It stands in for ``ansible.builtin.copy`` (a stat module and a copy module, each a Python process of its own: about a
second of CPU time per play, more than the module under test) as the last step of every play that playbook.py runs.
"""

from __future__ import annotations

import os
import typing as t

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """Write ``content`` to ``dest`` on the controller; never changed, also in check mode."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("content", "dest"))

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        content = self._task.args["content"]
        dest = self._task.args["dest"]
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(str(content))
        result["changed"] = False
        return result
