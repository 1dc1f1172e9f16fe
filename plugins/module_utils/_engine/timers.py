# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""When the systemd timer of a task fires next (``sync_task_info``, ``imapsyncctl status``).

Pure Python, no Ansible imports. Asks ``systemctl`` about ``mailops-imapsync@<task>.timer``, first the
system manager, then the user manager (``--user``, the role's ``imapsync_scope: user``). Anything missing
(no systemctl, no manager, unit not loaded, timer stopped) means "no next run": never an exception.

Two ways to ask, both read-only:

- ``systemctl list-timers --all --output=json UNIT``: the next elapse in microseconds since the epoch,
  whatever the kind of timer (systemd 250 and later);
- ``systemctl show --property=... UNIT`` (older systemd): ``NextElapseUSecRealtime`` is a timestamp for
  calendar timers; timers relative to the last activation (``OnUnitActiveSec``) only have
  ``NextElapseUSecMonotonic``, a time span since boot, converted here with the monotonic clock.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import time
import typing as t

UNIT_PREFIX = "mailops-imapsync@"
TIMEOUT_S = 5.0
SCOPES: tuple[tuple[str, ...], ...] = ((), ("--user",))

_TIMESTAMP_RE = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\s+(\S+))?\s*$")
_SPAN_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(us|µs|ms|s|sec|min|m|h|d|w|M|y)?(?=\s|$)")
_SPAN_UNITS = {
    "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0,
    "d": 86400.0, "w": 604800.0, "M": 2629800.0, "y": 31557600.0, None: 1e-6,
}

Runner = t.Callable[[t.List[str]], t.Optional[str]]  # typing.List: importable on Python 3.8, which pyversion.py refuses clearly


def timer_unit(task_name: str) -> str:
    """The timer unit of a task."""
    return f"{UNIT_PREFIX}{task_name}.timer"


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


def _run(argv: list[str]) -> str | None:
    """The standard output of a successful command, else None (no exception, no secret involved).

    The command runs in a session of its own, so that a timeout kills it with anything it started.
    """
    env = dict(os.environ, LC_ALL="C", TZ="UTC", SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env, start_new_session=True)
    except (OSError, ValueError):
        return None
    try:
        out, _err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    except (OSError, ValueError):
        return None
    return out if proc.returncode == 0 else None


def parse_list_timers(text: str, unit: str) -> str | None:
    """The next elapse of ``unit`` from ``systemctl list-timers --output=json``; None when not scheduled."""
    try:
        rows = json.loads(text)
    except ValueError:
        return None
    if not isinstance(rows, list):
        return None
    for row in rows:
        if not isinstance(row, dict) or row.get("unit") != unit:
            continue
        usec = row.get("next")
        if isinstance(usec, (int, float)) and not isinstance(usec, bool) and 0 < usec < 2**63 - 1:
            return _iso(usec / 1e6)
        return None
    return None


def parse_timespan(text: str) -> float | None:
    """Seconds of a systemd time span such as ``2h 40min 42.226945s``; None for empty, 0 or infinity."""
    text = text.strip()
    if not text or text in ("0", "infinity", "n/a"):
        return None
    total = 0.0
    position = 0
    for match in _SPAN_RE.finditer(text):
        if text[position:match.start()].strip():
            return None
        total += float(match.group(1)) * _SPAN_UNITS[match.group(2)]
        position = match.end()
    if text[position:].strip() or total <= 0:
        return None
    return total


def parse_timestamp(text: str) -> float | None:
    """Seconds since the epoch of a systemd timestamp (``Thu 2026-11-26 04:00:00 UTC`` or ``@1795665600``)."""
    text = text.strip()
    if not text or text == "n/a":
        return None
    if text.startswith("@"):
        try:
            value = float(text[1:])
        except ValueError:
            return None
        return value if value > 0 else None
    match = _TIMESTAMP_RE.search(text)
    if match is None or match.group(2) not in (None, "UTC", "GMT", "Z"):
        return None  # asked with TZ=UTC; another zone cannot be converted reliably
    moment = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def parse_show(text: str, now: float | None = None, monotonic_now: float | None = None) -> str | None:
    """The next elapse from ``systemctl show`` output (KEY=VALUE lines); None unless a loaded timer is scheduled."""
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if props.get("LoadState", "loaded") != "loaded":
        return None
    candidates = []
    realtime = parse_timestamp(props.get("NextElapseUSecRealtime", ""))
    if realtime is not None:
        candidates.append(realtime)
    span = parse_timespan(props.get("NextElapseUSecMonotonic", ""))
    if span is not None:
        wall = time.time() if now is None else now
        mono = time.monotonic() if monotonic_now is None else monotonic_now
        candidates.append(wall - mono + span)
    return _iso(min(candidates)) if candidates else None


def next_runs(task_names: t.Iterable[str], run: Runner | None = None) -> dict[str, str | None]:
    """When the timer of each task fires next (ISO 8601, UTC), or None for each. Never raises.

    One ``list-timers`` call per manager for all the tasks; ``show`` per task only on an old systemd.
    """
    names = list(dict.fromkeys(task_names))
    found: dict[str, str | None] = dict.fromkeys(names)
    runner = run or _run
    systemctl = shutil.which("systemctl") if run is None else "systemctl"
    if systemctl is None or not names:
        return found
    for scope in SCOPES:
        pending = [name for name in names if found[name] is None]
        if not pending:
            break
        listed = runner([systemctl, *scope, "list-timers", "--all", "--no-pager", "--output=json",
                         *(timer_unit(name) for name in pending)])
        if listed is not None and listed.strip().startswith("["):
            for name in pending:
                found[name] = parse_list_timers(listed, timer_unit(name))
            continue
        for name in pending:
            shown = runner([systemctl, *scope, "show", "--no-pager", "--property=LoadState",
                            "--property=NextElapseUSecRealtime", "--property=NextElapseUSecMonotonic", timer_unit(name)])
            if shown is None:
                break  # no such manager (or systemctl refused): try the next scope
            found[name] = parse_show(shown)
    return found


def next_run(task_name: str, run: Runner | None = None) -> str | None:
    """When the timer of ``task_name`` fires next (ISO 8601, UTC), or None. Never raises."""
    return next_runs([task_name], run)[task_name]
