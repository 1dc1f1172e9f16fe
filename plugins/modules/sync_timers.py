#!/usr/bin/python
# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sync_timers
short_description: Install, start, stop and remove the systemd timers of sync tasks
version_added: 0.1.0
description:
  - Makes the systemd timers C(mailops-imapsync@NAME.timer) of a host match its sync tasks, in one call whatever
    their number. It is the module the C(mailops.imap.imapsync) role uses; the role also writes the template
    service C(mailops-imapsync@.service) that the timers start.
  - Each enabled task with O(tasks[].schedule=interval) gets a timer file in O(unit_dir). It starts the task's
    service O(first_delay) after the timer starts (when it is started here, and at every boot), then
    O(tasks[].interval_minutes) minutes after the last start of the service. The timer is enabled and started.
  - The timer of a task that is manual or disabled is stopped, disabled and its file removed. With O(purge=true)
    so is the timer of every task that is not listed, and the service instance of such a task is stopped (a
    running sync ends after its current batch, with its state saved) and, when failed, reset, so that nothing of
    it stays loaded.
  - The state of every unit is read with one C(systemctl show) call; systemctl is called only where something
    must change, each action once for all the units that need it. C(systemctl daemon-reload) runs only when a
    timer file changed, or with O(daemon_reload=true).
author:
  - mailops.imap maintainers (@mailops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change (files and systemctl actions) and changes nothing; it only asks systemctl.
  diff_mode:
    support: full
    details: Shows each timer file that changes, before and after, and the systemctl actions.
  platform:
    platforms: posix
options:
  tasks:
    description:
      - The sync tasks of the host, as declared with M(mailops.imap.sync_task). Only the fields below matter here.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The name of the task.
        type: str
        required: true
      schedule:
        description: V(interval) for a task run by its timer, V(manual) for a task without timer.
        type: str
        choices: [manual, interval]
        default: manual
      interval_minutes:
        description: With O(tasks[].schedule=interval), the minutes between two runs, 1 to 1440.
        type: int
      enabled:
        description: Whether the task is active; a disabled task has no timer.
        type: bool
        default: true
  scope:
    description:
      - V(system) for the units of the system manager (C(systemctl)), V(user) for those of the user manager of the
        user this runs as (C(systemctl --user)); that user's manager must run (for timers that run without a login
        session, enable lingering with C(loginctl enable-linger USER)).
    type: str
    choices: [system, user]
    default: system
  unit_dir:
    description:
      - Where the timer files are written. Defaults to C(/etc/systemd/system) with O(scope=system) and to
        C(~/.config/systemd/user) with O(scope=user).
    type: path
  purge:
    description:
      - Whether the timers (and the service instances) of tasks that are not listed in O(tasks) are removed too.
      - Without it, the timers of tasks that are not listed are left as they are.
    type: bool
    default: false
  first_delay:
    description:
      - The time between the start of a timer (when this module starts it, and at boot) and the first run of its
        task, as a systemd time span (V(30s), V(1min), V(1min 30s)).
    type: str
    default: 1min
  accuracy:
    description:
      - How late systemd may start a task to group wake-ups (C(AccuracySec)), as a systemd time span.
    type: str
    default: 1s
  randomized_delay:
    description:
      - A delay of up to this time span added to every run, fixed per task (C(RandomizedDelaySec) with
        C(FixedRandomDelay)), so that the tasks of a host do not all start at the same second. V(0) for none.
    type: str
    default: "0"
  daemon_reload:
    description:
      - Whether to reload the manager even when no timer file changes, because another unit file of the tasks
        changed (the role passes whether it changed the service template).
    type: bool
    default: false
notes:
  - Run it as root (C(become=true)) with O(scope=system), and as the user whose manager runs the timers with
    O(scope=user).
seealso:
  - module: mailops.imap.sync_task
  - module: mailops.imap.sync_task_info
"""

EXAMPLES = r"""
- name: One timer per enabled interval task, the others removed
  mailops.imap.sync_timers:
    tasks:
      - name: carol-provider
        schedule: interval
        interval_minutes: 5
      - name: alice-migration
        schedule: manual
    purge: true
  become: true
"""

RETURN = r"""
timers:
  description: The timers of the listed tasks that run after the call (enabled and started).
  returned: always
  type: list
  elements: str
  sample: [mailops-imapsync@carol-provider.timer]
written:
  description: The timer units whose file was (in check mode, would be) created or rewritten.
  returned: always
  type: list
  elements: str
  sample: [mailops-imapsync@carol-provider.timer]
removed:
  description: The timer units whose file was (would be) removed.
  returned: always
  type: list
  elements: str
  sample: []
enabled:
  description: The timers that were (would be) enabled.
  returned: always
  type: list
  elements: str
  sample: [mailops-imapsync@carol-provider.timer]
started:
  description: The timers that were (would be) started.
  returned: always
  type: list
  elements: str
  sample: [mailops-imapsync@carol-provider.timer]
stopped:
  description: The timers (and, with O(purge=true), service instances) that were (would be) stopped.
  returned: always
  type: list
  elements: str
  sample: []
disabled:
  description: The timers that were (would be) disabled.
  returned: always
  type: list
  elements: str
  sample: []
purged:
  description: With O(purge=true), the tasks not listed whose units were (would be) removed.
  returned: always
  type: list
  elements: str
  sample: []
reloaded:
  description: Whether C(systemctl daemon-reload) ran (would run).
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.imap.plugins.module_utils import _units as units
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError


def argument_spec() -> dict:
    return {
        "tasks": {"type": "list", "elements": "dict", "required": True, "options": {
            "name": {"type": "str", "required": True},
            "schedule": {"type": "str", "choices": ["manual", "interval"], "default": "manual"},
            "interval_minutes": {"type": "int"},
            "enabled": {"type": "bool", "default": True},
        }},
        "scope": {"type": "str", "choices": list(units.SCOPES), "default": "system"},
        "unit_dir": {"type": "path"},
        "purge": {"type": "bool", "default": False},
        "first_delay": {"type": "str", "default": "1min"},
        "accuracy": {"type": "str", "default": "1s"},
        "randomized_delay": {"type": "str", "default": "0"},
        "daemon_reload": {"type": "bool", "default": False},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    scope = params["scope"]
    unit_dir = params["unit_dir"] or units.default_unit_dir(scope)
    try:
        tasks = units.parse_tasks(params["tasks"])
        first_delay = units.check_timespan("first_delay", params["first_delay"])
        accuracy = units.check_timespan("accuracy", params["accuracy"])
        randomized_delay = units.check_timespan("randomized_delay", params["randomized_delay"])
    except ConfigError as exc:
        module.fail_json(msg=str(exc))

    systemctl = units.Systemctl(scope, module.get_bin_path("systemctl") or "systemctl")
    try:
        change = units.plan(tasks, unit_dir, systemctl, purge=params["purge"], first_delay=first_delay, accuracy=accuracy,
                            randomized_delay=randomized_delay, reload_requested=params["daemon_reload"])
    except units.SystemdError as exc:
        module.fail_json(msg=f"{exc} The timers cannot be managed without it; with scope: user the user's manager must "
                             "run (loginctl enable-linger USER), and XDG_RUNTIME_DIR must name its directory.")
    except OSError as exc:
        module.fail_json(msg=f"{unit_dir} cannot be read ({exc.strerror}); run as root (become: true) or give unit_dir.")

    if not module.check_mode:
        try:
            units.apply(change, systemctl)
        except units.SystemdError as exc:
            module.fail_json(msg=str(exc))
        except OSError as exc:
            module.fail_json(msg=f"The timer files cannot be written in {unit_dir} ({exc.strerror}); run as root "
                                 "(become: true) with scope: system, or give a writable unit_dir.")

    result = {
        "changed": change.changed,
        "timers": change.wanted,
        "written": change.written(),
        "removed": change.removed(),
        "enabled": change.enable,
        "started": change.start,
        "stopped": change.stop,
        "disabled": change.disable,
        "purged": change.purged,
        "reloaded": change.reload,
    }
    if module._diff:
        result["diff"] = change.diff()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
