# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup mailops.imap.accounts_csv: the accounts of an accounts CSV file on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
name: accounts_csv
author:
  - mailops.imap maintainers (@mailops)
short_description: Read an accounts CSV file on the controller
version_added: 0.1.0
description:
  - Reads a CSV file of accounts on the controller, with the rules of the O(mailops.imap.migrate#module:accounts_file)
    option of M(mailops.imap.migrate), and returns the accounts and the line each one starts on.
  - The file may be encrypted with C(ansible-vault); it is decrypted in memory, no decrypted copy is written.
  - An absolute path is taken as given. A relative path is searched in the C(files/) directory of the role or
    playbook, then in its directory (as the C(src) of M(ansible.builtin.copy)), then in the current directory.
  - UTF-8 (a byte order mark is fine), comma-separated, quoted as spreadsheets do. The first row names the columns,
    which are the fields of one account of O(mailops.imap.migrate#module:accounts); then one account a row. A blank
    cell means the field is not given, blank rows are skipped. A password is taken exactly as written, other cells
    without surrounding spaces; an C(exclude) cell holds one regular expression a line when it has line breaks, else
    a comma-separated list.
  - A file that cannot be an account list (not UTF-8, unknown or repeated column, a row with too many cells, bad
    quoting, no account) fails with one sentence naming the line, never a cell's value. The values themselves are
    validated by M(mailops.imap.migrate).
  - The values are plain text, never templated (a password may hold C({{)). Keep the tasks that handle them
    C(no_log).
options:
  _terms:
    description: The paths of the CSV files.
    type: list
    elements: path
    required: true
  parse:
    description:
      - V(false) only finds and reads (decrypts) the file, to check early that it is there; the result holds no
        account.
    type: bool
    default: true
  on_error:
    description:
      - V(fail) fails with the sentence that says why the file cannot be used.
      - V(return) returns it instead, as RV(_raw[].error), so that a task that handles the accounts can be C(no_log)
        (which would hide the reason of a failure) and a next task can show the sentence.
    type: str
    choices: [fail, return]
    default: fail
notes:
  - Used by the playbook C(mailops.imap.migrate) to share the accounts out across hosts.
"""

EXAMPLES = r"""
- name: Read the accounts (the task that handles them is no_log)
  ansible.builtin.set_fact:
    accounts: "{{ lookup('mailops.imap.accounts_csv', 'migration/accounts.csv').accounts }}"
  no_log: true

- name: Check that the file is there and can be decrypted
  ansible.builtin.assert:
    that: lookup('mailops.imap.accounts_csv', 'migration/accounts.csv', parse=false).path is string

- name: Read the accounts, the reason of a failure shown by the next task
  ansible.builtin.set_fact:
    read: "{{ lookup('mailops.imap.accounts_csv', 'migration/accounts.csv', on_error='return') }}"
  no_log: true

- name: Stop when the file cannot be used
  ansible.builtin.fail:
    msg: "{{ read.error }}"
  when: read.error is defined
"""

RETURN = r"""
_raw:
  description: One dictionary per file.
  type: list
  elements: dict
  contains:
    path:
      description: The absolute path of the file read.
      type: str
    accounts:
      description:
        - One dictionary of task fields per account (the cells given), in the order of the rows.
        - Not with O(parse=false).
      type: list
      elements: dict
    labels:
      description:
        - Where each account is, C(accounts_file PATH line N) (the header is line 1), in the same order.
        - Not with O(parse=false).
      type: list
      elements: str
    error:
      description:
        - With O(on_error=return), only when the file cannot be used; the sentence that says why (never a cell's
          value). Then no other key is there.
      type: str
"""

import typing as t

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError
from ansible_collections.mailops.imap.plugins.plugin_utils._accounts_file import find_accounts_file, read_accounts_bytes, read_accounts_file


class LookupModule(LookupBase):

    def run(self, terms: list[t.Any], variables: dict[str, t.Any] | None = None, **kwargs: t.Any) -> list[dict[str, t.Any]]:
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        loader = self._loader
        if loader is None:
            raise AnsibleLookupError("mailops.imap.accounts_csv runs only within Ansible (it needs its loader).")
        search_path = variables.get("ansible_search_path") or [self.get_basedir(variables)]
        results: list[dict[str, t.Any]] = []
        for term in terms:
            try:
                found = find_accounts_file(loader, list(search_path), term, current_dir=True)
                if not self.get_option("parse"):
                    read_accounts_bytes(loader, found, term)
                    results.append({"path": found})
                    continue
                accounts, labels = read_accounts_file(loader, found, term, f"accounts_file {found}")
            except ConfigError as exc:
                if self.get_option("on_error") == "return":
                    results.append({"error": str(exc)})
                    continue
                raise AnsibleLookupError(str(exc)) from None
            results.append({"path": found, "accounts": accounts, "labels": labels})
        return results
