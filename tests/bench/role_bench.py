"""Benchmark of the ``mailops.imap.imapsync`` role with many tasks on one host (``make bench-role``).

Applies the role with N sync tasks (default 500, every one an interval task, so N timers) under a private systemd
user manager (the integration tests' harness, ``imapsync_scope: user``, everything under the manager's HOME), and
times, with a real ``ansible-playbook``:

1. the first apply on a fresh host: the virtual environment (imapclient from a local wheel directory, as on an
   offline host), the engine, the target, N definitions, the service, N timers enabled and started;
2. a re-apply with no change (it must report ``changed=0``);
3. a re-apply after a small change (10 intervals changed, 10 tasks added, 10 removed with ``imapsync_purge``).

Nothing runs during the bench: the remote hosts are fake names and the first tick of each timer comes an hour
after the apply. Targets: first apply <= 60 s, re-apply <= 30 s (informative; the exit status is 0 unless an
apply fails or the re-apply changes something). Prints a table and one ``BENCH_JSON {...}`` line.

Needs root (a private mount namespace for the user manager) and the collection on ANSIBLE_COLLECTIONS_PATH
(``make bench-role`` runs it from build/ with that set). Options: ``--tasks N``, ``--keep`` (print the HOME and
keep the manager running until Enter is pressed).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))  # the harness package

# pylint: disable=wrong-import-position
from harness.systemd import UserManager  # noqa: E402

FIRST_TARGET_S = 60.0
AGAIN_TARGET_S = 30.0
RECAP_RE = re.compile(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def ansible_playbook() -> str:
    path = shutil.which("ansible-playbook")
    if path is None:
        sys.exit("role_bench: ansible-playbook is not on PATH (run it through make bench-role)")
    return path


def wheels(directory: Path) -> Path:
    version = importlib.metadata.version("imapclient")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                           "--only-binary=:all:", "--dest", str(directory), f"imapclient=={version}"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"role_bench: cannot download the imapclient wheel: {proc.stderr[-2000:]}")
    return directory


def tasks(count: int, start: int = 0, interval: int = 60) -> list[dict]:
    return [{"name": f"task{i:04d}", "local_user": f"user{i:04d}", "remote_user": f"user{i:04d}@old.example.org",
             "remote_password": f"pw'{i:04d}\"x", "remote_host": f"imap{i % 50}.old.example.org",
             "folders": "inbox" if i % 2 else "all", "schedule": "interval", "interval_minutes": interval}
            for i in range(start, start + count)]


class Bench:
    def __init__(self, manager: UserManager, work: Path, wheel_dir: Path) -> None:
        self.manager = manager
        self.work = work
        self.wheel_dir = wheel_dir

    def apply(self, task_list: list[dict], purge: bool = False) -> tuple[float, dict[str, int]]:
        role_vars = {"imapsync_scope": "user", "imapsync_pip_wheel_dir": str(self.wheel_dir),
                     "imapsync_target": {"host": "127.0.0.1", "master_password": "bench'master\"pw"},
                     "imapsync_tasks": task_list, "imapsync_purge": purge, "imapsync_timer_first_delay": "1h"}
        extra = self.work / "vars.json"
        extra.write_text(json.dumps(role_vars), encoding="utf-8")
        os.chmod(extra, 0o600)
        playbook = self.work / "play.yml"
        playbook.write_text("- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: mailops.imap.imapsync\n",
                            encoding="utf-8")
        env = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
               "ANSIBLE_PYTHON_INTERPRETER": str(Path(ansible_playbook()).parent / "python")}
        started = time.monotonic()
        proc = self.manager.run([ansible_playbook(), "-i", "localhost,", "-c", "local", str(playbook), "-e", f"@{extra}"],
                                env=env, check=False, timeout=1800)
        elapsed = time.monotonic() - started
        output = proc.stdout + proc.stderr
        match = RECAP_RE.search(output)
        if proc.returncode != 0 or match is None:
            sys.exit(f"role_bench: the apply failed ({proc.returncode}):\n{output[-4000:]}")
        return elapsed, dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))

    def timers(self) -> int:
        listed = self.manager.run(["systemctl", "--user", "list-timers", "--all", "--no-legend",
                                   "mailops-imapsync@*"]).stdout
        return len([line for line in listed.splitlines() if line.strip()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=500, help="number of tasks (default 500)")
    parser.add_argument("--keep", action="store_true", help="keep the user manager until Enter is pressed")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("role_bench: needs root (a private mount namespace for the systemd user manager)")
    count = args.tasks
    with tempfile.TemporaryDirectory(prefix="mailops-role-bench-") as tmp:
        work = Path(tmp)
        wheel_dir = wheels(work / "wheels")
        with UserManager() as manager:
            bench = Bench(manager, work, wheel_dir)
            first, first_recap = bench.apply(tasks(count))
            running = bench.timers()
            again, again_recap = bench.apply(tasks(count))
            changed_list = tasks(count - 10, start=10)
            for task in changed_list[:10]:
                task["interval_minutes"] = 30
            changed_list += tasks(10, start=count)
            change, change_recap = bench.apply(changed_list, purge=True)
            after_change = bench.timers()
            if args.keep:
                input(f"HOME {manager.home}; press Enter to stop the user manager: ")

    rows = [
        (f"first apply ({count} tasks, venv, {count} timers)", first, FIRST_TARGET_S, first_recap),
        ("re-apply, no change", again, AGAIN_TARGET_S, again_recap),
        ("re-apply, 10 changed + 10 added + 10 purged", change, None, change_recap),
    ]
    print(f"{'step':<48} {'seconds':>8} {'target':>8}  result  changed")
    for label, seconds, target, recap in rows:
        verdict = "" if target is None else ("PASS" if seconds <= target else "MISS")
        target_text = "" if target is None else f"<= {target:g}"
        print(f"{label:<48} {seconds:8.1f} {target_text:>8}  {verdict:<6}  {recap['changed']}")
    print(f"timers after the first apply: {running}; after the change: {after_change}")
    print("BENCH_JSON " + json.dumps({
        "tasks": count, "first_apply_s": round(first, 2), "reapply_s": round(again, 2), "change_apply_s": round(change, 2),
        "reapply_changed": again_recap["changed"], "timers": running, "timers_after_change": after_change,
        "first_target_s": FIRST_TARGET_S, "reapply_target_s": AGAIN_TARGET_S,
    }, sort_keys=True))
    ok = again_recap["changed"] == 0 and running == count and after_change == count
    if not ok:
        print("role_bench: the re-apply changed something or the timers are not as declared", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
