#!/usr/bin/python
# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: mail_target
short_description: Declare the local mail server that sync tasks deliver to
version_added: 0.1.0
description:
  - Declares (or removes) a mail target on the managed host, the local mail server (Dovecot, for example
    NethServer 8's Mail application) that receives the mail of the sync tasks, reached through a Dovecot
    master user.
  - Sync tasks (M(mailops.imap.sync_task)) name the target they deliver to; the timers and C(imapsyncctl)
    read the definition from O(config_dir).
  - The definition is stored in C(targets/NAME.json) under O(config_dir) (mode 0600, no secret in it), the master
    password apart in C(secrets/targets/NAME) under O(config_dir), readable by its owner (root) only (mode 0600, in
    directories of mode 0700). Both files are replaced atomically.
  - The definition is stored normalized (every field, defaults included), so declaring the same target again
    reports no change. A changed master password is a change; it is never shown, the diff shows a placeholder.
  - A target that sync tasks still use is not removed; the task fails with a sentence naming those tasks.
  - Nothing is contacted. To check the login of the master user, declare a sync task with
    O(mailops.imap.sync_task#module:validate=true).
author:
  - mailops.imap maintainers (@mailops)
extends_documentation_fragment:
  - mailops.imap.fields.target
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change, writes nothing.
  diff_mode:
    support: full
    details: Shows the definition before and after, the master password as a placeholder.
  platform:
    platforms: posix
options:
  state:
    description:
      - V(present) stores the definition, V(absent) removes it and its master password.
      - A target still used by a sync task is not removed (in check mode, a warning says that the real run would
        refuse, since earlier tasks that remove those sync tasks write nothing in check mode).
    type: str
    choices: [present, absent]
    default: present
  config_dir:
    description:
      - The directory of the collection's definitions on the managed host. It is created when missing, except in
        check mode.
    type: path
    default: /etc/mailops-imap
  state_dir:
    description:
      - The directory of the sync state and run records on the managed host.
      - Not used by this module; accepted so that every module of the collection can be relocated alike.
    type: path
    default: /var/lib/mailops-imap
notes:
  - Run it as root (C(become=true)) for the default O(config_dir); the master password is readable by root only.
seealso:
  - module: mailops.imap.sync_task
  - module: mailops.imap.migrate
"""

EXAMPLES = r"""
- name: Declare the local Dovecot of a NethServer 8 node
  mailops.imap.mail_target:
    master_user: vmail
    master_password: "{{ vault_dovecot_master_password }}"
  become: true

- name: Declare a second target reached over implicit TLS with a private CA
  mailops.imap.mail_target:
    name: mx2
    host: mx2.example.org
    security: ssl
    ca_file: /etc/ssl/certs/example-ca.pem
    master_password: "{{ vault_mx2_master_password }}"
  become: true

- name: Remove a target that no sync task uses any more
  mailops.imap.mail_target:
    name: mx2
    state: absent
  become: true
"""

RETURN = r"""
definition:
  description:
    - The definition as stored after the task, every field with its value (defaults included), without the
      master password (the sample shows a few fields). Empty with O(state=absent).
  returned: always
  type: dict
  sample:
    name: default
    host: 127.0.0.1
    port: 143
    master_user: vmail
master_password_changed:
  description:
    - Whether the stored master password was (in check mode, would be) set or replaced. Never the value.
    - Always V(false) with O(state=absent).
  returned: always
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.imap.plugins.module_utils import _definitions as defs
from ansible_collections.mailops.imap.plugins.module_utils._definitions_spec import mail_target_argument_spec, mail_target_required_if
from ansible_collections.mailops.imap.plugins.module_utils._engine import config
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store, check_name

KIND = "targets"


def main() -> None:
    module = AnsibleModule(argument_spec=mail_target_argument_spec(), required_if=mail_target_required_if(), supports_check_mode=True)
    params = module.params
    store = Store(params["config_dir"], params["state_dir"])

    try:
        try:
            name = check_name(KIND, params["name"])
        except ConfigError as exc:
            raise ConfigError(f"name: {exc}") from None
        if params["state"] == "present":
            if params["master_password"] == "":
                raise ConfigError("master_password is empty; give the password of the Dovecot master user.")
            target = config.parse_target({field: params[field] for field in config.TARGET_FIELDS})
            change = defs.plan_present(store, KIND, name, target.public(), target.master_password)
        else:
            change = defs.plan_absent(store, KIND, name)
            users = defs.tasks_using_target(store, name) if change.changed else []
            if users and module.check_mode:
                module.warn(defs.target_in_use_message(name, users) + " A real run refuses unless they are gone by then.")
            elif users:
                module.fail_json(msg=defs.target_in_use_message(name, users), tasks=users)
    except ConfigError as exc:
        module.fail_json(msg=str(exc))

    if not module.check_mode:
        try:
            change.apply(store)
        except (OSError, ConfigError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            module.fail_json(msg=f"The mail target {name!r} cannot be written under {store.config_dir} ({reason}); "
                                 "run the task as root (become: true) or choose a writable config_dir.")

    result = {
        "changed": change.changed,
        "definition": change.definition(),
        "master_password_changed": change.after is not None and change.secret_changed,
    }
    if module._diff:
        result["diff"] = change.diff()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
