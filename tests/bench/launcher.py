"""The launcher of every measured child of the bench (anchors.run_measured): ``python -I -S launcher.py REPORT TIMEOUT
-- ARGV...`` forks, execs ARGV, waits for it with ``wait4`` (killing it after TIMEOUT seconds) and writes
``{"wall_s", "cpu_s", "maxrss_kb", "returncode"}`` to the file REPORT as JSON: wall time from fork to exit, the
child's user + system CPU and its ``ru_maxrss`` (its reaped children's included).

It is a separate, small process because Linux carries a process's peak RSS across ``exec``: a child forked from the
bench itself (hundreds of MiB of snapshots) would report the bench's size as its own peak. Forked from this
launcher, which imports only what it needs, a child starts from a few MiB. Its exit status is 0 once it reported.
"""

import json
import os
import signal
import sys
import time


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print("usage: launcher.py REPORT TIMEOUT -- ARGV...", file=sys.stderr)
        return 2
    report_path, timeout, argv = sys.argv[1], int(sys.argv[2]), sys.argv[4:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)  # pylint: disable=protected-access
    signal.signal(signal.SIGALRM, lambda _signum, _frame: os.kill(pid, signal.SIGKILL))
    signal.alarm(timeout)
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    signal.alarm(0)
    with open(report_path, "w", encoding="utf-8") as handle:
        json.dump({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss,
                   "returncode": os.waitstatus_to_exitcode(status)}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
