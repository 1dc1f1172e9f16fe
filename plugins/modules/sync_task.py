#!/usr/bin/python
# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sync_task
short_description: Declare a sync task from a remote IMAP account into a local Dovecot account
version_added: 0.1.0
description:
  - Declares (or removes) a sync task on the managed host, one remote IMAP account into one local user,
    with the fields of NethServer 8's Imapsync task form. It is the definition that C(imapsyncctl), the timers
    of the C(mailops.imap.imapsync) role and M(mailops.imap.migrate) with C(task=NAME) run.
  - The mail target the task delivers to (O(target)) must be declared first with M(mailops.imap.mail_target).
  - The definition is stored in C(tasks/NAME.json) under O(config_dir) (mode 0644, no secret in it), the remote
    password apart in C(secrets/tasks/NAME) under O(config_dir), readable by its owner (root) only (mode 0600, in
    directories of mode 0700). Both files are replaced atomically.
  - The definition is stored normalized (every field, defaults included), so declaring the same task again
    reports no change. A changed remote password is a change; it is never shown, the diff shows a placeholder.
  - With O(validate=true) the module first logs in to the remote server and, through the target's master user,
    to the local server, as a run would, and refuses the definition with the classified error if a login fails,
    like the credential check of NethServer 8 when a task is created.
  - Removing a task (O(state=absent)) removes its definition and its password. Its sync state and run logs in
    O(state_dir) are kept, so a task declared again under the same name continues incrementally.
author:
  - mailops.imap maintainers (@mailops)
requirements:
  - the Python library imapclient on the managed host, with O(validate=true)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports what would change and writes nothing.
      - With O(validate=true) it logs in to both servers too (and logs out), when the target is defined.
      - A target that is not defined yet only gives a warning, since an earlier M(mailops.imap.mail_target) task
        writes nothing in check mode.
  diff_mode:
    support: full
    details: Shows the definition before and after, the remote password as a placeholder.
  platform:
    platforms: posix
options:
  name:
    description:
      - The name of the task, unique on the host, 1 to 64 characters of V(a-z), V(0-9), V(_), V(.) and V(-),
        starting with a letter or a digit. It names the task's files, state and systemd timer.
    type: str
    required: true
  state:
    description:
      - V(present) stores the definition, V(absent) removes it and its password (not its sync state nor its logs).
    type: str
    choices: [present, absent]
    default: present
  target:
    description:
      - The name of the mail target (see M(mailops.imap.mail_target)) that receives the mail.
      - It must be defined on the host when the task is stored; in check mode a missing target only gives a warning.
    type: str
    default: default
  local_user:
    description:
      - The local account that receives the mail (NethServer 8 I(Local user)).
      - Required with O(state=present).
    type: str
  remote_user:
    description:
      - The login of the remote account (NethServer 8 I(Remote user)).
      - For a NethServer or Dovecot remote with a master user, V(user*vmail) with the master password works.
      - Required with O(state=present).
    type: str
  remote_password:
    description:
      - The password of the remote account (NethServer 8 I(Remote password)). Any characters are allowed.
      - It is stored apart from the definition, readable by root only, and never logged, returned or shown in a diff.
      - Required with O(state=present).
    type: str
  remote_host:
    description:
      - The remote IMAP server (NethServer 8 I(IMAP server)), given as a hostname (internationalised names too),
        an IPv4 or an IPv6 address.
      - Required with O(state=present).
    type: str
  remote_security:
    description:
      - How the connection to the remote server is protected (NethServer 8 I(Select encryption)).
      - V(starttls) upgrades a plain connection; if the server does not offer STARTTLS a run fails, it never
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
      - V(all) copies every selectable remote folder, recursively, into the local folder of the same path.
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
      - Stored as given; ignored by runs, with a warning here, unless O(folders=all_except).
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
    type: str
    choices: [never, after_sync, older_than]
    default: never
  delete_remote_days:
    description:
      - With O(delete_remote=older_than), the age in days (at least 1) after which remote messages are deleted.
      - Required with O(delete_remote=older_than).
    type: int
  schedule:
    description:
      - When the task runs (NethServer 8 I(Task frequency)).
      - V(manual) only when started (C(imapsyncctl run NAME), M(mailops.imap.migrate) with C(task=NAME)).
      - V(interval) every O(interval_minutes) minutes, by the timer the C(mailops.imap.imapsync) role installs.
    type: str
    choices: [manual, interval]
    default: manual
  interval_minutes:
    description:
      - With O(schedule=interval), the minutes between two runs, 1 to 1440.
      - Required with O(schedule=interval).
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
    type: bool
    default: true
  delivery:
    description:
      - With O(folders=inbox), how messages reach the local INBOX.
      - V(imap) appends them over IMAP (then runs Sieve, see O(sieve)).
      - V(lmtp) delivers them through the LMTP server of the mail target, a full local delivery with global Sieve
        scripts, vacation replies and quota.
    type: str
    choices: [imap, lmtp]
    default: imap
  engine:
    description:
      - What runs the task. V(builtin) is the collection's sync engine. V(imapsync) makes the
        C(mailops.imap.imapsync) role render an equivalent imapsync command line instead.
    type: str
    choices: [builtin, imapsync]
    default: builtin
  enabled:
    description:
      - Whether the task is active. A disabled task keeps its definition and its state; its timer is stopped.
    type: bool
    default: true
  validate:
    description:
      - Whether to log in to the remote server and to the local server (through the target's master user, on
        behalf of O(local_user)) before storing the definition, and to refuse it if a login fails.
      - The failure names the cause and carries RV(kind) (V(connect_failed), V(tls_failed), V(auth_failed),
        V(starttls_unsupported) or V(timeout)) and RV(side) (V(remote) or V(local)); nothing is written.
      - The logins are checked on every run of the task with O(validate=true), also when the definition is
        unchanged, and also in check mode when the target is defined. Ignored with O(state=absent).
    type: bool
    default: false
  config_dir:
    description:
      - The directory of the collection's definitions on the managed host. It is created when missing, except in
        check mode.
    type: path
    default: /etc/mailops-imap
  state_dir:
    description:
      - The directory of the sync state and run records on the managed host.
      - Not written by this module. With O(state=absent) the task's state and logs there are kept.
    type: path
    default: /var/lib/mailops-imap
notes:
  - Run it as root (C(become=true)) for the default O(config_dir); the remote password is readable by root only.
  - Declaring a task does not run it; use M(mailops.imap.migrate) with C(task=NAME), C(imapsyncctl run NAME), or
    O(schedule=interval) with the C(mailops.imap.imapsync) role.
seealso:
  - module: mailops.imap.mail_target
  - module: mailops.imap.migrate
"""

EXAMPLES = r"""
- name: Declare the local Dovecot first
  mailops.imap.mail_target:
    master_password: "{{ vault_dovecot_master_password }}"
  become: true

- name: Declare the migration of alice's account, checking both logins first
  mailops.imap.sync_task:
    name: alice
    remote_host: imap.old.example.org
    remote_security: ssl
    remote_user: alice@example.org
    remote_password: "{{ vault_alice_password }}"
    local_user: alice
    folders: all_except
    exclude:
      - ^Spam$
      - ^Trash(/|$)
    validate: true
  become: true

- name: Fetch the unseen mail of a provider's INBOX every 10 minutes and let Sieve sort it
  mailops.imap.sync_task:
    name: carol-provider
    remote_host: mail.provider.example
    remote_user: carol@provider.example
    remote_password: "{{ vault_carol_password }}"
    local_user: carol
    folders: inbox
    delete_remote: older_than
    delete_remote_days: 30
    schedule: interval
    interval_minutes: 10
  become: true

- name: Remove a task (its sync state stays, so declaring it again continues where it stopped)
  mailops.imap.sync_task:
    name: alice
    state: absent
  become: true
"""

RETURN = r"""
definition:
  description:
    - The definition as stored after the task, every field with its value (defaults included), without the
      remote password. Empty with O(state=absent).
  returned: always
  type: dict
  sample:
    name: alice
    target: default
    local_user: alice
    remote_user: alice@example.org
    remote_host: imap.old.example.org
    remote_security: ssl
    remote_port: 993
    validate_certs: true
    ca_file: null
    folders: all_except
    exclude: ["^Spam$", "^Trash(/|$)"]
    delete_remote: never
    delete_remote_days: null
    schedule: manual
    interval_minutes: null
    sieve: true
    special_use_mapping: true
    engine: builtin
    delivery: imap
    enabled: true
password_changed:
  description:
    - Whether the stored remote password was (in check mode, would be) set or replaced. Never the value.
    - Always V(false) with O(state=absent).
  returned: always
  type: bool
  sample: false
kind:
  description:
    - With O(validate=true), the classification of the first failed login, for programs to act on.
  returned: when a login fails with O(validate=true)
  type: str
  sample: auth_failed
side:
  description:
    - With O(validate=true), the server whose login failed first, V(remote) or V(local).
  returned: when a login fails with O(validate=true)
  type: str
  sample: remote
errors:
  description:
    - With O(validate=true), every failed login.
  returned: when a login fails with O(validate=true)
  type: list
  elements: dict
  contains:
    kind:
      description: V(connect_failed), V(tls_failed), V(auth_failed), V(starttls_unsupported) or V(timeout).
      type: str
      sample: auth_failed
    side:
      description: V(remote) or V(local).
      type: str
      sample: remote
    detail:
      description: A sentence naming the server, the cause and the fix.
      type: str
      sample: "The remote server imap.old.example.org:993 refused the login of alice@example.org; check remote_user and remote_password."
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.imap.plugins.module_utils import _definitions as defs
from ansible_collections.mailops.imap.plugins.module_utils._definitions_spec import sync_task_argument_spec, sync_task_required_if
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, runner, sync
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store, check_name

KIND = "tasks"


def _check_name(kind: str, field: str, value: str) -> str:
    try:
        return check_name(kind, value)
    except ConfigError as exc:
        raise ConfigError(f"{field}: {exc}") from None


def main() -> None:
    module = AnsibleModule(argument_spec=sync_task_argument_spec(), required_if=sync_task_required_if(), supports_check_mode=True)
    params = module.params
    store = Store(params["config_dir"], params["state_dir"])
    name = params["name"]

    try:
        if params["state"] == "absent":
            change = defs.plan_absent(store, KIND, _check_name(KIND, "name", name))
        else:
            task = config.parse_task({field: params[field] for field in config.TASK_FIELDS})
            name = _check_name(KIND, "name", name)
            _check_name("targets", "target", task.target)
            if task.exclude and task.folders != "all_except":
                module.warn(f"exclude is ignored with folders: {task.folders}; use folders: all_except to exclude folders.")
            change = defs.plan_present(store, KIND, name, task.public(), task.remote_password)

            if defs.target_missing(store, task.target):
                if not module.check_mode:
                    module.fail_json(msg=defs.missing_target_message(store, task.target))
                module.warn(defs.missing_target_warning(store, task.target, params["validate"]))
            elif params["validate"]:
                if not sync.HAS_IMAPCLIENT:
                    module.fail_json(msg=missing_required_lib("imapclient") + " It is needed by validate: true.",
                                     exception=sync.IMAPCLIENT_IMPORT_ERROR)
                problems = runner.check_logins(task, store.load_target(task.target))
                if problems:
                    module.fail_json(**defs.login_failure(problems))
    except ConfigError as exc:
        module.fail_json(msg=str(exc))

    if not module.check_mode:
        try:
            change.apply(store)
        except (OSError, ConfigError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            module.fail_json(msg=f"The sync task {name!r} cannot be written under {store.config_dir} ({reason}); "
                                 "run the task as root (become: true) or choose a writable config_dir.")

    result = {
        "changed": change.changed,
        "definition": change.definition(),
        "password_changed": change.after is not None and change.secret_changed,
    }
    if module._diff:
        result["diff"] = change.diff()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
