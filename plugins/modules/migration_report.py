#!/usr/bin/python
# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_report
short_description: Measure, per account and folder, what a migration copied and why the rest is missing
version_added: 0.1.0
description:
  - For each account, and for each personal folder of the remote account, counts the messages and their size on
    the remote server and in the local folder they land in, measured now on both servers, and says for every remote
    message that is not on the local server why, from the state of the account's migration.
  - The reasons are V(excluded) (the task's O(folders) and O(exclude) do not sync the folder), V(too_big) (larger
    than the local server accepts, never fetched), V(refused) (the local server refused it, for example over quota)
    and V(not_copied) (not copied yet - new since the last run, or the last run stopped before it; run the migration
    again).
  - Takes the accounts as M(mailops.imap.migrate) does (one account as the task options, or many as O(accounts)
    with the task options of the call as their defaults), so the same variables and C(module_defaults) serve both;
    playbooks/report.yml writes the report of a fleet as CSV and Markdown (see docs/report.md).
  - Changes nothing. Both servers are opened read-only (EXAMINE, so no message is marked seen), the state is read
    without a lock and nothing is created, not even O(state_dir). An account that cannot be measured (a login
    refused, a server down) is reported with the kind and sentence of its failure; the task does not fail for it.
author:
  - mailops.imap maintainers (@mailops)
requirements:
  - the Python library imapclient on the managed host
extends_documentation_fragment:
  - mailops.imap.fields.migrate
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module changes nothing; it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: mailops.imap.migrate
options:
  target:
    description:
      - The local mail server, reached through a Dovecot master user, as for M(mailops.imap.migrate).
  accounts:
    description:
      - Many accounts to report on, each a dictionary of task fields, as O(accounts) of M(mailops.imap.migrate); the
        fields an account leaves out take the value of the option of the same name in the module call.
      - Without it, the task options of the call are the one account.
  parallel:
    description:
      - How many accounts are measured at a time (at least 1). Each uses one connection to the remote server and one
        to the local server.
    type: int
    default: 4
  state_dir:
    description:
      - The directory of the migrations' state on the managed host, the O(state_dir) of M(mailops.imap.migrate).
    type: path
    default: /var/lib/mailops-imap
notes:
  - Only accounts of the builtin engine have a state the report can read; a shared or other user's folder of the
    remote is not part of a migration and not reported.
"""

EXAMPLES = r"""
- name: Report on the accounts of a migration
  mailops.imap.migration_report:
    remote_host: imap.old.example.org
    remote_security: ssl
    folders: all_except
    exclude: [^Spam$]
    accounts:
      - {remote_user: alice@example.org, remote_password: "{{ vault_alice_password }}", local_user: alice}
      - {remote_user: bob@example.org, remote_password: "{{ vault_bob_password }}", local_user: bob}
    target:
      master_password: "{{ vault_dovecot_master_password }}"
  register: report

- name: Show the accounts with missing messages
  ansible.builtin.debug:
    msg: "{{ report.accounts | rejectattr('status', 'equalto', 'complete') | map(attribute='account') | list }}"
"""

RETURN = r"""
summary:
  description: How many accounts were measured and how many have each status.
  returned: success
  type: dict
  sample: {"accounts": 2, "complete": 1, "incomplete": 1, "failed": 0}
totals:
  description: The counts of RV(accounts[].totals) summed over every account.
  returned: success
  type: dict
  sample: {"remote_messages": 130, "remote_bytes": 5242880, "local_messages": 128, "local_bytes": 5200000,
           "copied": 128, "missing": 2, "missing_bytes": 42880, "excluded": 1, "too_big": 0, "refused": 1, "not_copied": 0}
started:
  description: When the measuring started (ISO 8601, UTC).
  returned: success
  type: str
  sample: "2026-01-31T09:00:00+00:00"
finished:
  description: When the measuring finished (ISO 8601, UTC).
  returned: success
  type: str
  sample: "2026-01-31T09:00:05+00:00"
duration_s:
  description: How long the measuring took, in seconds.
  returned: success
  type: float
  sample: 4.9
accounts:
  description: One report per account, in the order given.
  returned: success
  type: list
  elements: dict
  contains:
    account:
      description: Which account, as C(remote_user at remote_host -> local_user).
      type: str
      sample: alice@example.org at imap.old.example.org -> alice
    status:
      description:
        - V(complete) when every remote message of the folders the task syncs is on the local server, V(incomplete)
          when some are missing or a folder could not be measured, V(failed) when the account could not be measured.
      type: str
      sample: complete
    kind:
      description: With V(failed), the kind of the failure (as C(errors[].kind) of M(mailops.imap.migrate)); else null.
      type: str
      sample: null
    message:
      description: With V(failed), a sentence naming the cause and the fix; else null.
      type: str
      sample: null
    folders:
      description:
        - One entry per personal remote folder, INBOX first. Folder names are made printable (control characters
          escaped).
        - C(folder), C(local_folder) (where it lands, or would), C(status) (V(complete), V(incomplete), V(excluded)
          or V(failed), when a server refused to open the folder; C(kind) and C(message) then say how, and its counts
          are 0), C(remote_messages), C(remote_bytes), C(local_messages), C(local_bytes) (0 when the local
          folder does not exist), C(copied) (remote messages the state records as copied), C(missing) and
          C(missing_bytes) (the remote messages that are not, and their size), and C(missing) by reason, in
          C(excluded), C(too_big), C(refused) and C(not_copied).
      type: list
      elements: dict
      sample: [{"folder": "INBOX", "local_folder": "INBOX", "status": "incomplete", "remote_messages": 4,
                "remote_bytes": 9000, "local_messages": 3, "local_bytes": 6000, "copied": 3, "missing": 1,
                "missing_bytes": 3000, "excluded": 0, "too_big": 0, "refused": 1, "not_copied": 0, "kind": null,
                "message": null}]
    totals:
      description: The counts of RV(accounts[].folders) summed over the account's folders.
      type: dict
      sample: {"remote_messages": 4, "remote_bytes": 9000, "local_messages": 3, "local_bytes": 6000, "copied": 3,
               "missing": 1, "missing_bytes": 3000, "excluded": 0, "too_big": 0, "refused": 1, "not_copied": 0}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.imap.plugins.module_utils import _report


def main() -> None:
    module = AnsibleModule(argument_spec=_report.argument_spec(), mutually_exclusive=[], supports_check_mode=True)
    _report.main(module)


if __name__ == "__main__":
    main()
