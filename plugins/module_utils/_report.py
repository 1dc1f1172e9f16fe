# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``mailops.imap.migration_report`` does on the host: the report of one account (inline task fields) or of many
(``accounts``), each measured by the engine's :func:`report.account_report`, ``parallel`` at a time.

The accounts are given and validated as ``mailops.imap.migrate`` takes them (plugins/module_utils/_argspec.py), so
the same module_defaults and the same account list serve both; each account's state is the one of its inline
migration (``state_dir``). Nothing is written: the state is read-only, both servers are only examined.
"""

from __future__ import annotations

import concurrent.futures
import time
import typing as t

from ansible_collections.mailops.imap.plugins.module_utils._argspec import Account, migrate_argument_spec, parse_migrate
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, errors, report
from ansible_collections.mailops.imap.plugins.module_utils._engine.contract import Kind
from ansible_collections.mailops.imap.plugins.module_utils._engine.result import now_iso
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store
from ansible_collections.mailops.imap.plugins.module_utils._requirements import refuse_unsupported_python, require_imapclient

STATUSES = ("complete", "incomplete", "failed")  # an account's report status, the order of the summary
# migrate's options that a report has no use for: a defined task, a CSV read by migrate's action, the definitions.
_NOT_OPTIONS = ("task", "accounts_file", "config_dir")


class ModuleLike(t.Protocol):
    """The parts of AnsibleModule used here."""

    params: dict[str, t.Any]

    def fail_json(self, msg: str, **kwargs: t.Any) -> t.NoReturn: ...

    def exit_json(self, **kwargs: t.Any) -> t.NoReturn: ...


def argument_spec() -> dict[str, dict[str, t.Any]]:
    """The argument spec of ``mailops.imap.migration_report``: migrate's, without what only runs need."""
    spec = migrate_argument_spec()
    for name in _NOT_OPTIONS:
        del spec[name]
    return spec


def measure(account: Account, target: config.Target, state_dir: str) -> dict[str, t.Any]:
    """One account's report; never raises (an unexpected error is that account's ``failed`` report)."""
    try:
        path = Store(state_dir=state_dir).inline_state_path(account.task, target)
        return report.account_report(account.name, account.task, target, path)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # One account must not take the others down; the sentence names the error, never a secret.
        return report.failed_report(account.name, Kind.INTERNAL_ERROR, f"The report stopped on an unexpected "
                                    f"{type(exc).__name__}; report it, with the host's Python and imapclient versions.")


def measure_all(accounts: t.Sequence[Account], target: config.Target, state_dir: str, parallel: int) -> list[dict[str, t.Any]]:
    """Every account's report, ``parallel`` at a time (threads: the work is mostly waiting for the servers), in the
    order of ``accounts``."""
    workers = max(1, min(parallel, len(accounts)))
    if workers == 1:
        return [measure(account, target, state_dir) for account in accounts]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mailops-report") as pool:
        return list(pool.map(lambda account: measure(account, target, state_dir), accounts))


def summarize(reports: t.Sequence[dict[str, t.Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """The number of accounts and how many have each status; the counts summed over all accounts."""
    summary = {"accounts": len(reports), **dict.fromkeys(STATUSES, 0)}
    totals = dict.fromkeys(report.COUNTS, 0)
    for entry in reports:
        summary[entry["status"]] += 1
        for name in report.COUNTS:
            totals[name] += entry["totals"][name]
    return summary, totals


def main(module: ModuleLike) -> t.NoReturn:
    """Measure what the validated parameters name and exit the module (changed is always false)."""
    refuse_unsupported_python(module)
    try:
        plan = parse_migrate(module.params)
    except errors.ConfigError as exc:
        module.fail_json(msg=str(exc), changed=False)
    require_imapclient(module)
    if plan.target is None:
        module.fail_json(msg="A report needs the target; give target.", changed=False)
    if plan.mode == "inline":
        if plan.task is None:  # parse_migrate gives an inline plan its task
            module.fail_json(msg="An inline report needs its task fields.", changed=False)
        accounts: tuple[Account, ...] = (Account(label="", task=plan.task),)
    else:
        accounts = plan.accounts
    started, t0 = now_iso(), time.monotonic()
    reports = measure_all(accounts, plan.target, module.params["state_dir"], plan.parallel)
    summary, totals = summarize(reports)
    module.exit_json(changed=False, started=started, finished=now_iso(), duration_s=round(time.monotonic() - t0, 3),
                     summary=summary, totals=totals, accounts=reports)


__all__ = ["argument_spec", "main", "measure", "measure_all", "summarize"]
