# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a module that runs the engine on the host needs there, refused with one sentence each: a Python the engine
supports (plugins/module_utils/_engine/pyversion.py), and imapclient, with the way to a virtual environment that has
it (the role's ``tasks_from: venv``). migrate, migration_report and sync_task (``validate: true``) share them."""

from __future__ import annotations

import typing as t

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.mailops.imap.plugins.module_utils._engine import pyversion, sync


class Failing(t.Protocol):
    """The part of AnsibleModule used here."""

    def fail_json(self, msg: str, **kwargs: t.Any) -> t.NoReturn: ...


def refuse_unsupported_python(module: Failing, why: str = "") -> None:
    """Fail when the host's Python is older than the engine supports (``why``: what needs it, a sentence)."""
    too_old = pyversion.unsupported_python()
    if too_old is not None:
        module.fail_json(msg=f"{too_old}{why}", changed=False)


def require_imapclient(module: Failing, why: str = "") -> None:
    """Fail when imapclient cannot be imported on the host, saying how to get a Python that has it."""
    if not sync.HAS_IMAPCLIENT:
        module.fail_json(msg=f"{missing_required_lib('imapclient')}{why} {pyversion.ENVIRONMENT_HINT}",
                         exception=sync.IMAPCLIENT_IMPORT_ERROR, changed=False)
