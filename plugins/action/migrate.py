# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of mailops.imap.migrate: validate on the controller, then run the module on the host.

With ``accounts_file`` the CSV file is read here, on the controller, by the collection's one reader
(plugins/plugin_utils/_accounts_file.py; it may be encrypted with ansible-vault), and sent to the module as
``accounts``; the file itself never leaves the controller.
Every account is validated before the module is sent, so a bad row stops the task before any account runs.

An inline or bulk run shows its progress while it runs (option ``progress_interval``; docs/playbooks.md "Progress and
run logs"): the module answers "running" with a job id when the run does not end within the first interval, and
this plugin asks it again every interval (a module call that waits up to an interval for the end), printing one line
per running account with Display, until the answer is the run's result, which is returned as it is.
"""

from __future__ import annotations

import typing as t

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

from ansible_collections.mailops.imap.plugins.module_utils._argspec import (
    account_defaults, account_options, join_problems, migrate_argument_spec, migrate_mutually_exclusive, mode_conflict,
    parse_account, parse_migrate,
)
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, progress, schema
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError
from ansible_collections.mailops.imap.plugins.module_utils._migrate import PROGRESS_OPTIONS
from ansible_collections.mailops.imap.plugins.plugin_utils._accounts_file import find_accounts_file, read_accounts_file

MODULE = "mailops.imap.migrate"
PROGRESS_KEY = "mailops_progress"  # the module's answer while a run goes on (_migrate.Job.pending)

display = Display()


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _spec_errors(validation: t.Any, prefix: str = "") -> list[str]:
    messages = []
    for error in validation.errors:
        if isinstance(error, UnsupportedError):
            if prefix:
                unknown = sorted(".".join(u) if isinstance(u, tuple) else str(u) for u in validation._unsupported_parameters)
                messages.append(f"{prefix}unknown field(s) {', '.join(unknown)}; valid fields are {', '.join(account_options())}.")
                continue
            messages.append(f"Unsupported parameters for ({MODULE}) module: {_sentence(str(error.msg))}")
        else:
            messages.append(prefix + _sentence(str(error.msg)))
    return messages


# The task fields whose values are secrets (the remote password, an OAuth2 client secret): the schema's rule.
SECRET_FIELDS = schema.secret_fields(config.Task)


def _secrets_in(values: t.Any) -> set[str]:
    """The secrets of one dictionary of task fields (given, even if it fails validation)."""
    if not isinstance(values, dict):
        return set()
    return {str(values[name]) for name in SECRET_FIELDS if values.get(name) not in (None, "")}


def _secrets_of(accounts: t.Any) -> set[str]:
    """The secrets of accounts (also of rows that fail validation), to mask them in any message."""
    found: set[str] = set()
    if isinstance(accounts, list):
        for account in accounts:
            found |= _secrets_in(account)
    return found


def prepare_migrate_args(args: t.Mapping[str, t.Any], accounts_csv: tuple[list[dict[str, t.Any]], list[str]] | None = None
                         ) -> tuple[dict[str, t.Any] | None, str | None]:
    """Check the task arguments as the module will, without contacting any host.

    ``accounts_csv`` is the content of ``accounts_file`` already read (accounts and their labels). Returns the
    arguments to send to the module (``accounts_file`` replaced by ``accounts``, each account's values
    converted) and None, or None and one message naming every problem found: by the argument spec (types,
    choices, unknown options), then the semantic ones (ports, hosts, exclude regexes, combinations, and for
    many accounts each bad one by its list entry or CSV line). Secrets never appear in it.
    """
    args = dict(args)
    no_log_values = _secrets_of(args.get("accounts"))
    if accounts_csv is not None:
        no_log_values |= _secrets_of(accounts_csv[0])
    no_log_values |= _secrets_in(args)
    if isinstance(args.get("target"), dict) and isinstance(args["target"].get("master_password"), str):
        no_log_values.add(args["target"]["master_password"])

    def masked(message: str) -> str:
        return remove_values(message, {v for v in no_log_values if v})

    conflict = mode_conflict(args)
    if conflict is not None:
        return None, masked(conflict)

    labels: list[str] | None = None
    accounts: t.Any = args.pop("accounts", None)
    if accounts_csv is not None:
        args.pop("accounts_file", None)
        accounts, labels = accounts_csv

    validator = ArgumentSpecValidator(migrate_argument_spec(), mutually_exclusive=migrate_mutually_exclusive())
    validation = validator.validate(args)
    no_log_values |= validation._no_log_values
    if validation.error_messages:
        return None, masked(" ".join(_spec_errors(validation)))
    params = dict(validation.validated_parameters)

    if accounts is not None:
        if not isinstance(accounts, list):
            return None, "accounts: give a list of accounts, each a dictionary of task fields."
        if not accounts:
            return None, "accounts is empty; give at least one account (or skip the task with when:)."
        try:
            target = config.parse_target(params.get("target"))
        except ConfigError as exc:
            return None, masked(_sentence(str(exc)))
        defaults = account_defaults(params)
        labels = labels or [f"accounts entry {i}" for i in range(1, len(accounts) + 1)]
        problems: list[str] = []
        converted: list[dict[str, t.Any]] = []
        account_validator = ArgumentSpecValidator(account_options())
        for label, account in zip(labels, accounts):
            if not isinstance(account, dict):
                problems.append(f"{label}: give a dictionary of task fields, not {type(account).__name__}.")
                continue
            checked = account_validator.validate(dict(account))
            no_log_values |= checked._no_log_values
            if checked.error_messages:
                problems.extend(_spec_errors(checked, prefix=f"{label}: "))
                continue
            values = {k: v for k, v in checked.validated_parameters.items() if v is not None}
            try:
                parse_account(defaults, values, target, label)
            except ConfigError as exc:
                problems.append(_sentence(str(exc)))
                continue
            converted.append(values)
        if problems:
            return None, masked(join_problems(problems))
        params["accounts"] = converted
        args["accounts"] = converted

    try:
        parse_migrate(params, labels)
    except ConfigError as exc:
        return None, masked(_sentence(str(exc)))
    return args, None


def progress_lines(pending: t.Any, no_log: bool) -> list[str]:
    """The lines that show a running migration's progress (``pending``: what the module sent, untrusted: every string
    escaped and bounded by progress.line). With ``no_log`` the accounts are not named."""
    if not isinstance(pending, dict):
        return []
    lines = []
    accounts, done = pending.get("accounts"), pending.get("done")
    if isinstance(accounts, int) and isinstance(done, int) and accounts > 1:
        lines.append(f"{min(done, accounts)} of {accounts} accounts done")
    running = pending.get("running")
    for snapshot in running if isinstance(running, list) else []:
        if no_log and isinstance(snapshot, dict):
            snapshot = dict(snapshot, account="(no_log)", folder=None)
        shown = progress.line(snapshot)
        if shown is not None:
            lines.append(shown)
    return lines


def validate_migrate_args(args: t.Mapping[str, t.Any]) -> str | None:
    """Only the verdict of :func:`prepare_migrate_args`: None when valid, else the message."""
    return prepare_migrate_args(args)[1]


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def _read_accounts_file(self, path: t.Any) -> tuple[list[dict[str, t.Any]], list[str]]:
        """The accounts of the CSV file on the controller (searched like a copy src; vault-encrypted is fine)."""
        found = find_accounts_file(self._loader, self._task.get_search_path(), path)
        return read_accounts_file(self._loader, found, path, f"accounts_file {path}")

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        del tmp  # no longer has any effect

        task_args = dict(self._task.args)
        checked = ArgumentSpecValidator(PROGRESS_OPTIONS).validate(
            {name: task_args.pop(name) for name in PROGRESS_OPTIONS if name in task_args})
        if checked.error_messages or checked.validated_parameters.get("progress_job") is not None or \
                checked.validated_parameters["progress_interval"] < 0:
            result.update(failed=True, changed=False, msg=" ".join(checked.error_messages) or
                          "progress_interval: give the seconds between progress lines (0 turns them off); progress_job "
                          "is set by the migrate action only.")
            return result
        interval = checked.validated_parameters["progress_interval"]
        accounts_csv = None
        if task_args.get("accounts_file") is not None and mode_conflict(task_args) is None:
            try:
                accounts_csv = self._read_accounts_file(task_args["accounts_file"])
            except ConfigError as exc:
                result.update(failed=True, changed=False, msg=_sentence(str(exc)))
                return result

        module_args, problem = prepare_migrate_args(task_args, accounts_csv)
        if module_args is None:
            result.update(failed=True, changed=False, msg=problem)
            return result

        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        shows = not (self._task.check_mode or self._task.async_val or module_args.get("task") is not None)
        module_args["progress_interval"] = interval if shows else 0
        module_result = self._execute_module(
            module_name=MODULE,
            module_args=module_args,
            task_vars=task_vars,
            wrap_async=wrap_async,
        )
        if shows and PROGRESS_KEY in module_result and not module_result.get("failed"):
            module_result = self._follow(module_result, module_args, interval, task_vars or {})
        result = merge_hash(result, module_result)
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _follow(self, module_result: dict[str, t.Any], module_args: dict[str, t.Any], interval: float,
                task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        """Show the progress of a detached run until the module answers with its result (returned as it is)."""
        host = task_vars.get("inventory_hostname", "")
        facts = module_result.get("ansible_facts")  # interpreter discovery, on the first call only
        poll_args = {"progress_job": None, "progress_interval": interval}
        if module_args.get("state_dir") is not None:
            poll_args["state_dir"] = module_args["state_dir"]
        while PROGRESS_KEY in module_result and not module_result.get("failed"):
            pending = module_result[PROGRESS_KEY]
            for line in progress_lines(pending, bool(self._task.no_log)):
                display.display(f"{host}: {line}")
            poll_args["progress_job"] = pending.get("job") if isinstance(pending, dict) else None
            self._remove_tmp_path(self._connection._shell.tmpdir)
            module_result = self._execute_module(module_name=MODULE, module_args=dict(poll_args), task_vars=task_vars)
        if facts and "ansible_facts" not in module_result:
            module_result["ansible_facts"] = facts
        return module_result
