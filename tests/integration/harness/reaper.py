"""Run a command and name the processes it leaves behind, however they were started.

``python reaper.py REPORT COMMAND...`` runs COMMAND as a child of a *child subreaper* (Linux ``prctl``
``PR_SET_CHILD_SUBREAPER``): a descendant of COMMAND whose parent exits (a daemon, a process in a session of its own,
a server whose master was killed) is adopted by this process instead of by PID 1. Once COMMAND has exited, the live
children of this process are exactly what COMMAND left behind, and no process of anyone else (another test running
in parallel) can be among them. Their PIDs and command lines go to the file REPORT as a JSON object (empty when
nothing was left); they are then killed (SIGKILL), and so is what they leave in turn, so that nothing outlives the
check. The exit status is COMMAND's. Linux only; root is not needed.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def _reap_zombies() -> None:
    """Collect every child that has exited (adopted ones included), so that only live ones remain."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _children() -> dict[int, str]:
    """The live children of this process (pid -> command line) from /proc."""
    me = str(os.getpid())
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[-1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        # fields: state, ppid, ...
        if len(fields) > 1 and fields[1] == me and fields[0] != "Z":
            found[int(entry)] = cmdline
    return found


def _kill_all(children: dict[int, str]) -> None:
    """SIGKILL ``children``, then whatever this process adopts as they die (their own children), for up to 5 s."""
    deadline = time.monotonic() + 5
    while children and time.monotonic() < deadline:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        _reap_zombies()
        children = _children()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: reaper.py REPORT COMMAND...", file=sys.stderr)
        return 2
    report, command = argv[0], argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"reaper.py: prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 2
    returncode = subprocess.call(command)
    _reap_zombies()
    left = _children()
    with open(report, "w", encoding="utf-8") as handle:
        json.dump({str(pid): cmdline for pid, cmdline in left.items()}, handle)
    _kill_all(left)
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
