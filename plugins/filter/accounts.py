# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the accounts of a bulk migration, for playbooks/migrate.yml: which keys of the fields given once for
all accounts are not task fields, and which accounts are listed twice. The rules are the ones of
mailops.imap.migrate (plugins/module_utils/_accounts_csv.py), so the playbook names no task field."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.mailops.imap.plugins.module_utils import _accounts_csv


def account_fields_problem(value: t.Any, name: str = "migrate_defaults") -> str:
    """'' when ``value`` is a dictionary of task fields, else the sentence that says what is wrong."""
    return _accounts_csv.fields_problem(value, name)


def repeated_accounts(given: t.Any, defaults: t.Any = None) -> list[str]:
    """``LABEL repeats LABEL`` for every account of ``given`` (``{accounts: [...], labels: [...]}``, as the lookup
    mailops.imap.accounts_csv returns) listed more than once, once ``defaults`` applied."""
    if not isinstance(given, t.Mapping) or not isinstance(given.get("accounts"), t.Sequence) or not isinstance(given.get("labels"), t.Sequence):
        raise AnsibleFilterError("repeated_accounts: give a dictionary of accounts and labels, as the lookup mailops.imap.accounts_csv returns.")
    return _accounts_csv.repeated_accounts(given["accounts"], given["labels"], defaults)


class FilterModule:
    """The filters of mailops.imap for the accounts of a bulk migration."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"account_fields_problem": account_fields_problem, "repeated_accounts": repeated_accounts}
