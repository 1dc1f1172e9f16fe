#!/usr/bin/python
# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migrate
short_description: Copy a remote IMAP account into a local Dovecot account now
version_added: 0.1.0
description:
  - Runs a synchronisation from remote IMAP accounts into accounts of the local mail server
    (Dovecot, for example NethServer 8's Mail application) now, with the collection's built-in engine.
  - Three ways to say what runs. Inline, one account given by the task options (the remote account, what to copy,
    whether to delete on the remote) together with the mail target, the local server reached through a Dovecot
    master user. By name, O(task) runs a sync task defined on the host with M(mailops.imap.sync_task), exactly as
    its timer and C(imapsyncctl run) do (same state, log and last result). In bulk, O(accounts) or O(accounts_file)
    run many accounts, O(parallel) at a time.
  - In bulk, the task options given in the module call are the defaults of every account, and O(target) applies to
    all accounts. Every account is validated on the controller before any runs; a bad one fails the task with a
    message naming its list entry or CSV line. Each account runs independently, with its own inline state; the task
    fails when any account failed, after all have run.
  - A migration is incremental and can be repeated any number of times without duplicating or losing mail.
    Its state is kept in O(state_dir) under a key derived from the remote host, remote port, remote user,
    target name and local user, so repeating the same migration only copies what is new.
  - Without usable state (a first run into a non-empty mailbox, lost state, a changed UIDVALIDITY), a message
    counts as present when the local folder holds one with the same identity (Message-ID, Date and size),
    so adopting a mailbox that another tool half-copied creates no duplicates.
  - The arguments are validated on the controller before anything is sent to the host; O(accounts_file) is read there.
  - In check mode both servers are read and the counts are what a real run would do; nothing is written
    anywhere (no folders, no flags, no deletions, no state).
  - Notices of the run (for example a server that cannot run Sieve on retrieved messages) are reported as
    warnings too.
  - A run that stops (connection, TLS or login failure, timeout) fails the task; a run in which some messages
    were refused by the local server (too big, over quota) succeeds with a warning and RV(status=partial).
  - If the same migration (or defined task) is already running on the host, the task is skipped; in bulk, that
    account is skipped and the others run.
author:
  - mailops.imap maintainers (@mailops)
requirements:
  - Python 3.9 to 3.13 on the managed host, with the Python library imapclient; the role M(mailops.imap.imapsync)
    (its entry point C(venv)) builds a virtual environment with it, and C(playbooks/migrate.yml) runs this module
    with that environment's interpreter (C(ansible_python_interpreter)). See the README's Requirements.
extends_documentation_fragment:
  - mailops.imap.fields.migrate
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: Connects to both servers to compute what a real run would copy, update and delete.
  diff_mode:
    support: full
    details: Shows, per local folder, the message count before and after the run.
  platform:
    platforms: posix
  action:
    support: full
    details: Arguments are validated on the controller first.
  async:
    support: full
  bypass_host_loop:
    support: none
options:
  target:
    description:
      - The local mail server that receives the mail, reached through a Dovecot master user.
      - When omitted, every suboption takes its default (and no master password is sent).
      - In bulk, the target of every account. Not with O(task), whose definition names its target.
  task:
    description:
      - The name of a sync task defined on the host (with M(mailops.imap.sync_task), in O(config_dir)) to run now.
      - The run is the one its timer and C(imapsyncctl run) make, with the task's state in O(state_dir), a run log, and
        its result recorded as the task's last result (see M(mailops.imap.sync_task_info)). In check mode nothing is
        written, not even the log.
      - Runs even when the task is disabled (O(task) asks for it explicitly).
      - Excludes the task options, O(target), O(accounts) and O(accounts_file).
    type: str
  accounts:
    description:
      - Many accounts to migrate, each a dictionary of task fields; the fields an account leaves out take the value of
        the option of the same name in the module call (or its default). Runs O(parallel) accounts at a time.
      - O(local_user), O(remote_user), O(remote_host) (unless O(remote_provider) gives it) and the remote credentials
        (O(remote_password), or the fields of O(remote_auth)) must be given, in each account or in the module call.
      - An application credential (O(remote_auth=client_credentials) or O(remote_auth=service_account)) is given once
        in the module call; the accounts then hold only their users (see docs/oauth2.md).
      - Every account is validated on the controller before any runs; a bad one fails the task naming its entry
        (counted from 1) and the field, never a password.
      - Two accounts with the same remote user, remote host, remote port and local user are refused.
      - Excludes O(task) and O(accounts_file).
  accounts_file:
    description:
      - A CSV file on the controller with many accounts, read by the action plugin and sent as O(accounts); the file
        itself is not copied to the host. It may be encrypted with C(ansible-vault).
      - A relative path is searched like the C(src) of M(ansible.builtin.copy) (the role's or playbook's C(files/)
        directory, then the playbook's directory).
      - UTF-8 (a byte order mark is fine), comma-separated, quoted as spreadsheets do. The first row names the columns,
        which are the fields of O(accounts) (for example C(local_user,remote_user,remote_password)); an unknown column
        is an error that names it. Then one account a row; a blank cell means the field is not given (the module
        call's value applies), blank rows are skipped. A password (or a client secret) is taken exactly as written, other
        cells without surrounding spaces.
      - An C(exclude) cell holds one regular expression a line when it has line breaks, else a comma-separated list.
      - Every row is validated on the controller before any account runs; a bad row fails the task naming its line
        (the header is line 1) and the field, never a password.
      - Excludes O(task) and O(accounts).
    type: path
  parallel:
    description:
      - With O(accounts) or O(accounts_file), how many accounts run at a time on the host (at least 1). Each account
        uses one connection to the remote server and one to the local server.
    type: int
    default: 4
  config_dir:
    description:
      - The directory of the collection's definitions on the managed host, where O(task) is looked up.
      - Not used by an inline or bulk migration.
    type: path
    default: /etc/mailops-imap
  state_dir:
    description:
      - The directory on the managed host where the migration's state is kept (and, with O(task), the task's run
        logs and last result). It is created (mode 0700) when missing, except in check mode, and refused when group
        or others can write it.
      - Every run holds a lock of its account in C(locks/) here (remote host, remote user and local user), so that
        a task of the same account, another inline run or another bulk entry of it, run with the same O(state_dir),
        is skipped while one runs.
    type: path
    default: /var/lib/mailops-imap
  progress_interval:
    description:
      - How often, in seconds, an inline or bulk migration shows its progress while it runs, one line per running
        account in the playbook output (and so in AWX's job output), with the account, the folder, the messages done of
        the remote total, the bytes copied, the rate and the time left. V(0) turns it off.
      - The run then goes on in a process of its own on the host, and the task asks for its progress (and its result)
        every O(progress_interval) seconds, each time with a short module call; a run that ends within the first
        interval is answered at once, as without progress. If the controller stops asking (the play is interrupted,
        the task times out, the host becomes unreachable), the run stops by itself, gracefully, within about
        3 intervals plus a minute; the next run continues where it stopped.
      - No progress in check mode, with the task keyword C(async), nor with O(task); with C(no_log) only the counts
        are shown, without the account.
    type: float
    default: 10
  progress_job:
    description:
      - Set by the migrate action to ask a running migration for its progress; never set it in a task.
    type: str
seealso:
  - module: mailops.imap.sync_task
    description: Declares the tasks that a run with O(task) starts, and that the role's timers run.
  - module: mailops.imap.sync_task_info
    description: Shows the tasks of a host with the last result of each run.
  - module: mailops.imap.mail_target
    description: Declares the local mail server that O(target) names.
  - name: The mailops.imap.imapsync role
    description: Installs the engine on the host and runs the tasks with systemd timers.
    link: https://github.com/mailops/mailops.imap/blob/main/roles/imapsync/README.md
  - name: The playbook mailops.imap.migrate
    description: Shares the accounts of a CSV or a list out to many hosts and reports the totals.
    link: https://github.com/mailops/mailops.imap/blob/main/docs/playbooks.md
notes:
  - With O(parallel) above 1, a bulk migration runs each account in a worker process of its own on the host.
  - Repeating the same migration is cheap, its cost grows with what is new on the remote, not with the mailbox size.
  - An inline migration (and each account of a bulk one) keeps a run log, as a defined task does, in
    C(runs/inline-KEY/) under O(state_dir) (KEY derived from the account, as its state's name), the newest 10 kept.
    It holds no secret.
  - A long migration needs no C(async), the task shows its progress while it runs (O(progress_interval)).
"""

EXAMPLES = r"""
- name: Copy an account from the old server (all folders)
  mailops.imap.migrate:
    remote_host: imap.old.example.org
    remote_security: ssl
    remote_user: alice@example.org
    remote_password: "{{ vault_alice_password }}"
    local_user: alice
    target:
      master_password: "{{ vault_dovecot_master_password }}"

- name: See what a migration would do, with per-folder counts
  mailops.imap.migrate:
    remote_host: imap.old.example.org
    remote_user: bob
    remote_password: "{{ vault_bob_password }}"
    local_user: bob
    folders: all_except
    exclude:
      - ^Spam$
      - ^Trash(/|$)
    target:
      master_password: "{{ vault_dovecot_master_password }}"
  check_mode: true
  diff: true
  register: plan

- name: Show the plan
  ansible.builtin.debug:
    msg: "{{ plan.totals.copied }} messages ({{ plan.totals.bytes }} bytes) would be copied"

- name: Fetch the unseen messages of a remote INBOX and let the local Sieve filter sort them
  mailops.imap.migrate:
    remote_host: mail.provider.example
    remote_user: carol@provider.example
    remote_password: "{{ vault_carol_password }}"
    local_user: carol
    folders: inbox
    sieve: true
    delete_remote: older_than
    delete_remote_days: 30
    target:
      host: 127.0.0.1
      port: 143
      security: none
      master_user: vmail
      master_password: "{{ vault_dovecot_master_password }}"

- name: Migrate a large mailbox in the background
  mailops.imap.migrate:
    remote_host: 2001:db8::25
    remote_user: dave
    remote_password: "{{ vault_dave_password }}"
    local_user: dave
    ca_file: /etc/ssl/certs/old-server-ca.pem
    target:
      master_password: "{{ vault_dovecot_master_password }}"
    state_dir: /srv/mailops-imap/state
  async: 7200
  poll: 30

- name: Run the task defined on the host as inbox-carol now (as its timer would)
  mailops.imap.migrate:
    task: inbox-carol
  become: true

- name: Migrate every account listed in files/accounts.csv, three at a time
  # accounts.csv (encrypt it with ansible-vault):
  #   local_user,remote_user,remote_password
  #   alice,alice@example.org,"s3cret, with a comma"
  #   bob,bob@example.org,other-secret
  mailops.imap.migrate:
    accounts_file: accounts.csv
    parallel: 3
    remote_host: imap.old.example.org
    remote_security: ssl
    folders: all_except
    exclude:
      - ^Spam$
    target:
      master_password: "{{ vault_dovecot_master_password }}"
  register: bulk

- name: Show how each account went
  ansible.builtin.debug:
    msg: "{{ item.account }}: {{ item.status }}, {{ item.totals.copied }} copied"
  loop: "{{ bulk.accounts }}"
  loop_control:
    label: "{{ item.account }}"

- name: Migrate the Microsoft 365 mailboxes of users.csv with one Entra ID application (docs/oauth2.md)
  # users.csv: local_user,remote_user
  mailops.imap.migrate:
    accounts_file: users.csv
    remote_provider: microsoft365
    remote_auth: client_credentials
    remote_oauth_client_id: 11111111-2222-3333-4444-555555555555
    remote_oauth_tenant: contoso.example
    remote_oauth_client_secret: "{{ vault_m365_client_secret }}"
    target:
      master_password: "{{ vault_dovecot_master_password }}"

- name: Migrate a Google Workspace mailbox through a service account with domain-wide delegation
  mailops.imap.migrate:
    local_user: bob
    remote_user: bob@example.com
    remote_provider: google
    remote_auth: service_account
    remote_oauth_key_file: /etc/mailops-imap/keys/migration-sa.json
    target:
      master_password: "{{ vault_dovecot_master_password }}"

- name: Migrate a few accounts given in the play, from a NethServer remote through its master user
  mailops.imap.migrate:
    remote_host: old-ns.example.org
    remote_password: "{{ vault_old_ns_master_password }}"
    accounts:
      - remote_user: alice*vmail
        local_user: alice
      - remote_user: bob*vmail
        local_user: bob
        folders: all_except
        exclude: [^Archive/2010]
    target:
      master_password: "{{ vault_dovecot_master_password }}"
"""

RETURN = r"""
task:
  description: The name of the sync task (O(task)); null for an inline migration.
  returned: when one run started (inline or O(task))
  type: str
  sample: null
status:
  description:
    - V(success) when everything was copied, V(partial) when some messages were refused by the local server
      (see RV(errors)), V(failed) when the run stopped, V(skipped) when the same migration was already running.
    - In bulk, V(failed) when any account failed, else V(partial) when any ended partial, else V(skipped) when every
      account was skipped, else V(success).
  returned: when the run started
  type: str
  sample: success
check_mode:
  description: Whether this was a check mode run, which wrote nothing.
  returned: when the run started
  type: bool
  sample: false
started:
  description: When the run started (ISO 8601, UTC).
  returned: when the run started
  type: str
  sample: "2026-01-31T09:00:00+00:00"
finished:
  description: When the run finished (ISO 8601, UTC).
  returned: when the run started
  type: str
  sample: "2026-01-31T09:02:05+00:00"
duration_s:
  description: The duration of the run in seconds.
  returned: when the run started
  type: float
  sample: 125.3
folders:
  description: One entry per remote folder considered by the run.
  returned: when one run started (inline or O(task))
  type: list
  elements: dict
  contains:
    remote:
      description: The remote folder name.
      type: str
      sample: Sent Items
    local:
      description: The local folder name it lands in.
      type: str
      sample: Sent
    created:
      description: Whether the local folder was (or in check mode would be) created.
      type: bool
      sample: false
    copied:
      description: Messages copied (or in check mode to copy).
      type: int
      sample: 120
    bytes:
      description: Bytes of the messages copied.
      type: int
      sample: 5242880
    already_present:
      description: Remote messages that were already present locally.
      type: int
      sample: 3000
    flags_updated:
      description: Local messages whose flags were updated from the remote.
      type: int
      sample: 4
    deleted_remote:
      description: Messages deleted on the remote.
      type: int
      sample: 0
    errors:
      description: Messages of this folder that could not be copied.
      type: int
      sample: 0
totals:
  description: The sums over all folders (in bulk, over all folders of all accounts).
  returned: when the run started
  type: dict
  contains:
    copied:
      description: Messages copied.
      type: int
      sample: 120
    bytes:
      description: Bytes copied.
      type: int
      sample: 5242880
    already_present:
      description: Messages already present locally.
      type: int
      sample: 3000
    flags_updated:
      description: Local messages whose flags were updated.
      type: int
      sample: 4
    deleted_remote:
      description: Messages deleted on the remote.
      type: int
      sample: 0
    folders_created:
      description: Local folders created.
      type: int
      sample: 1
    errors:
      description: Errors recorded (refused messages and failures that stopped the run).
      type: int
      sample: 0
errors:
  description:
    - What went wrong, one entry per refused message or per failure that stopped the run.
  returned: when one run started (inline or O(task))
  type: list
  elements: dict
  contains:
    folder:
      description: The remote folder, empty when the error belongs to no folder.
      type: str
      sample: INBOX
    uid:
      description: The remote UID of the message, if the error concerns one.
      type: int
      sample: 4711
    message_id:
      description: The Message-ID of the message, if known.
      type: str
      sample: "<20260131.1234@old.example.org>"
    kind:
      description:
        - A classification programs can act on, for example V(connect_failed), V(tls_failed), V(auth_failed),
          V(starttls_unsupported), V(timeout), V(connection_lost) or V(server_busy) for failures that stop a run.
      type: str
      sample: auth_failed
    detail:
      description: A sentence naming the cause (and the side, C(remote) or C(local)) and the fix.
      type: str
      sample: "The remote server refused the login of alice@example.org; check remote_user and remote_password."
notices:
  description: Things worth knowing about the run; each is also reported as a warning.
  returned: when one run started (inline or O(task))
  type: list
  elements: str
  sample: []
summary:
  description: How many accounts ran, and how many ended with each status.
  returned: with O(accounts) or O(accounts_file)
  type: dict
  contains:
    accounts:
      description: The number of accounts.
      type: int
      sample: 3
    success:
      description: Accounts that ended V(success).
      type: int
      sample: 2
    partial:
      description: Accounts that ended V(partial).
      type: int
      sample: 1
    failed:
      description: Accounts that ended V(failed).
      type: int
      sample: 0
    skipped:
      description: Accounts that were V(skipped) (the same migration was already running).
      type: int
      sample: 0
accounts:
  description:
    - One entry per account, in the order given, each the result of one run (see RV(task), RV(status), RV(folders),
      RV(totals), RV(errors), RV(notices) and the others) plus RV(accounts[].account).
  returned: with O(accounts) or O(accounts_file)
  type: list
  elements: dict
  contains:
    account:
      description: Which account, as C(remote_user at remote_host -> local_user).
      type: str
      sample: alice@example.org at imap.old.example.org -> alice
    task:
      description: Always null (each account is an inline migration).
      type: str
      sample: null
    status:
      description: V(success), V(partial), V(failed) or V(skipped), as RV(status) of one run.
      type: str
      sample: success
    check_mode:
      description: Whether this was a check mode run.
      type: bool
      sample: false
    started:
      description: When the account's run started (ISO 8601, UTC).
      type: str
      sample: "2026-01-31T09:00:00+00:00"
    finished:
      description: When the account's run finished (ISO 8601, UTC).
      type: str
      sample: "2026-01-31T09:01:10+00:00"
    duration_s:
      description: The duration of the account's run in seconds.
      type: float
      sample: 70.2
    folders:
      description: One entry per remote folder, as RV(folders).
      type: list
      elements: dict
      sample: []
    totals:
      description: The sums over the account's folders, as RV(totals).
      type: dict
      sample: {"copied": 120, "bytes": 5242880, "already_present": 0, "flags_updated": 0, "deleted_remote": 0,
               "folders_created": 3, "errors": 0}
    errors:
      description: What went wrong for this account, as RV(errors).
      type: list
      elements: dict
      sample: []
    notices:
      description: Things worth knowing about the account's run; each is also reported as a warning.
      type: list
      elements: str
      sample: []
    failure:
      description:
        - For an account that ended V(failed), the error that stopped its run (the last of RV(accounts[].errors)) as
          C(kind) and C(message) (a sentence naming the cause and the fix, never a secret); null otherwise.
      type: dict
      sample: {"kind": "auth_failed", "message": "The remote server refused the login of bob@example.org; check remote_user and remote_password."}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.imap.plugins.module_utils import _migrate
from ansible_collections.mailops.imap.plugins.module_utils._argspec import migrate_argument_spec, migrate_mutually_exclusive
from ansible_collections.mailops.imap.plugins.module_utils._migrate import PROGRESS_OPTIONS


def main() -> None:
    module = AnsibleModule(
        argument_spec={**migrate_argument_spec(), **PROGRESS_OPTIONS},
        mutually_exclusive=migrate_mutually_exclusive(),
        supports_check_mode=True,
    )
    _migrate.main(module)


if __name__ == "__main__":
    main()
