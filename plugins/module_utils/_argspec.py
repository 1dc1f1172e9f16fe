# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specifications shared by the modules and their action plugins.

One spec per module, used twice: by ``AnsibleModule`` on the managed host and by the action plugin
on the controller (``ArgumentSpecValidator``), so both accept and refuse exactly the same input.
The task and target fields come from the engine's :mod:`schema`, the single source of truth (its faces
say which module offers which field); defaults that depend on another field (``remote_port``: 143, or 993
with ``ssl``) stay ``None`` here and are decided by :func:`config.parse_task` / :func:`config.parse_target`.

No Ansible imports: plain dicts only.
"""

from __future__ import annotations

import dataclasses
import typing as t

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, schema
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError

DEFAULT_CONFIG_DIR = "/etc/mailops-imap"
DEFAULT_STATE_DIR = "/var/lib/mailops-imap"

# The task fields an inline migrate accepts (docs/spec.md "Sync task"): the schema's migrate face. Not here: name,
# target (the migrate module takes an inline target instead), schedule, interval_minutes, engine, enabled.
MIGRATE_TASK_OPTIONS = schema.fields(schema.Task, schema.Face.MIGRATE)
# The task fields an inline migration (or every account of a bulk one, after the defaults) must have.
REQUIRED_TASK_OPTIONS = schema.needed(schema.Task)
# migrate: the options that say which migration runs (one defined task, many accounts, else inline).
MODE_OPTIONS = ("task", "accounts", "accounts_file")
DEFAULT_PARALLEL = 4
# Problems listed in one message at most (a CSV of thousands of rows must not produce a novel).
MAX_PROBLEMS = 20


def target_options() -> dict[str, dict[str, t.Any]]:
    """The options of a mail target (docs/spec.md "Mail target"); ``port`` defaults by ``security``."""
    return schema.argument_spec(schema.Target, schema.Face.TARGET)


def task_options() -> dict[str, dict[str, t.Any]]:
    """The task options of an inline migration (docs/spec.md "Sync task"), the fields it needs ``required``.

    ``remote_port`` defaults by security (in :func:`config.parse_task`).
    """
    spec = schema.argument_spec(schema.Task, schema.Face.MIGRATE)
    for name in REQUIRED_TASK_OPTIONS:
        spec[name]["required"] = True
    return spec


def common_options() -> dict[str, dict[str, t.Any]]:
    """Options every module takes (docs/spec.md "Modules")."""
    return {
        "config_dir": {"type": "path", "default": DEFAULT_CONFIG_DIR},
        "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
    }


def account_options() -> dict[str, dict[str, t.Any]]:
    """The fields of one account of a bulk migration (``accounts`` elements, ``accounts_file`` columns).

    The schema's account face: no defaults and no ``required``, since a field left out takes the value of the
    module call's option of the same name (or its default), and the required ones are checked after that.
    """
    return schema.argument_spec(schema.Task, schema.Face.ACCOUNT)


def migrate_argument_spec() -> dict[str, dict[str, t.Any]]:
    """The argument spec of ``mailops.imap.migrate`` (a fresh copy on every call).

    The account fields are not ``required`` here: a defined task (``task``) or many accounts
    (``accounts``, ``accounts_file``) need none of them; :func:`parse_migrate` requires them for an inline
    migration.
    """
    spec = schema.argument_spec(schema.Task, schema.Face.MIGRATE)
    spec["target"] = {"type": "dict", "options": target_options()}
    spec["task"] = {"type": "str"}
    spec["accounts"] = {"type": "list", "elements": "dict", "options": account_options()}
    spec["accounts_file"] = {"type": "path"}
    spec["parallel"] = {"type": "int", "default": DEFAULT_PARALLEL}
    spec.update(common_options())
    return spec


def migrate_mutually_exclusive() -> list[list[str]]:
    """The ``mutually_exclusive`` of ``mailops.imap.migrate`` (checked on the given options, before defaults)."""
    groups = [["task", "accounts", "accounts_file"]]
    groups += [["task", name] for name in (*MIGRATE_TASK_OPTIONS, "target")]
    return groups


def sync_task_info_argument_spec() -> dict[str, dict[str, t.Any]]:
    """The argument spec of ``mailops.imap.sync_task_info``."""
    spec: dict[str, dict[str, t.Any]] = {"name": {"type": "str"}}
    spec.update(common_options())
    return spec


def _given(value: t.Any) -> bool:
    return value is not None and value != ""


def mode_conflict(args: t.Mapping[str, t.Any]) -> str | None:
    """A sentence when the given (not yet defaulted) options mix ways to run, else None."""
    modes = [name for name in MODE_OPTIONS if args.get(name) is not None]
    if len(modes) > 1:
        return (f"{' and '.join(modes)} exclude each other; give task to run a defined task, accounts or accounts_file "
                "to run many accounts.")
    if modes == ["task"]:
        extra = [name for name in (*MIGRATE_TASK_OPTIONS, "target") if args.get(name) is not None]
        if extra:
            return (f"task runs the defined task {args['task']!r} with its own definition and target, so "
                    f"{', '.join(extra)} cannot be given with it; remove {'it' if len(extra) == 1 else 'them'}, "
                    "or remove task to run an inline migration.")
    return None


@dataclasses.dataclass(frozen=True)
class Account:
    """One account of a bulk migration."""

    label: str  # where it was given: "accounts entry 2", "accounts_file users.csv line 3"
    task: config.Task

    @property
    def name(self) -> str:
        """How the account is named in results and messages (no secret)."""
        return describe_account(self.task)


def describe_account(task: config.Task) -> str:
    return f"{task.remote_user} at {task.remote_host} -> {task.local_user}"


@dataclasses.dataclass(frozen=True)
class MigratePlan:
    """What a ``migrate`` call runs: ``mode`` is ``inline``, ``task`` or ``bulk``."""

    mode: str
    target: config.Target | None = None
    task: config.Task | None = None
    task_name: str | None = None
    accounts: tuple[Account, ...] = ()
    parallel: int = DEFAULT_PARALLEL


def account_defaults(params: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The task fields of the module call, the defaults of every account (None means not given)."""
    return {name: params.get(name) for name in MIGRATE_TASK_OPTIONS if params.get(name) is not None}


def merge_account(defaults: t.Mapping[str, t.Any], account: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """An account's task fields: its own where given, else the module call's."""
    merged = dict(defaults)
    merged.update({name: value for name, value in account.items() if value is not None})
    return merged


def _missing(data: t.Mapping[str, t.Any]) -> list[str]:
    return [name for name in REQUIRED_TASK_OPTIONS if not _given(data.get(name))]


def parse_account(defaults: t.Mapping[str, t.Any], account: t.Mapping[str, t.Any], target: config.Target, label: str) -> Account:
    """Validate one account (with the defaults of the module call). ConfigError names ``label``."""
    data = merge_account(defaults, account)
    missing = _missing(data)
    if missing:
        what = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"{label}: {', '.join(missing)} {what} required; give {'it' if len(missing) == 1 else 'them'} "
                          "in the account or once for all accounts in the module call.")
    data["target"] = target.name
    try:
        task = config.parse_task(data)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    return Account(label=label, task=task)


def join_problems(problems: t.Sequence[str]) -> str:
    """Several problem sentences as one message (at most MAX_PROBLEMS of them)."""
    shown = list(problems[:MAX_PROBLEMS])
    if len(problems) > MAX_PROBLEMS:
        shown.append(f"And {len(problems) - MAX_PROBLEMS} more problem(s) of the same kind.")
    return " ".join(shown)


def parse_accounts(params: t.Mapping[str, t.Any], accounts: t.Sequence[t.Mapping[str, t.Any]], target: config.Target,
                   labels: t.Sequence[str] | None = None) -> tuple[Account, ...]:
    """Validate every account; one ConfigError naming each bad one (and repeated accounts)."""
    if not accounts:
        raise ConfigError("accounts is empty; give at least one account (or skip the task with when:).")
    defaults = account_defaults(params)
    names = list(labels) if labels is not None else [f"accounts entry {i}" for i in range(1, len(accounts) + 1)]
    problems: list[str] = []
    parsed: list[Account] = []
    seen: dict[str, str] = {}
    for label, account in zip(names, accounts):
        try:
            item = parse_account(defaults, account, target, label)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        key = config.state_key(item.task, target)
        if key in seen:
            problems.append(f"{label} repeats the account of {seen[key]} (same remote_user, remote_host, remote_port and "
                            "local_user); remove one of them.")
            continue
        seen[key] = label
        parsed.append(item)
    if problems:
        raise ConfigError(join_problems(problems))
    return tuple(parsed)


def parse_migrate(params: t.Mapping[str, t.Any], labels: t.Sequence[str] | None = None) -> MigratePlan:
    """The semantic checks after the argument spec: what the call runs, validated.

    ``params`` are the validated module parameters; ``labels`` name the accounts in messages (the action
    plugin passes the CSV line numbers). Raises :class:`errors.ConfigError` with a sentence.
    """
    conflict = mode_conflict({name: params.get(name) for name in MODE_OPTIONS})
    if conflict is not None:
        raise ConfigError(conflict)
    parallel = params.get("parallel")
    parallel = DEFAULT_PARALLEL if parallel is None else parallel
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ConfigError(f"parallel: {parallel!r} is not valid; use a whole number of at least 1 (accounts run at a time).")
    if params.get("task") is not None:
        name = str(params["task"]).strip()
        if not config.TASK_NAME_RE.fullmatch(name):
            raise ConfigError(f"task: {name!r} is not a valid task name; use the name of a task defined with mailops.imap.sync_task.")
        return MigratePlan(mode="task", task_name=name, parallel=parallel)
    if params.get("accounts_file") is not None:
        raise ConfigError("accounts_file is read on the controller by the migrate action; run the module through it "
                          "(as mailops.imap.migrate in a play), or give accounts.")
    target = config.parse_target(params.get("target"))
    if params.get("accounts") is not None:
        return MigratePlan(mode="bulk", target=target, accounts=parse_accounts(params, params["accounts"], target, labels),
                           parallel=parallel)
    missing = _missing(params)
    if missing:
        what = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"{', '.join(missing)} {what} required for an inline migration; give "
                          f"{'it' if len(missing) == 1 else 'them'}, or run a defined task with task, or many accounts "
                          "with accounts or accounts_file.")
    data = {name: params.get(name) for name in MIGRATE_TASK_OPTIONS}
    data["target"] = target.name
    task = config.parse_task(data)
    return MigratePlan(mode="inline", target=target, task=task, parallel=parallel)
