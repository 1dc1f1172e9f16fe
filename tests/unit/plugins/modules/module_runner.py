# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running mail_target / sync_task in a unit test: exit_json and fail_json raise, warnings and logins recorded."""

from __future__ import annotations

import typing as t
from unittest import mock

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.imap.plugins.module_utils import _requirements
from ansible_collections.mailops.imap.plugins.modules import sync_task


class Exit(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs)
        self.kwargs = kwargs


class Fail(Exit):
    pass


class Ran(t.NamedTuple):
    result: dict
    failed: bool
    warnings: list
    logins: mock.MagicMock


def run(module, args, check_mode=False, diff=False, logins=()):
    warnings: list = []

    def exit_json(self, **kwargs):
        raise Exit(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs.pop("exception", None)
        raise Fail(dict(kwargs, msg=msg, failed=True))

    check_logins = mock.MagicMock(return_value=list(logins))
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(args), \
            mock.patch.object(basic.AnsibleModule, "exit_json", exit_json), \
            mock.patch.object(basic.AnsibleModule, "fail_json", fail_json), \
            mock.patch.object(basic.AnsibleModule, "warn", lambda self, text, **kw: warnings.append(text)), \
            mock.patch.object(sync_task.runner, "check_logins", check_logins), \
            mock.patch.object(_requirements.sync, "HAS_IMAPCLIENT", True):
        with pytest.raises(Exit) as exc_info:
            module.main()
    return Ran(exc_info.value.kwargs, isinstance(exc_info.value, Fail), warnings, check_logins)
