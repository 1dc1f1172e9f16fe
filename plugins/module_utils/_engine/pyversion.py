# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Pythons the sync engine runs on, and the one refusal of any other (README.md "Requirements").

Every entry point that runs the engine (imapsyncctl's ``main``, the migrate module, the validation of
sync_task) asks :func:`unsupported_python` first, before anything connects: on an older Python the engine
would fail later with a misleading error (Python 3.8 with imapclient 4.1: "The remote server refused a command
while connecting"). The engine's modules stay importable on Python 3.8 (no ``list[str]`` evaluated at import
time) so that this sentence, not a traceback, is what such a host shows; tests/integration/test_managed_host.py
runs it there.
"""

from __future__ import annotations

import sys
import typing as t

# The oldest Python the engine runs on, and the newest it is tested on (tests/integration/test_managed_host.py).
MINIMUM_PYTHON = (3, 9)
NEWEST_TESTED_PYTHON = (3, 13)

# What to do when the interpreter running a module lacks imapclient (appended to missing_required_lib's sentence).
ENVIRONMENT_HINT = ("The role mailops.imap.imapsync (tasks_from: venv) builds a virtual environment with it: run the module "
                    "with ansible_python_interpreter set to that environment's bin/python (playbooks/migrate.yml does).")


def unsupported_python(version: t.Sequence[int] | None = None, executable: str | None = None) -> str | None:
    """A sentence naming the interpreter, its version and the fix when it is older than :data:`MINIMUM_PYTHON`,
    else None (``version`` and ``executable`` default to the running interpreter's)."""
    version = sys.version_info[:3] if version is None else version
    executable = sys.executable if executable is None else executable
    if tuple(version[:2]) >= MINIMUM_PYTHON:
        return None
    running = ".".join(str(part) for part in version[:3])
    minimum = ".".join(str(part) for part in MINIMUM_PYTHON)
    return (f"The sync engine needs Python {minimum} or later and {executable or 'this interpreter'} is Python {running}: "
            f"run it in the virtual environment that the mailops.imap.imapsync role builds with a newer Python "
            f"(imapsync_python), as playbooks/migrate.yml does for the migrate module (ansible_python_interpreter).")


__all__ = ["ENVIRONMENT_HINT", "MINIMUM_PYTHON", "NEWEST_TESTED_PYTHON", "unsupported_python"]
