#!/usr/bin/python
# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migrate
short_description: Copy a remote IMAP account into a local Dovecot account now
version_added: 0.1.0
description:
  - Runs one synchronisation from a remote IMAP account into an account of the local mail server
    (Dovecot, for example NethServer 8's Mail application), with the collection's built-in engine.
  - The task is given inline (the remote account, what to copy, whether to delete on the remote) together
    with the mail target, the local server reached through a Dovecot master user.
  - A migration is incremental and can be repeated any number of times without duplicating or losing mail.
    Its state is kept in O(state_dir) under a key derived from the remote host, remote port, remote user,
    target name and local user, so repeating the same migration only copies what is new.
  - Without usable state (a first run into a non-empty mailbox, lost state, a changed UIDVALIDITY), a message
    counts as present when the local folder holds one with the same identity (Message-ID, Date and size),
    so adopting a mailbox that another tool half-copied creates no duplicates.
  - The arguments are validated on the controller before anything is sent to the host.
  - In check mode both servers are read and the counts are what a real run would do; nothing is written
    anywhere (no folders, no flags, no deletions, no state).
  - Notices of the run (for example a server that cannot run Sieve on retrieved messages) are reported as
    warnings too.
  - A run that stops (connection, TLS or login failure, timeout) fails the task; a run in which some messages
    were refused by the local server (too big, over quota) succeeds with a warning and RV(status=partial).
  - If the same migration is already running on the host, the task is skipped.
author:
  - mailops.imap maintainers (@mailops)
requirements:
  - the Python library imapclient on the managed host
extends_documentation_fragment:
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
  local_user:
    description:
      - The local account that receives the mail (NethServer 8 I(Local user)).
    type: str
    required: true
  remote_user:
    description:
      - The login of the remote account (NethServer 8 I(Remote user)).
      - For a NethServer or Dovecot remote with a master user, V(user*vmail) with the master password works.
    type: str
    required: true
  remote_password:
    description:
      - The password of the remote account (NethServer 8 I(Remote password)). Any characters are allowed.
      - It is never logged nor returned.
    type: str
    required: true
  remote_host:
    description:
      - The remote IMAP server (NethServer 8 I(IMAP server)), given as a hostname (internationalised names too),
        an IPv4 or an IPv6 address.
    type: str
    required: true
  remote_security:
    description:
      - How the connection to the remote server is protected (NethServer 8 I(Select encryption)).
      - V(starttls) upgrades a plain connection; if the server does not offer STARTTLS the run fails, it never
        falls back to plain text. V(ssl) is implicit TLS. V(none) sends the password in clear text.
    type: str
    choices: [starttls, ssl, none]
    default: starttls
  remote_port:
    description:
      - The TCP port of the remote server (NethServer 8 I(IMAP TCP Port)), 1 to 65535.
      - Defaults to 993 with O(remote_security=ssl), otherwise 143.
    type: int
  validate_certs:
    description:
      - Whether the remote server's TLS certificate is verified.
    type: bool
    default: true
  ca_file:
    description:
      - A file on the managed host with the CA certificates to verify the remote server with,
        instead of the system's.
    type: path
  folders:
    description:
      - What is copied (NethServer 8 I(Folder synchronization)).
      - V(all) copies every selectable remote folder, recursively, into the local folder of the same path;
        missing local folders are created and subscribed. Other users' and shared namespaces are never copied.
      - V(all_except) does the same, without the folders matched by O(exclude).
      - V(inbox) copies only the messages of the remote INBOX that are not C(\Seen) and flags each copied
        message C(\Seen) on the remote, so it is never copied twice. See O(sieve) and O(delivery).
    type: str
    choices: [inbox, all, all_except]
    default: all
  exclude:
    description:
      - With O(folders=all_except), Python regular expressions, one per entry, searched (not anchored)
        in the remote folder names; a folder that matches any of them is not copied.
      - Blank entries are ignored. An invalid expression is an error that names it.
      - Give a YAML list. Ansible splits a single string at commas, so an expression that contains a comma
        (such as V({1,3})) must be a list entry of its own.
      - Ignored, with a warning, unless O(folders=all_except).
    type: list
    elements: str
    default: []
  delete_remote:
    description:
      - Whether messages are deleted on the remote server (NethServer 8 I(Remote server messages deletion)).
      - V(never) leaves the remote untouched (apart from C(\Seen) flags with O(folders=inbox)).
      - V(after_sync) deletes a remote message once it is confirmed present locally.
      - V(older_than) deletes remote messages older than O(delete_remote_days) days that are confirmed present
        locally. A message that was never copied is never deleted.
      - Nothing is deleted in check mode.
    type: str
    choices: [never, after_sync, older_than]
    default: never
  delete_remote_days:
    description:
      - With O(delete_remote=older_than), the age in days (at least 1) after which remote messages are deleted.
      - Required with O(delete_remote=older_than).
    type: int
  special_use_mapping:
    description:
      - Whether the remote Sent, Trash, Junk, Drafts and Archive folders (marked with SPECIAL-USE, or with
        well-known names such as C(Sent Items) or C(Deleted Items)) land in the local folder of the same use.
    type: bool
    default: true
  sieve:
    description:
      - With O(folders=inbox), whether the local user's Sieve filter runs on the copied messages
        (IMAP C(FILTER SIEVE), Dovecot's C(imap_filter_sieve) plugin).
      - Where the local server lacks that capability the messages stay in INBOX and a warning says so.
    type: bool
    default: true
  delivery:
    description:
      - With O(folders=inbox), how messages reach the local INBOX.
      - V(imap) appends them over IMAP (then runs Sieve, see O(sieve)).
      - V(lmtp) delivers them through LMTP (see O(target.lmtp_host)), a full local delivery with global Sieve
        scripts, vacation replies and quota.
    type: str
    choices: [imap, lmtp]
    default: imap
  target:
    description:
      - The local mail server that receives the mail, reached through a Dovecot master user.
      - When omitted, every suboption takes its default (and no master password is sent).
    type: dict
    suboptions:
      name:
        description:
          - The name of the mail target. It is part of the key of the migration's state.
        type: str
        default: default
      host:
        description:
          - The local IMAP server.
        type: str
        default: 127.0.0.1
      port:
        description:
          - The TCP port of the local IMAP server, 1 to 65535.
          - Defaults to 993 with O(target.security=ssl), otherwise 143.
        type: int
      security:
        description:
          - How the connection to the local server is protected; as O(remote_security).
        type: str
        choices: [starttls, ssl, none]
        default: starttls
      validate_certs:
        description:
          - Whether the local server's TLS certificate is verified.
        type: bool
        default: true
      ca_file:
        description:
          - A file on the managed host with the CA certificates to verify the local server with.
        type: path
      master_user:
        description:
          - The Dovecot master user that logs in on behalf of O(local_user).
        type: str
        default: vmail
      master_password:
        description:
          - The master user's password. It is never logged nor returned.
        type: str
      master_separator:
        description:
          - The separator of the C(user*master) login, used where the server does not offer
            AUTHENTICATE PLAIN with an authorization identity.
        type: str
        default: "*"
      lmtp_host:
        description:
          - The LMTP server for O(delivery=lmtp), given as a host name, an address or the path of a UNIX socket.
        type: str
        default: 127.0.0.1
      lmtp_port:
        description:
          - The TCP port of the LMTP server.
        type: int
        default: 24
  config_dir:
    description:
      - The directory of the collection's definitions on the managed host.
      - Not used by an inline migration; accepted so that every module of the collection can be relocated alike.
    type: path
    default: /etc/mailops-imap
  state_dir:
    description:
      - The directory on the managed host where the migration's state is kept. It is created (mode 0700) when
        missing, except in check mode.
    type: path
    default: /var/lib/mailops-imap
notes:
  - Repeating the same migration is cheap, its cost grows with what is new on the remote, not with the mailbox size.
  - For a long migration use C(async) with C(poll), so that the connection to the host does not time out.
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
"""

RETURN = r"""
task:
  description: The name of the sync task; null for an inline migration.
  returned: when the run started
  type: str
  sample: null
status:
  description:
    - V(success) when everything was copied, V(partial) when some messages were refused by the local server
      (see RV(errors)), V(failed) when the run stopped, V(skipped) when the same migration was already running.
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
  returned: when the run started
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
  description: The sums over all folders.
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
  returned: when the run started
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
          V(starttls_unsupported) or V(timeout) for failures that stop a run.
      type: str
      sample: auth_failed
    detail:
      description: A sentence naming the cause (and the side, C(remote) or C(local)) and the fix.
      type: str
      sample: "The remote server refused the login of alice@example.org; check remote_user and remote_password."
notices:
  description: Things worth knowing about the run; each is also reported as a warning.
  returned: when the run started
  type: list
  elements: str
  sample: []
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.imap.plugins.module_utils._argspec import migrate_argument_spec, parse_migrate
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, errors, sync


def main() -> None:
    module = AnsibleModule(argument_spec=migrate_argument_spec(), supports_check_mode=True)
    params = module.params

    try:
        task, target = parse_migrate(params)
    except errors.ConfigError as exc:
        module.fail_json(msg=str(exc))

    if not sync.HAS_IMAPCLIENT:
        module.fail_json(msg=missing_required_lib("imapclient"), exception=sync.IMAPCLIENT_IMPORT_ERROR)

    if task.exclude and task.folders != "all_except":
        module.warn(f"exclude is ignored with folders: {task.folders}; use folders: all_except to exclude folders.")

    state_dir = params["state_dir"]
    if not module.check_mode and not os.path.isdir(state_dir):
        try:
            os.makedirs(state_dir, mode=0o700)
        except OSError as exc:
            module.fail_json(msg=f"state_dir: cannot create {state_dir} ({exc.strerror}); choose a writable directory with state_dir.")
    state_path = os.path.join(state_dir, config.state_key(task, target) + ".sqlite")

    try:
        outcome = sync.run(task, target, state_path, check_mode=module.check_mode, task_name=None)
    except errors.ConfigError as exc:
        module.fail_json(msg=str(exc))

    for notice in outcome.notices:
        module.warn(notice)

    result = outcome.as_dict()
    result["changed"] = outcome.changed
    if module._diff:
        result["diff"] = outcome.diff()

    if outcome.status == "failed":
        detail = outcome.errors[0]["detail"] if outcome.errors else "The run failed without a reason; see the host's log."
        module.fail_json(msg=detail, **result)
    if outcome.status == "skipped":
        result["skipped"] = True
        result["msg"] = outcome.notices[0] if outcome.notices else "The same migration is already running on this host; this run was skipped."
    elif outcome.status == "partial":
        count = result["totals"]["errors"]
        module.warn(f"The migration ended partial: {count} error(s), for example messages refused by the local server; see errors.")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
