"""Child process of the scenario bench (scenarios.py): many accounts through the migrate module's own code path.

Usage: ``python scenario_child.py SPEC.json``. SPEC: {"mode": "bulk", "accounts": [task dict, ...], "target": {...},
"state_dir": str, "parallel": int}. Runs ``plugins/module_utils/_migrate.py`` :func:`run_accounts` (what the migrate
module runs for ``accounts``) once, then prints ``RUNNER_JSON {...}`` as the last stdout line: the run's wall time,
CPU seconds of this process and of its reaped children (the accounts' worker processes), this process's peak RSS
(VmHWM), the largest peak RSS of any child (``ru_maxrss`` of RUSAGE_CHILDREN: one account's worker) and every
account's result. The spec file holds passwords: scenarios.py writes it 0600 and removes it.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import typing as t

from runner import status_kb  # tests/bench/runner.py (this script's directory is first on sys.path)


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    if spec["mode"] != "bulk":
        raise SystemExit(f"unknown mode {spec['mode']!r}")
    from ansible_collections.mailops.imap.plugins.module_utils import _migrate
    from ansible_collections.mailops.imap.plugins.module_utils._argspec import Account
    from ansible_collections.mailops.imap.plugins.module_utils._engine import config

    target = config.parse_target(spec["target"])
    accounts = [Account(label=f"accounts entry {index + 1}", task=config.parse_task(dict(task, target=target.name)))
                for index, task in enumerate(spec["accounts"])]
    out: dict[str, t.Any] = {"mode": "bulk", "parallel": spec["parallel"], "rss_before_kb": status_kb("VmRSS")}
    cpu0 = _cpu_s(resource.RUSAGE_SELF) + _cpu_s(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    outcomes = _migrate.run_accounts(accounts, target, spec["state_dir"], False, spec["parallel"])
    out["elapsed_s"] = time.perf_counter() - started
    out["cpu_s"] = _cpu_s(resource.RUSAGE_SELF) + _cpu_s(resource.RUSAGE_CHILDREN) - cpu0
    out["children_cpu_s"] = _cpu_s(resource.RUSAGE_CHILDREN)
    out["vmhwm_kb"] = status_kb("VmHWM")
    out["children_maxrss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    out["results"] = [dict(outcome.as_dict(), local_user=account.task.local_user) for account, outcome in zip(accounts, outcomes)]
    print("RUNNER_JSON " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
