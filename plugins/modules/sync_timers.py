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
    their number. It is the module the C(mailops.imap.imapsync) role uses.
  - With O(service), it also writes the template service C(mailops-imapsync@.service) that the timers start (and
    that C(systemctl start mailops-imapsync@NAME.service) runs), so that every unit file of the tasks comes from
    this module.
  - Each enabled task with O(tasks[].schedule=interval) gets a timer file in O(unit_dir). It starts the task's
    service O(first_delay) after the timer starts (when it is started here, and at every boot), then
    O(tasks[].interval_minutes) minutes after the last start of the service. The timer is enabled and started.
  - The timer of a task that is manual or disabled is stopped, disabled and its file removed. With O(purge=true)
    so is the timer of every task that is not listed, and the service instance of such a task is stopped (a
    running sync ends after its current batch, with its state saved) and, when failed, reset, so that nothing of
    it stays loaded.
  - The state of every unit is read with one C(systemctl show) call; systemctl is called only where something
    must change, each action once for all the units that need it.
  - C(systemctl daemon-reload) runs when a unit file changes (a timer file, or the service of O(service)), when
    systemd reports that a timer or a loaded service instance of the tasks needs it (C(NeedDaemonReload=yes), its
    file changed since the manager read it, for example written by an earlier run that failed before its reload,
    so a reload is never lost), or with O(daemon_reload=true).
  - Unit files are written atomically, and only when their text changes.
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
    details: Shows each unit file that changes (the service, the timers), before and after, and the systemctl actions.
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
      - Where the unit files are written. Defaults to C(/etc/systemd/system) with O(scope=system) and to
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
      - Whether to reload the manager even when no unit file changes here, because another unit file of the tasks
        changed (a drop-in written by another task, for example).
    type: bool
    default: false
  service:
    description:
      - The template service C(mailops-imapsync@.service) to write in O(unit_dir), as the role describes it. Left
        out, the service file is not touched.
      - Its C(ExecStart) runs C(LAUNCHER --config-dir CONFIG_DIR --state-dir STATE_DIR run TASK). A start that
        meets a run of the same task ends as skipped (exit code 75), which counts as a success. The service is
        hardened (no new privileges, a system call filter, and with O(service.sandbox) a read-only view of the host
        where only O(service.state_dir) is writable).
      - Every path must be absolute, without spaces, control characters, quotes, backslashes, C(%) or C(;) (they
        go into the unit file as they are).
    type: dict
    suboptions:
      launcher:
        description: The path of C(imapsyncctl) on the host.
        type: str
        required: true
      config_dir:
        description: Where the definitions are (C(--config-dir)).
        type: str
        required: true
      state_dir:
        description: Where the state, the results and the logs are (C(--state-dir)); the one writable directory.
        type: str
        required: true
      stop_timeout:
        description:
          - How long a stopped run may take to finish its current batch and save its state (C(TimeoutStopSec)),
            in seconds.
        type: int
        default: 300
      start_timeout:
        description:
          - The longest a run may take (C(TimeoutStartSec)), a number with C(s), C(min), C(h) or C(d), or
            V(infinity). Past it the run is stopped as by C(systemctl stop) and the next run resumes.
        type: str
        default: 12h
      memory_max:
        description: The most memory a run may use (C(MemoryMax)), bytes with C(K), C(M), C(G) or C(T), or V(infinity).
        type: str
        default: 1G
      sandbox:
        description:
          - Whether to use the directives that need a user or mount namespace (C(PrivateUsers), C(ProtectSystem),
            C(ProtectHome), C(PrivateTmp), ...). Always on with O(scope=system); turn it off for user managers
            without unprivileged user namespaces.
        type: bool
        default: true
      read_paths:
        description:
          - The paths a run reads (the launcher, the engine, the interpreter, CA files, ...). Those under
            C(/home), C(/root), C(/run/user), C(/tmp) or C(/var/tmp), which the sandbox hides, are bound into it
            read-only.
        type: list
        elements: str
        default: []
      write_paths:
        description:
          - The paths a run writes besides O(service.state_dir) (an LMTP socket). Those the sandbox hides are bound
            into it.
        type: list
        elements: str
        default: []
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

- name: The service the timers start, and the timers
  mailops.imap.sync_timers:
    tasks:
      - name: carol-provider
        schedule: interval
        interval_minutes: 5
    service:
      launcher: /usr/local/bin/imapsyncctl
      config_dir: /etc/mailops-imap
      state_dir: /var/lib/mailops-imap
      start_timeout: 6h
      memory_max: 512M
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
service_changed:
  description: Whether the file of the template service was (would be) written, with O(service).
  returned: always
  type: bool
  sample: false
reloaded:
  description:
    - Whether C(systemctl daemon-reload) ran (would run), because a unit file changed, systemd reported a unit of the
      tasks that needs it, or O(daemon_reload=true).
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
        "service": {"type": "dict", "options": {
            "launcher": {"type": "str", "required": True},
            "config_dir": {"type": "str", "required": True},
            "state_dir": {"type": "str", "required": True},
            "stop_timeout": {"type": "int", "default": 300},
            "start_timeout": {"type": "str", "default": "12h"},
            "memory_max": {"type": "str", "default": "1G"},
            "sandbox": {"type": "bool", "default": True},
            "read_paths": {"type": "list", "elements": "str", "default": []},
            "write_paths": {"type": "list", "elements": "str", "default": []},
        }},
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
        service = units.parse_service(params["service"]) if params["service"] is not None else None
    except ConfigError as exc:
        module.fail_json(msg=str(exc))

    systemctl = units.Systemctl(scope, module.get_bin_path("systemctl") or "systemctl")
    try:
        change = units.plan(tasks, unit_dir, systemctl, purge=params["purge"], first_delay=first_delay, accuracy=accuracy,
                            randomized_delay=randomized_delay, reload_requested=params["daemon_reload"], service=service)
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
            module.fail_json(msg=f"The unit files cannot be written in {unit_dir} ({exc.strerror}); run as root "
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
        "service_changed": change.service is not None,
        "reloaded": change.reload,
    }
    if module._diff:
        result["diff"] = change.diff()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
