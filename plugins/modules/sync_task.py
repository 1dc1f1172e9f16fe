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
  - The definition is stored in C(tasks/NAME.json) under O(config_dir) (mode 0600, no secret in it), the remote
    password apart in C(secrets/tasks/NAME) under O(config_dir), readable by its owner (root) only (mode 0600, in
    directories of mode 0700). Both files are replaced atomically.
  - The definition is stored normalized (every field, defaults included), so declaring the same task again
    reports no change. A changed remote password is a change; it is never shown, the diff shows a placeholder.
  - With O(validate=true) the module first logs in to the remote server and, through the target's master user,
    to the local server, as a run would, and refuses the definition with the classified error if a login fails,
    like the credential check of NethServer 8 when a task is created.
  - Removing a task (O(state=absent)) removes its definition and its password. Its sync state and run logs in
    O(state_dir) are kept, so a task declared again under the same name continues incrementally.
  - Many tasks at once (O(tasks)) take one module call whatever their number, as the C(mailops.imap.imapsync) role
    does; with O(purge=true) the call also removes every stored task that is not listed.
  - A task with O(engine=imapsync) is refused when upstream imapsync cannot express one of its options (for example
    O(folders=inbox), O(delete_remote=older_than), an O(exclude) expression Perl reads differently); the message
    names every such option, the reason and the fix.
author:
  - mailops.imap maintainers (@mailops)
requirements:
  - the Python library imapclient on the managed host, with O(validate=true)
extends_documentation_fragment:
  - mailops.imap.fields.sync_task
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports what would change and writes nothing.
      - With O(validate=true) it logs in to both servers too (and logs out), when the target is defined.
      - A target that is not defined yet only gives a warning, since an earlier M(mailops.imap.mail_target) task
        writes nothing in check mode. The options of a task with O(engine=imapsync) are then checked against a
        target with default values (its master password is checked by the real run, once the target is defined).
  diff_mode:
    support: full
    details:
      - Shows the definition before and after, the remote password as a placeholder.
      - With O(tasks), only the definitions that change (created, updated or removed), by name.
  platform:
    platforms: posix
options:
  tasks:
    description:
      - Many tasks declared in one call (the bulk mode), each element a task with the fields of the single mode.
      - A field an element leaves out takes the value of the module option of the same name, or its default. So
        O(target), O(remote_host) or O(remote_security) can be given once for all tasks.
      - Each element is checked (name, required fields, values) before anything is written; a bad element is an
        error that names its position and its task, and then nothing is written. Names must be unique.
      - Only O(state=present); see O(purge) to remove tasks.
  purge:
    description:
      - With O(tasks), whether every stored task that is not listed is removed (its definition and its password,
        as with O(state=absent); its sync state and logs are kept).
      - Only with O(tasks).
    type: bool
    default: false
  state:
    description:
      - V(present) stores the definition, V(absent) removes it and its password (not its sync state nor its logs).
      - Only V(present) with O(tasks).
    type: str
    choices: [present, absent]
    default: present
  validate:
    description:
      - Whether to log in to the remote server and to the local server (through the target's master user, on
        behalf of O(local_user)) before storing the definition, and to refuse it if a login fails.
      - The failure names the cause and carries RV(kind) (V(connect_failed), V(tls_failed), V(auth_failed),
        V(starttls_unsupported), V(timeout) or V(server_busy)) and RV(side) (V(remote) or V(local)); nothing is
        written.
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

- name: Declare every task of the host in one call, removing the stored tasks that are not listed
  mailops.imap.sync_task:
    remote_host: imap.old.example.org   # for every task that gives none
    remote_security: ssl
    tasks:
      - name: alice
        local_user: alice
        remote_user: alice@example.org
        remote_password: "{{ vault_alice_password }}"
      - name: bob-inbox
        local_user: bob
        remote_user: bob@example.org
        remote_password: "{{ vault_bob_password }}"
        folders: inbox
        schedule: interval
        interval_minutes: 5
    purge: true
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
      remote password (the sample shows a few fields). Empty with O(state=absent).
  returned: with O(name)
  type: dict
  sample:
    name: alice
    target: default
    local_user: alice
    remote_host: imap.old.example.org
    remote_port: 993
    folders: all_except
    exclude: ["^Spam$"]
    schedule: manual
password_changed:
  description:
    - Whether the stored remote password was (in check mode, would be) set or replaced. Never the value.
    - Always V(false) with O(state=absent).
  returned: with O(name)
  type: bool
  sample: false
results:
  description:
    - With O(tasks), one entry per listed task, in the order given.
  returned: with O(tasks)
  type: list
  elements: dict
  contains:
    name:
      description: The name of the task.
      type: str
      sample: alice
    action:
      description: What happened (in check mode, would happen) to its definition.
      type: str
      sample: created
      choices: [created, updated, unchanged]
    changed:
      description: Whether its definition or its password changed.
      type: bool
      sample: true
    password_changed:
      description: Whether its stored remote password was (would be) set or replaced. Never the value.
      type: bool
      sample: true
removed:
  description:
    - With O(tasks) and O(purge=true), the names of the stored tasks that were (in check mode, would be) removed.
  returned: with O(tasks)
  type: list
  elements: str
  sample: [old-task]
summary:
  description:
    - With O(tasks), how many definitions were (would be) created, updated, left unchanged and removed.
  returned: with O(tasks)
  type: dict
  sample: {created: 2, updated: 0, unchanged: 498, removed: 1}
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
    task:
      description: With O(tasks), the name of the task whose login failed.
      type: str
      sample: alice
    kind:
      description: V(connect_failed), V(tls_failed), V(auth_failed), V(starttls_unsupported), V(timeout) or V(server_busy).
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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.validation import check_required_if

from ansible_collections.mailops.imap.plugins.module_utils import _definitions as defs
from ansible_collections.mailops.imap.plugins.module_utils import _definitions_spec as spec
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, imapsync_cmd, runner
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store, check_name, task_secret
from ansible_collections.mailops.imap.plugins.module_utils._requirements import refuse_unsupported_python, require_imapclient

KIND = "tasks"


def _check_name(kind: str, field: str, value: str) -> str:
    try:
        return check_name(kind, value)
    except ConfigError as exc:
        raise ConfigError(f"{field}: {exc}") from None


class Targets:
    """The mail targets the declared tasks name: whether each is defined, and its definition (read once each)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._loaded: dict[str, config.Target | None] = {}

    def missing(self, name: str) -> bool:
        return self.get(name) is None

    def get(self, name: str) -> config.Target | None:
        if name not in self._loaded:
            self._loaded[name] = None if defs.target_missing(self.store, name) else self.store.load_target(name)
        return self._loaded[name]

    def for_checks(self, name: str) -> config.Target:
        """The stored target, else (check mode, not defined yet) a target with default values and that name."""
        return self.get(name) or config.Target(name=name)


def _check_imapsync(task: config.Task, targets: Targets) -> None:
    """Refuse a task for imapsync that upstream imapsync cannot express (ConfigError naming every option)."""
    if task.engine == "imapsync":
        imapsync_cmd.check_expressible(task, targets.for_checks(task.target))


def _require_imapclient(module: AnsibleModule) -> None:
    refuse_unsupported_python(module, " It is needed by validate: true.")
    require_imapclient(module, " It is needed by validate: true.")


def _write_failed(module: AnsibleModule, store: Store, what: str, exc: Exception) -> None:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    module.fail_json(msg=f"{what} cannot be written under {store.config_dir} ({reason}); "
                         "run the task as root (become: true) or choose a writable config_dir.")


def single(module: AnsibleModule, store: Store) -> None:
    """One task, by name: store it (state: present) or remove it (state: absent)."""
    params = module.params
    name = params["name"]
    if params["purge"]:
        module.fail_json(msg="purge works with tasks (it removes the stored tasks not listed there); "
                             "to remove the task named by name, use state: absent.")
    try:
        check_required_if(spec.sync_task_required_if(), {key: value for key, value in params.items() if value is not None})
    except TypeError as exc:
        module.fail_json(msg=str(exc))
    targets = Targets(store)

    try:
        if params["state"] == "absent":
            change = defs.plan_absent(store, KIND, _check_name(KIND, "name", name))
        else:
            task = config.parse_task({field: params[field] for field in config.TASK_FIELDS})
            name = _check_name(KIND, "name", name)
            _check_name("targets", "target", task.target)
            if task.exclude and task.folders != "all_except":
                module.warn(f"exclude is ignored with folders: {task.folders}; use folders: all_except to exclude folders.")
            _check_imapsync(task, targets)
            change = defs.plan_present(store, KIND, name, task.public(), task_secret(task))

            if targets.missing(task.target):
                if not module.check_mode:
                    module.fail_json(msg=defs.missing_target_message(store, task.target))
                module.warn(defs.missing_target_warning(store, task.target, params["validate"]))
            elif params["validate"]:
                _require_imapclient(module)
                problems = runner.check_logins(task, targets.for_checks(task.target))
                if problems:
                    module.fail_json(**defs.login_failure(problems))
    except ConfigError as exc:
        module.fail_json(msg=str(exc))

    if not module.check_mode:
        try:
            change.apply(store)
        except (OSError, ConfigError) as exc:
            _write_failed(module, store, f"The sync task {name!r}", exc)

    result = {
        "changed": change.changed,
        "definition": change.definition(),
        "password_changed": change.after is not None and change.secret_changed,
    }
    if module._diff:
        result["diff"] = change.diff()
    module.exit_json(**result)


def _plural(names: list[str]) -> str:
    return "is" if len(names) == 1 else "are"


def parse_elements(params: dict, targets: Targets) -> tuple[list[config.Task], list[str]]:
    """Every element of ``tasks`` merged with the module call's values and validated; the problems found.

    Each problem is a sentence naming the element (its position and its name).
    """
    defaults = spec.task_defaults(params)
    problems: list[str] = []
    parsed: list[config.Task] = []
    seen: dict[str, int] = {}
    for index, element in enumerate(params["tasks"], start=1):
        label = f"tasks entry {index}"
        try:
            name = _check_name(KIND, "name", element.get("name"))
        except ConfigError as exc:
            problems.append(f"{label}: {exc}")
            continue
        label = f"tasks entry {index} ({name})"
        if name in seen:
            problems.append(f"{label}: the name {name!r} is already used by tasks entry {seen[name]}; task names must be unique.")
            continue
        seen[name] = index
        data = spec.merge_task(defaults, element)
        missing = spec.missing_fields(data)
        if missing:
            problems.append(f"{label}: {', '.join(missing)} {_plural(missing)} required; give "
                            f"{'it' if len(missing) == 1 else 'them'} in the task or once for all tasks in the module call.")
            continue
        try:
            task = config.parse_task(data)
            _check_name("targets", "target", task.target)
            _check_imapsync(task, targets)
        except ConfigError as exc:
            problems.append(f"{label}: {exc}")
            continue
        parsed.append(task)
    return parsed, problems


def bulk(module: AnsibleModule, store: Store) -> None:
    """Many tasks at once (``tasks``), and with ``purge`` the removal of the stored tasks not listed."""
    params = module.params
    if params["state"] != "present":
        module.fail_json(msg="state: absent removes the one task named by name; with tasks, use purge: true to remove "
                             "the stored tasks that are not listed.")
    targets = Targets(store)
    try:
        parsed, problems = parse_elements(params, targets)
        if problems:
            module.fail_json(msg=spec_join(problems))

        ignored = [task.name for task in parsed if task.exclude and task.folders != "all_except"]
        if ignored:
            module.warn(f"exclude is ignored by the task(s) {', '.join(str(n) for n in ignored)}, whose folders is not "
                        "all_except; use folders: all_except to exclude folders.")
        missing = sorted({task.target for task in parsed if targets.missing(task.target)})
        for target in missing:
            if not module.check_mode:
                module.fail_json(msg=defs.missing_target_message(store, target))
            module.warn(defs.missing_target_warning(store, target, params["validate"]))
        if params["validate"]:
            checkable = [task for task in parsed if not targets.missing(task.target)]
            if checkable:
                _require_imapclient(module)
            failures = []
            for task in checkable:
                for problem in runner.check_logins(task, targets.for_checks(task.target)):
                    failures.append(dict(problem, task=task.name))
            if failures:
                failed = defs.login_failure(failures)
                failed["msg"] = " ".join(f"{p['task']}: {p['detail']}" for p in failures) + \
                    " No definition was saved (validate: true)."
                failed["errors"] = [dict(e, task=p["task"]) for e, p in zip(failed["errors"], failures)]
                module.fail_json(**failed)
        change = defs.plan_bulk(store, KIND, [(str(task.name), task.public(), task_secret(task)) for task in parsed],
                                params["purge"])
    except ConfigError as exc:
        module.fail_json(msg=str(exc))

    if not module.check_mode:
        try:
            change.apply(store)
        except (OSError, ConfigError) as exc:
            _write_failed(module, store, "The sync tasks", exc)

    result = {
        "changed": change.changed,
        "results": change.results(),
        "removed": change.removed(),
        "summary": change.counts(),
    }
    if module._diff:
        result["diff"] = change.diff()
    module.exit_json(**result)


def spec_join(problems: list[str]) -> str:
    """Several problems as one message (the first 20, and how many more)."""
    shown = problems[:20]
    if len(problems) > 20:
        shown.append(f"And {len(problems) - 20} more problem(s); nothing was written.")
    else:
        shown.append("Nothing was written.")
    return " ".join(shown)


def main() -> None:
    module = AnsibleModule(argument_spec=spec.sync_task_module_argument_spec(),
                           mutually_exclusive=spec.sync_task_mutually_exclusive(),
                           required_one_of=spec.sync_task_required_one_of(),
                           supports_check_mode=True)
    store = Store(module.params["config_dir"], module.params["state_dir"])
    if module.params["tasks"] is not None:
        bulk(module, store)
    else:
        single(module, store)


if __name__ == "__main__":
    main()
