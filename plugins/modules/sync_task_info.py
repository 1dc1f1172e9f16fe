#!/usr/bin/python
# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sync_task_info
short_description: Show the sync tasks defined on a host, whether they run, how their last run went and when the next is
version_added: 0.1.0
description:
  - Lists the sync tasks defined on the managed host (with M(mailops.imap.sync_task)), or one of them by name.
  - For each task, its definition and its mail target without any secret, whether a run is active now (and its
    process), the result of its last run (the same shape as the result of M(mailops.imap.migrate)), and when its
    systemd timer fires next.
  - Reads only the public definition files, never a secret; changes nothing.
author:
  - mailops.imap maintainers (@mailops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module changes nothing; it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  name:
    description:
      - The name of one task to show. A name that is not defined is an error.
      - When omitted, every defined task is shown, sorted by name (an empty list when there is none).
    type: str
  config_dir:
    description:
      - The directory of the collection's definitions on the managed host.
    type: path
    default: /etc/mailops-imap
  state_dir:
    description:
      - The directory of the tasks' state and run records on the managed host.
    type: path
    default: /var/lib/mailops-imap
notes:
  - The next run is asked of systemd (C(systemctl list-timers), or C(systemctl show) on older systemd) for the unit
    C(mailops-imapsync@NAME.timer), first in the system manager, then in the user manager of the connecting user. It is
    null when there is no systemctl, no running manager, no such timer, or the timer is stopped; a problem with
    systemd never fails the module.
  - Whether a task runs is read from the task's lock, so a run started by C(imapsyncctl), a timer or
    M(mailops.imap.migrate) counts alike.
seealso:
  - module: mailops.imap.sync_task
  - module: mailops.imap.migrate
"""

EXAMPLES = r"""
- name: Show every sync task of the host
  mailops.imap.sync_task_info:
  become: true
  register: info

- name: Report the tasks whose last run did not succeed
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.last_result.status }} ({{ item.last_result.errors | map(attribute='detail') | join('; ') }})"
  loop: "{{ info.tasks | selectattr('last_result') | rejectattr('last_result.status', 'equalto', 'success') }}"
  loop_control:
    label: "{{ item.name }}"

- name: Show one task
  mailops.imap.sync_task_info:
    name: inbox-carol
  become: true
  register: carol

- name: Say when it runs next
  ansible.builtin.debug:
    msg: "{{ carol.tasks[0].next_run | default('not scheduled', true) }}"
"""

RETURN = r"""
tasks:
  description: One entry per task, sorted by name (only the named one with O(name)).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The name of the task.
      type: str
      sample: inbox-carol
    definition:
      description:
        - The task's definition as stored on the host (the fields of M(mailops.imap.sync_task)), without the remote
          password.
      type: dict
      sample: {"name": "inbox-carol", "target": "default", "local_user": "carol", "remote_user": "carol@provider.example",
               "remote_host": "mail.provider.example", "folders": "inbox", "schedule": "interval", "interval_minutes": 15}
    target:
      description:
        - The definition of the task's mail target (the fields of M(mailops.imap.mail_target)) without the master
          password; null when that target is not defined.
      type: dict
      sample: {"name": "default", "host": "127.0.0.1", "port": 143, "security": "starttls", "validate_certs": true,
               "ca_file": null, "master_user": "vmail", "master_separator": "*", "lmtp_host": "127.0.0.1", "lmtp_port": 24}
    running:
      description: Whether a run of the task is active now.
      type: bool
      sample: false
    pid:
      description: The process of the active run; null when none runs or the process is not known.
      type: int
      sample: null
    last_result:
      description:
        - The result of the last real run (check mode runs are not recorded), in the shape of the result of
          M(mailops.imap.migrate) (C(task), C(status), C(check_mode), C(started), C(finished), C(duration_s),
          C(folders), C(totals), C(errors), C(notices)); null when the task never ran.
      type: dict
      sample: {"task": "inbox-carol", "status": "success", "check_mode": false, "started": "2026-01-31T09:00:00+00:00",
               "finished": "2026-01-31T09:00:02+00:00", "duration_s": 1.8, "folders": [],
               "totals": {"copied": 0, "bytes": 0, "already_present": 0, "flags_updated": 0, "deleted_remote": 0,
                          "folders_created": 0, "errors": 0}, "errors": [], "notices": []}
    next_run:
      description:
        - When the task's systemd timer fires next (ISO 8601, UTC); null without a scheduled timer.
      type: str
      sample: "2026-01-31T09:15:00+00:00"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.imap.plugins.module_utils._argspec import sync_task_info_argument_spec
from ansible_collections.mailops.imap.plugins.module_utils._engine import errors, info
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store


def main() -> None:
    module = AnsibleModule(argument_spec=sync_task_info_argument_spec(), supports_check_mode=True)
    store = Store(module.params["config_dir"], module.params["state_dir"])
    try:
        tasks = info.tasks_info(store, module.params["name"])
    except errors.ConfigError as exc:
        module.fail_json(msg=str(exc), changed=False)
    module.exit_json(changed=False, tasks=tasks)


if __name__ == "__main__":
    main()
