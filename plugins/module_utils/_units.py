# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The systemd timers of sync tasks (``mailops.imap.sync_timers``, used by the ``mailops.imap.imapsync`` role).

One ``mailops-imapsync@NAME.timer`` file per enabled task with ``schedule: interval``, in the unit directory of
the system manager or of a user manager; it starts ``mailops-imapsync@NAME.service`` (the template service
:func:`render_service` writes) ``first_delay`` after the timer starts, then every ``interval_minutes`` after the last start of the
service. The timers of manual, disabled (and, with ``purge``, unlisted) tasks are stopped, disabled and removed.

Everything is asked of ``systemctl`` in as few calls as possible, whatever the number of tasks: one
``list-units`` and one ``show`` to learn the state, then at most one call per action (stop, disable, enable,
``daemon-reload``, reset-failed, start), each on every unit that needs it. ``daemon-reload`` runs when a unit
file changes here, when systemd says a unit of the tasks needs it (``NeedDaemonReload=yes``: its file changed
since the manager last read it, for example written by an earlier run that failed before its reload), or when the
caller asks for it. Nothing is done where the state is already the wanted
one, so a second run changes nothing; :func:`plan` alone is check mode.

The template service ``mailops-imapsync@.service`` that the timers start comes from here too
(:func:`render_service`, the ``service`` option): unit files of the tasks have one rendering path, this module.

Pure Python, no Ansible imports: the module turns a :class:`Plan` into its result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import typing as t

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, schema
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError
from ansible_collections.mailops.imap.plugins.module_utils._engine.files import make_dirs
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import atomic_write

UNIT_PREFIX = "mailops-imapsync@"
SERVICE_TEMPLATE = UNIT_PREFIX + ".service"
UNIT_RE = re.compile(r"mailops-imapsync@([a-z0-9][a-z0-9_.-]{0,63})\.(timer|service)\Z")
SCOPES = ("system", "user")
SYSTEM_UNIT_DIR = "/etc/systemd/system"
USER_UNIT_DIR = "~/.config/systemd/user"
HEADER = "# Written by mailops.imap (the sync_timers module of the imapsync role); changes here are overwritten."

# A systemd time span ("90s", "1min 30s", "2h", "500ms"): numbers and units only, so no value can carry a line
# break or another directive into a unit file.
_SPAN_TOKEN_RE = re.compile(r"[ \t]*(\d+(?:\.\d+)?)[ \t]*([a-zA-Z]*)[ \t]*")
SPAN_UNITS = frozenset(("usec", "us", "msec", "ms", "seconds", "second", "sec", "s", "minutes", "minute", "min", "m",
                        "hours", "hour", "hr", "h", "days", "day", "d", "weeks", "week", "w", ""))
ACTIVE_STATES = ("active", "activating", "reloading", "deactivating")
# What systemctl show reports of each unit (Systemctl.show).
SHOWN = ("Id", "LoadState", "ActiveState", "SubState", "UnitFileState", "NeedDaemonReload")
CHUNK = 200  # units per systemctl call (command lines stay short)
TIMEOUT_S = 120.0


class SystemdError(Exception):
    """A systemctl call failed; the message is a sentence (the command and systemctl's words)."""


@dataclasses.dataclass(frozen=True)
class TimerTask:
    """What the timers need to know of a task."""

    name: str
    schedule: str = "manual"
    interval_minutes: int | None = None
    enabled: bool = True

    @property
    def wants_timer(self) -> bool:
        return self.enabled and self.schedule == "interval"


def default_unit_dir(scope: str) -> str:
    """Where the unit files of a manager go by default (the user's ``~/.config/systemd/user`` with ``user``)."""
    return SYSTEM_UNIT_DIR if scope == "system" else os.path.expanduser(USER_UNIT_DIR)


def timer_unit(name: str) -> str:
    return f"{UNIT_PREFIX}{name}.timer"


def service_unit(name: str) -> str:
    return f"{UNIT_PREFIX}{name}.service"


def is_timespan(text: str) -> bool:
    """Whether ``text`` is a systemd time span of numbers and units (``1min 30s``, ``1min30s``, ``90``)."""
    position, tokens = 0, 0
    while position < len(text):
        match = _SPAN_TOKEN_RE.match(text, position)
        if match is None or match.group(2) not in SPAN_UNITS:
            return False
        position, tokens = match.end(), tokens + 1
    return tokens > 0


def check_timespan(field: str, value: t.Any) -> str:
    """A systemd time span, as given (stripped); ConfigError otherwise."""
    text = str(value).strip() if value is not None and not isinstance(value, bool) else ""
    if not is_timespan(text):
        raise ConfigError(f"{field}: {value!r} is not a systemd time span; use for example 30s, 1min, 1min 30s or 2h.")
    return text


def parse_tasks(items: t.Sequence[t.Mapping[str, t.Any]]) -> list[TimerTask]:
    """The tasks of the module call, checked (names unique and valid, an interval with schedule: interval)."""
    tasks: list[TimerTask] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items, start=1):
        label = f"tasks entry {index}"
        name = item.get("name")
        if not isinstance(name, str) or not config.TASK_NAME_RE.fullmatch(name):
            problems.append(f"{label}: {name!r} is not a valid task name; use 1 to 64 characters of a-z, 0-9, '_', '.', '-', "
                            "starting with a letter or digit.")
            continue
        label += f" ({name})"
        if name in seen:
            problems.append(f"{label}: the name is already used by tasks entry {seen[name]}; task names must be unique.")
            continue
        seen[name] = index
        schedule = item.get("schedule") or "manual"
        if schedule not in config.SCHEDULE_CHOICES:
            problems.append(f"{label}: schedule: {schedule!r} is not valid; use one of {', '.join(config.SCHEDULE_CHOICES)}.")
            continue
        try:
            interval = schema.check_interval(schedule, item.get("interval_minutes"))
        except ConfigError as exc:
            problems.append(f"{label}: {exc}")
            continue
        enabled = item.get("enabled")
        tasks.append(TimerTask(name=name, schedule=schedule, interval_minutes=interval,
                               enabled=True if enabled is None else bool(enabled)))
    if problems:
        raise ConfigError(" ".join(problems))
    return tasks


def render_timer(task: TimerTask, first_delay: str, accuracy: str, randomized_delay: str) -> str:
    """The text of the timer unit of ``task`` (a task that wants a timer)."""
    minutes = task.interval_minutes
    lines = [
        HEADER,
        "[Unit]",
        f"Description=mailops.imap sync task {task.name}, every {minutes} min",
        "",
        "[Timer]",
        # The first run comes first_delay after the timer starts (at boot, or when the role starts it); the next
        # ones interval_minutes after the last start of the service, whether a timer or someone else started it.
        f"OnActiveSec={first_delay}",
        f"OnUnitActiveSec={minutes}min",
        f"AccuracySec={accuracy}",
    ]
    if randomized_delay not in ("0", "0s"):
        # Spreads the tasks of a host: each timer gets a fixed offset, the same at every elapse and every boot.
        lines += [f"RandomizedDelaySec={randomized_delay}", "FixedRandomDelay=true"]
    lines += [
        f"Unit={service_unit(task.name)}",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ]
    return "\n".join(lines)


# The service: the values a unit file takes as they are, so each must be one line without what systemd or a shell would
# read as a separator, quote, specifier or comment (the role checks its variables with the same rule first).
PATH_RE = re.compile(r"/[^\s\x00-\x1f\x7f\"'\\%;]*\Z")
START_TIMEOUT_RE = re.compile(r"(infinity|[1-9][0-9]{0,8}(s|min|h|d)?)\Z")
MEMORY_MAX_RE = re.compile(r"(infinity|[1-9][0-9]{0,12}[KMGT]?)\Z")
# Paths that a sandboxed service does not see unless they are bound into it (ProtectHome, PrivateTmp), and those of
# them that ProtectHome=yes would hide for good (tmpfs, with the paths bound, then).
_HIDDEN_RE = re.compile(r"(/home|/root|/run/user|/tmp|/var/tmp)(/|\Z)")
_HOMES_RE = re.compile(r"(/home|/root|/run/user)(/|\Z)")


@dataclasses.dataclass(frozen=True)
class Service:
    """What the template service ``mailops-imapsync@.service`` needs to know (the ``service`` option)."""

    launcher: str  # imapsyncctl
    config_dir: str
    state_dir: str
    stop_timeout: int = 300  # TimeoutStopSec, seconds
    start_timeout: str = "12h"  # TimeoutStartSec: the longest a run may take
    memory_max: str = "1G"  # MemoryMax
    sandbox: bool = True  # the directives that need a user or mount namespace (always with scope system)
    read_paths: tuple[str, ...] = ()  # what the run reads (bound into the sandbox when hidden)
    write_paths: tuple[str, ...] = ()  # what the run writes besides state_dir (an LMTP socket), bound when hidden


def parse_service(item: t.Mapping[str, t.Any]) -> Service:
    """The ``service`` option, checked (one line each, nothing systemd would read otherwise); ConfigError otherwise."""
    problems = []
    for field in ("launcher", "config_dir", "state_dir"):
        if not isinstance(item.get(field), str) or not PATH_RE.match(item[field]):
            problems.append(f"service.{field}: {item.get(field)!r} is not an absolute path without spaces, control "
                            "characters, quotes, backslashes, '%' or ';'.")
    for field in ("read_paths", "write_paths"):
        for path in item.get(field) or ():
            if not isinstance(path, str) or not PATH_RE.match(path):
                problems.append(f"service.{field}: {path!r} is not an absolute path without spaces, control characters, "
                                "quotes, backslashes, '%' or ';'.")
    stop_timeout = item.get("stop_timeout", 300)
    if isinstance(stop_timeout, bool) or not isinstance(stop_timeout, int) or stop_timeout < 1:
        problems.append(f"service.stop_timeout: {stop_timeout!r} is not a whole number of seconds of at least 1.")
    start_timeout = str(item.get("start_timeout", "12h"))
    if not START_TIMEOUT_RE.match(start_timeout):
        problems.append(f"service.start_timeout: {start_timeout!r} is not valid; use a number with s, min, h or d (12h), "
                        "or infinity.")
    memory_max = str(item.get("memory_max", "1G"))
    if not MEMORY_MAX_RE.match(memory_max):
        problems.append(f"service.memory_max: {memory_max!r} is not valid; use bytes with K, M, G or T (1G), or infinity.")
    if problems:
        raise ConfigError(" ".join(problems))
    return Service(launcher=item["launcher"], config_dir=item["config_dir"], state_dir=item["state_dir"],
                   stop_timeout=stop_timeout, start_timeout=start_timeout, memory_max=memory_max,
                   sandbox=bool(item.get("sandbox", True)), read_paths=tuple(item.get("read_paths") or ()),
                   write_paths=tuple(item.get("write_paths") or ()))


def render_service(service: Service, scope: str) -> str:
    """The text of the template service ``mailops-imapsync@.service`` for the manager of ``scope``."""
    user = "--user " if scope == "user" else ""
    lines = [
        HEADER,
        "#",
        "# The service of the mailops.imap sync tasks: mailops-imapsync@TASK.service runs the task TASK once",
        "# (imapsyncctl run TASK). Its timer mailops-imapsync@TASK.timer starts it for interval tasks; start it by hand with",
        f"#   systemctl {user}start mailops-imapsync@TASK.service",
        "# A start that meets a run of the same task (started by imapsyncctl or migrate) ends at once as \"skipped\" (exit",
        "# code 75), which is a success here. No secret is in this file, in the environment or on the command line: the",
        f"# passwords stay in {service.config_dir}/secrets, read by the engine.",
        "[Unit]",
        "Description=mailops.imap sync task %i",
    ]
    if scope == "system":
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += [
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={service.launcher} --config-dir {service.config_dir} --state-dir {service.state_dir} run %i",
        "# 75: skipped, another run of the task holds its lock.",
        "SuccessExitStatus=75",
        "# systemctl stop (and the role, when it removes a task) asks the run to stop: it ends after its current batch,",
        "# with its state saved. Give it the time to.",
        f"TimeoutStopSec={service.stop_timeout}",
        "# The stop request goes to imapsyncctl only, which passes it on (to upstream imapsync too, for engine: imapsync);",
        "# whatever is left when TimeoutStopSec is over is killed.",
        "KillMode=mixed",
        "# Every run ends: past imapsync_service_timeout systemd stops it as above (Type=oneshot: TimeoutStartSec is the whole",
        "# run; RuntimeMaxSec would not apply) and the next run resumes from the checkpoints. Its lock goes with its process.",
        f"TimeoutStartSec={service.start_timeout}",
        "# imapsync_service_memory_max: a bound for the run's memory, builtin engine or upstream imapsync (see the README).",
        f"MemoryMax={service.memory_max}",
        "UMask=0077",
        "",
        f"# Hardening: systemd-analyze {user}security mailops-imapsync@TASK.service",
        "NoNewPrivileges=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "RestrictNamespaces=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        "AmbientCapabilities=",
        "KeyringMode=private",
        "RemoveIPC=yes",
    ]
    if scope == "system" or service.sandbox:
        lines += _sandbox(service, scope)
    else:
        lines += [
            "# imapsync_service_sandbox: false (user managers without unprivileged user namespaces): no directive that needs a",
            "# user or mount namespace (PrivateUsers, ProtectSystem, ProtectHome, PrivateTmp, CapabilityBoundingSet, ...).",
        ]
    return "\n".join(lines) + "\n"


def _sandbox(service: Service, scope: str) -> list[str]:
    """The directives that need a user or mount namespace: the files of the host read-only, but state_dir."""
    paths = service.read_paths + (service.state_dir, *service.write_paths)
    lines = []
    if scope == "user":
        lines.append("# A user manager applies the directives below inside a user namespace of its own (unprivileged user namespaces).")
    lines += [
        "PrivateUsers=yes",
        "CapabilityBoundingSet=",
        "ProtectSystem=strict",
        f"ProtectHome={'tmpfs' if scope == 'user' or any(_HOMES_RE.match(path) for path in paths) else 'yes'}",
        "PrivateTmp=yes",
        "PrivateMounts=yes",
        "PrivateDevices=yes",
        "DevicePolicy=closed",
        "ProtectKernelModules=yes",
        "ProtectClock=yes",
        "ProtectControlGroups=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "ProcSubset=pid",
    ]
    if scope == "system":
        lines += ["ProtectKernelTunables=yes", "ProtectKernelLogs=yes"]
    else:
        lines += [
            "# Not ProtectKernelTunables= nor ProtectKernelLogs=: a user manager cannot apply them in its user namespace (the",
            "# service would fail with status 226/NAMESPACE).",
        ]
    lines += ["# Only the state directory is writable.", f"ReadWritePaths={service.state_dir}"]
    lines += [f"BindReadOnlyPaths=-{path}" for path in service.read_paths if _HIDDEN_RE.match(path)]
    writes = dict.fromkeys((service.state_dir, *service.write_paths))
    lines += [f"BindPaths=-{path}" for path in writes if _HIDDEN_RE.match(path)]
    return lines


class Systemctl:
    """``systemctl`` of the system manager or of the user manager (``--user``) of the user running this."""

    def __init__(self, scope: str, systemctl: str = "systemctl",
                 run: t.Callable[[list[str]], tuple[int, str, str]] | None = None) -> None:
        if scope not in SCOPES:
            raise ConfigError(f"scope: {scope!r} is not valid; use system or user.")
        self.scope = scope
        self.systemctl = systemctl
        self._run = run or self._subprocess

    @staticmethod
    def environment() -> dict[str, str]:
        """The environment of systemctl: C locale, no pager, and for a user manager an XDG_RUNTIME_DIR."""
        env = dict(os.environ, LC_ALL="C", SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
        if not env.get("XDG_RUNTIME_DIR"):
            runtime = f"/run/user/{os.getuid()}"
            if os.path.isdir(runtime):
                env["XDG_RUNTIME_DIR"] = runtime  # become (sudo, su) does not set it; the user manager lives there
        return env

    def _subprocess(self, argv: list[str]) -> tuple[int, str, str]:
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                                  env=self.environment(), timeout=TIMEOUT_S)
        except FileNotFoundError:
            return 127, "", f"{argv[0]}: command not found"
        except subprocess.TimeoutExpired:
            return 124, "", f"no answer within {TIMEOUT_S:g} s"
        return proc.returncode, proc.stdout, proc.stderr

    def argv(self, *args: str) -> list[str]:
        return [self.systemctl, *(["--user"] if self.scope == "user" else []), *args]

    def call(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        argv = self.argv(*args)
        rc, out, err = self._run(argv)
        if check and rc != 0:
            words = (err or out).strip().replace("\n", " ")
            where = "the user manager (systemctl --user)" if self.scope == "user" else "the system manager"
            raise SystemdError(f"'{' '.join(argv[:4])}{' ...' if len(argv) > 4 else ''}' failed ({rc}) on {where}: "
                               f"{words or 'no message'}.")
        return rc, out, err

    def each(self, action: t.Sequence[str], units: t.Sequence[str], check: bool = True) -> None:
        """Run ``systemctl ACTION UNIT...`` on every unit, a chunk at a time."""
        for start in range(0, len(units), CHUNK):
            self.call(*action, "--", *units[start:start + CHUNK], check=check)

    def loaded(self) -> dict[str, dict[str, str]]:
        """The loaded ``mailops-imapsync@*`` units: their load, active and sub states."""
        _rc, out, _err = self.call("list-units", "--all", "--plain", "--no-legend", "--no-pager", "--full",
                                   "--type=timer,service", f"{UNIT_PREFIX}*")
        units: dict[str, dict[str, str]] = {}
        for line in out.splitlines():
            fields = line.split()
            if fields and not UNIT_RE.fullmatch(fields[0]) and len(fields[0]) <= 2:
                fields = fields[1:]  # a state marker ("●") before the name
            if len(fields) >= 4 and UNIT_RE.fullmatch(fields[0]):
                units[fields[0]] = {"Id": fields[0], "LoadState": fields[1], "ActiveState": fields[2], "SubState": fields[3]}
        return units

    def show(self, units: t.Sequence[str]) -> dict[str, dict[str, str]]:
        """``systemctl show`` of each unit: Id, LoadState, ActiveState, SubState, UnitFileState, NeedDaemonReload."""
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(units), CHUNK):
            chunk = list(units[start:start + CHUNK])
            _rc, out, _err = self.call("show", "--no-pager", "--property=" + ",".join(SHOWN),
                                       "--", *chunk)
            blocks = [block for block in out.split("\n\n") if block.strip()]
            for unit, block in zip(chunk, blocks):
                props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
                found[unit] = props
        return found


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return ""  # not ours to keep: it is replaced


def _write(path: str, text: str) -> None:
    atomic_write(path, text.encode("utf-8"), 0o644)


@dataclasses.dataclass
class FileChange:
    """A timer file to write (``after``) or to remove (``after`` None)."""

    unit: str
    path: str
    before: str | None
    after: str | None


@dataclasses.dataclass
class Plan:
    """What :func:`apply` does; computed by :func:`plan` (check mode stops there)."""

    unit_dir: str
    wanted: list[str] = dataclasses.field(default_factory=list)  # the timers that run after the change
    files: list[FileChange] = dataclasses.field(default_factory=list)  # timer files
    service: FileChange | None = None  # the template service, when given and its file changes
    stop: list[str] = dataclasses.field(default_factory=list)  # unwanted timers and purged services that run
    disable: list[str] = dataclasses.field(default_factory=list)
    enable: list[str] = dataclasses.field(default_factory=list)
    start: list[str] = dataclasses.field(default_factory=list)
    reset_failed: list[str] = dataclasses.field(default_factory=list)
    purged: list[str] = dataclasses.field(default_factory=list)  # task names whose units are removed
    reload: bool = False
    reload_requested: bool = False
    stale: list[str] = dataclasses.field(default_factory=list)  # units systemd runs from files it has not reloaded

    @property
    def files_changed(self) -> bool:
        return bool(self.files) or self.service is not None

    @property
    def changed(self) -> bool:
        return bool(self.files_changed or self.stop or self.disable or self.enable or self.start or self.reset_failed or self.reload)

    def written(self) -> list[str]:
        return [change.unit for change in self.files if change.after is not None]

    def removed(self) -> list[str]:
        return [change.unit for change in self.files if change.after is None]

    def _written_files(self) -> list[FileChange]:
        """The unit files to write: the service first, then the timers."""
        return ([self.service] if self.service is not None else []) + [change for change in self.files if change.after is not None]

    def reload_reason(self) -> str:
        """Why the manager is reloaded (the first reason of :func:`plan`'s)."""
        if self.files_changed:
            return "a unit file changed"
        if self.stale:
            return f"systemd has not loaded the current file of {', '.join(self.stale)}"
        return "asked for: daemon_reload"

    def actions(self) -> list[str]:
        """The systemctl calls, in order, as an administrator would type them."""
        lines = [f"systemctl stop {' '.join(self.stop)}"] if self.stop else []
        if self.disable:
            lines.append(f"systemctl disable {' '.join(self.disable)}")
        lines += [f"write {change.path}" for change in self._written_files()]
        lines += [f"remove {change.path}" for change in self.files if change.after is None]
        if self.enable:
            lines.append(f"systemctl enable {' '.join(self.enable)}")
        if self.reload:
            lines.append(f"systemctl daemon-reload  ({self.reload_reason()})")
        if self.reset_failed:
            lines.append(f"systemctl reset-failed {' '.join(self.reset_failed)}")
        if self.start:
            lines.append(f"systemctl start {' '.join(self.start)}")
        return lines

    def diff(self) -> list[dict[str, str]]:
        """Ansible's diff: one entry per changed unit file, then the systemctl actions."""
        changes = ([self.service] if self.service is not None else []) + self.files
        diffs = [{"before_header": change.path, "after_header": change.path,
                  "before": change.before or "", "after": change.after or ""} for change in changes]
        if self.changed:
            diffs.append({"prepared": "\n".join(self.actions()) + "\n"})
        return diffs


def plan(tasks: t.Sequence[TimerTask], unit_dir: str, systemctl: Systemctl, *, purge: bool = False,
         first_delay: str = "1min", accuracy: str = "1s", randomized_delay: str = "0",
         reload_requested: bool = False, service: Service | None = None) -> Plan:
    """What it takes for the timers under ``unit_dir`` and in the manager to be those ``tasks`` want, and, with
    ``service``, for the template service to be the one :func:`render_service` writes."""
    listed = {task.name: task for task in tasks}
    wanted = {task.name: task for task in tasks if task.wants_timer}
    result = Plan(unit_dir=unit_dir, reload_requested=reload_requested)
    result.wanted = [timer_unit(name) for name in wanted]
    if service is not None:
        path = os.path.join(unit_dir, SERVICE_TEMPLATE)
        text = render_service(service, systemctl.scope)
        before = _read(path)
        if before != text:
            result.service = FileChange(SERVICE_TEMPLATE, path, before, text)

    # Timer files there now, and loaded units: which tasks have something of ours.
    try:
        entries = sorted(os.listdir(unit_dir))
    except FileNotFoundError:
        entries = []
    on_disk = {match.group(1) for match in map(UNIT_RE.fullmatch, entries) if match and match.group(2) == "timer"}
    loaded = systemctl.loaded()
    known = on_disk | {UNIT_RE.fullmatch(unit).group(1) for unit in loaded}  # type: ignore[union-attr]
    unwanted = sorted(name for name in known if name not in wanted and (name in listed or purge))
    result.purged = sorted(name for name in known if purge and name not in listed)

    # The timers, and the service instances loaded now (one that is not loaded reads its files when it is).
    instances = [unit for unit in loaded if unit.endswith(".service")]
    states = systemctl.show([timer_unit(name) for name in wanted] + [timer_unit(name) for name in unwanted] + instances)
    result.stale = sorted(unit for unit, props in states.items() if props.get("NeedDaemonReload") == "yes")

    # Files.
    for name, task in wanted.items():
        path = os.path.join(unit_dir, timer_unit(name))
        text = render_timer(task, first_delay, accuracy, randomized_delay)
        before = _read(path)
        if before != text:
            result.files.append(FileChange(timer_unit(name), path, before, text))
    for name in unwanted:
        path = os.path.join(unit_dir, timer_unit(name))
        if name in on_disk:
            result.files.append(FileChange(timer_unit(name), path, _read(path), None))

    # Unwanted timers: stopped, disabled. Purged tasks: their service instance stopped and, when failed, reset.
    for name in unwanted:
        state = states.get(timer_unit(name), {})
        if state.get("ActiveState") in ACTIVE_STATES:
            result.stop.append(timer_unit(name))
        if state.get("UnitFileState") in ("enabled", "enabled-runtime", "linked", "linked-runtime"):
            result.disable.append(timer_unit(name))
    for name in result.purged:
        instance = loaded.get(service_unit(name))
        if instance is None:
            continue
        if instance["ActiveState"] in ACTIVE_STATES:
            result.stop.append(service_unit(name))
            result.reset_failed.append(service_unit(name))  # in case stopping it ends in failure
        elif instance["ActiveState"] == "failed":
            result.reset_failed.append(service_unit(name))

    # Wanted timers: enabled and started (a timer file written anew is loaded by the reload first).
    for name in wanted:
        state = states.get(timer_unit(name), {})
        if state.get("UnitFileState") not in ("enabled", "enabled-runtime"):
            result.enable.append(timer_unit(name))
        if state.get("ActiveState") != "active":
            result.start.append(timer_unit(name))
    # A reload a file change asked for earlier and did not get (a later step failed) is still due: systemd says so.
    result.reload = result.files_changed or reload_requested or bool(result.stale)
    return result


def apply(change: Plan, systemctl: Systemctl) -> None:
    """Carry out a plan (stop and disable first, files, enable, one reload, reset, start)."""
    if change.stop:
        systemctl.each(["stop"], change.stop)
    if change.disable:
        systemctl.each(["disable", "--no-reload"], change.disable)
    if change.files_changed:
        make_dirs(change.unit_dir, 0o755, check=False)  # missing parents 0755 too, whatever the umask
    if change.service is not None and change.service.after is not None:
        _write(change.service.path, change.service.after)
    for file in change.files:
        if file.after is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(file.path)
        else:
            _write(file.path, file.after)
    if change.enable:
        systemctl.each(["enable", "--no-reload"], change.enable)
    if change.reload:
        systemctl.call("daemon-reload")
    if change.reset_failed:
        systemctl.each(["reset-failed"], change.reset_failed, check=False)  # a unit that stopped cleanly is not failed
    if change.start:
        systemctl.each(["start"], change.start)
