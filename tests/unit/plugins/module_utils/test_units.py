# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The units of sync tasks: the timer files and the service, the systemctl calls (one per action), idempotence, purge,\ncheck mode."""

from __future__ import annotations

import re

import pytest

from ansible_collections.mailops.imap.plugins.module_utils import _units as units
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError

PREFIX = units.UNIT_PREFIX


class FakeManager:
    """A systemd manager that keeps unit states and answers systemctl like the real one (the parts used)."""

    def __init__(self, unit_dir):
        self.unit_dir = unit_dir
        self.enabled: set[str] = set()
        self.active: dict[str, str] = {}  # unit -> ActiveState
        self.loaded_files: set[str] = set()  # timer files known to the manager (after a reload)
        self.loaded_texts: dict[str, str] = {}  # unit file -> its text at the last reload
        self.calls: list[list[str]] = []

    def _file_exists(self, unit):
        return (self.unit_dir / unit).exists()

    def _text(self, unit):
        path = self.unit_dir / unit
        return path.read_text(encoding="utf-8") if path.exists() else None

    def __call__(self, argv):
        assert argv[0] == "systemctl"
        args = [a for a in argv[1:] if a not in ("--user", "--")]
        self.calls.append(args)
        action = args[0]
        units_ = [a for a in args[1:] if not a.startswith("-")]
        if action == "list-units":
            lines = []
            for unit in sorted(set(self.active) | self.loaded_files):
                state = self.active.get(unit, "inactive")
                lines.append(f"{unit} loaded {state} {'waiting' if state == 'active' else 'dead'} description")
            return 0, "\n".join(lines) + "\n", ""
        if action == "show":
            blocks = []
            for unit in units_:
                known = unit in self.loaded_files or unit in self.active or self._file_exists(unit)
                file_state = ("enabled" if unit in self.enabled else "disabled") if self._file_exists(unit) else ""
                stale = unit in self.loaded_texts and self._text(unit) != self.loaded_texts[unit]
                blocks.append(f"Id={unit}\nLoadState={'loaded' if known else 'not-found'}\n"
                              f"ActiveState={self.active.get(unit, 'inactive')}\nSubState=dead\nUnitFileState={file_state}\n"
                              f"NeedDaemonReload={'yes' if stale else 'no'}\n")
            return 0, "\n".join(blocks), ""
        if action == "daemon-reload":
            self.loaded_files = {p.name for p in self.unit_dir.glob(f"{PREFIX}*.timer")}
            self.loaded_texts = {unit: self._text(unit) for unit in self.loaded_files}
            return 0, "", ""
        for unit in units_:
            if action == "enable":
                self.enabled.add(unit)
            elif action == "disable":
                self.enabled.discard(unit)
            elif action == "start":
                if unit.endswith(".timer") and unit not in self.loaded_files:
                    return 5, "", f"Failed to start {unit}: Unit {unit} not found."
                self.active[unit] = "active"
            elif action == "stop":
                self.active.pop(unit, None)
            elif action == "reset-failed":
                if self.active.get(unit) == "failed":
                    self.active.pop(unit)
        return 0, "", ""

    def actions(self):
        return [call[0] for call in self.calls if call[0] not in ("list-units", "show")]


@pytest.fixture
def manager(tmp_path):
    unit_dir = tmp_path / "units"
    return FakeManager(unit_dir)


def tasks(*items):
    return units.parse_tasks([dict(item) for item in items])


def run(manager, task_list, check=False, **kwargs):
    systemctl = units.Systemctl("user", run=manager)
    plan = units.plan(task_list, str(manager.unit_dir), systemctl, **kwargs)
    if not check:
        units.apply(plan, systemctl)
    return plan


INTERVAL = {"name": "tick", "schedule": "interval", "interval_minutes": 5}
MANUAL = {"name": "manual", "schedule": "manual"}


def test_first_run_writes_enables_reloads_once_and_starts(manager):
    manager.calls.clear()
    plan = run(manager, tasks(INTERVAL, MANUAL), first_delay="30s")
    assert plan.changed and plan.written() == [f"{PREFIX}tick.timer"] and plan.reload
    text = (manager.unit_dir / f"{PREFIX}tick.timer").read_text(encoding="utf-8")
    assert "OnActiveSec=30s\n" in text and "OnUnitActiveSec=5min\n" in text and "AccuracySec=1s\n" in text
    assert f"Unit={PREFIX}tick.service\n" in text and "WantedBy=timers.target" in text
    assert "RandomizedDelaySec" not in text
    assert (manager.unit_dir / f"{PREFIX}tick.timer").stat().st_mode & 0o777 == 0o644
    assert manager.actions() == ["enable", "daemon-reload", "start"]
    shown = [c for c in manager.calls if c[0] == "show"]
    assert shown == [["show", "--no-pager", "--property=Id,LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload", f"{PREFIX}tick.timer"]]
    assert not (manager.unit_dir / f"{PREFIX}manual.timer").exists()


def test_second_run_changes_nothing_and_calls_only_list_and_show(manager):
    run(manager, tasks(INTERVAL, MANUAL))
    manager.calls.clear()
    plan = run(manager, tasks(INTERVAL, MANUAL))
    assert not plan.changed and not plan.reload and plan.diff() == []
    assert manager.actions() == []


def test_a_changed_interval_rewrites_and_reloads_without_restarting(manager):
    run(manager, tasks(INTERVAL))
    manager.calls.clear()
    plan = run(manager, tasks(dict(INTERVAL, interval_minutes=10)))
    assert plan.changed and plan.written() == [f"{PREFIX}tick.timer"]
    assert manager.actions() == ["daemon-reload"]
    diff = plan.diff()
    assert "OnUnitActiveSec=5min" in diff[0]["before"] and "OnUnitActiveSec=10min" in diff[0]["after"]
    assert "daemon-reload" in diff[-1]["prepared"]


def test_daemon_reload_asked_for_reloads_only(manager):
    run(manager, tasks(INTERVAL))
    manager.calls.clear()
    plan = run(manager, tasks(INTERVAL), reload_requested=True)
    assert plan.changed and not plan.files and manager.actions() == ["daemon-reload"]


def test_a_reload_an_earlier_run_did_not_get_is_done_the_next_time(manager):
    run(manager, tasks(INTERVAL))
    # An earlier run wrote the new timer file, then failed before its reload: the file is already as wanted.
    path = manager.unit_dir / f"{PREFIX}tick.timer"
    path.write_text(units.render_timer(tasks(dict(INTERVAL, interval_minutes=10))[0], "1min", "1s", "0"), encoding="utf-8")
    manager.calls.clear()
    plan = run(manager, tasks(dict(INTERVAL, interval_minutes=10)))
    assert not plan.files and plan.stale == [f"{PREFIX}tick.timer"]
    assert plan.changed and manager.actions() == ["daemon-reload"]
    assert "systemd has not loaded the current file of mailops-imapsync@tick.timer" in plan.diff()[-1]["prepared"]
    manager.calls.clear()
    assert not run(manager, tasks(dict(INTERVAL, interval_minutes=10))).changed and manager.actions() == []


@pytest.mark.parametrize("change", [{"schedule": "manual"}, {"enabled": False}])
def test_manual_or_disabled_stops_disables_and_removes(manager, change):
    run(manager, tasks(INTERVAL))
    manager.calls.clear()
    plan = run(manager, tasks(dict(INTERVAL, **change)))
    assert plan.stop == [f"{PREFIX}tick.timer"] and plan.disable == [f"{PREFIX}tick.timer"]
    assert plan.removed() == [f"{PREFIX}tick.timer"] and not plan.start and not plan.enable
    assert manager.actions() == ["stop", "disable", "daemon-reload"]
    assert not (manager.unit_dir / f"{PREFIX}tick.timer").exists()
    assert not run(manager, tasks(dict(INTERVAL, **change))).changed


def test_unlisted_tasks_are_left_alone_without_purge_and_removed_with_it(manager):
    run(manager, tasks(INTERVAL, dict(INTERVAL, name="other")))
    manager.active[f"{PREFIX}gone.service"] = "failed"  # a manual task that failed, not listed any more
    manager.calls.clear()
    kept = run(manager, tasks(INTERVAL))
    assert not kept.changed and (manager.unit_dir / f"{PREFIX}other.timer").exists()

    check = run(manager, tasks(INTERVAL), check=True, purge=True)
    assert check.changed and check.purged == ["gone", "other"] and manager.actions() == []
    assert (manager.unit_dir / f"{PREFIX}other.timer").exists()

    purged = run(manager, tasks(INTERVAL), purge=True)
    assert purged.purged == ["gone", "other"]
    assert purged.removed() == [f"{PREFIX}other.timer"] and purged.reset_failed == [f"{PREFIX}gone.service"]
    assert manager.actions() == ["stop", "disable", "daemon-reload", "reset-failed"]
    assert not (manager.unit_dir / f"{PREFIX}other.timer").exists()
    assert f"{PREFIX}gone.service" not in manager.active
    assert not run(manager, tasks(INTERVAL), purge=True).changed


def test_a_running_service_of_a_purged_task_is_stopped(manager):
    run(manager, tasks(INTERVAL))
    manager.active[f"{PREFIX}tick.service"] = "activating"
    plan = run(manager, tasks(), purge=True)
    assert f"{PREFIX}tick.service" in plan.stop and f"{PREFIX}tick.timer" in plan.stop
    assert f"{PREFIX}tick.service" not in manager.active


def test_check_mode_predicts_and_changes_nothing(manager):
    plan = run(manager, tasks(INTERVAL), check=True)
    assert plan.changed and plan.enable == plan.start == [f"{PREFIX}tick.timer"] and plan.reload
    assert not manager.unit_dir.exists() and manager.actions() == []


def test_a_timer_stopped_by_hand_is_started_again(manager):
    run(manager, tasks(INTERVAL))
    manager.active.pop(f"{PREFIX}tick.timer")
    manager.calls.clear()
    plan = run(manager, tasks(INTERVAL))
    assert plan.start == [f"{PREFIX}tick.timer"] and not plan.reload and manager.actions() == ["start"]


def test_many_tasks_take_one_call_per_action_in_chunks(manager):
    many = tasks(*({"name": f"t{i:03d}", "schedule": "interval", "interval_minutes": 60} for i in range(450)))
    manager.calls.clear()
    run(manager, many)
    assert manager.actions() == ["enable"] * 3 + ["daemon-reload"] + ["start"] * 3  # chunks of 200
    assert len([c for c in manager.calls if c[0] == "show"]) == 3
    manager.calls.clear()
    assert not run(manager, many).changed


def test_randomized_delay(manager):
    run(manager, tasks(INTERVAL), randomized_delay="2min")
    text = (manager.unit_dir / f"{PREFIX}tick.timer").read_text(encoding="utf-8")
    assert "RandomizedDelaySec=2min\nFixedRandomDelay=true\n" in text


def test_a_failing_systemctl_is_a_sentence(manager):
    def broken(argv):
        return 1, "", "Failed to connect to bus: No such file or directory"

    with pytest.raises(units.SystemdError, match="on the user manager.*Failed to connect to bus"):
        units.plan(tasks(INTERVAL), str(manager.unit_dir), units.Systemctl("user", run=broken))


@pytest.mark.parametrize("items,phrase", [
    ([{"name": "Bad Name"}], "not a valid task name"),
    ([{"name": "t1\n", "schedule": "interval", "interval_minutes": 5}], "not a valid task name"),
    ([INTERVAL, INTERVAL], "already used by tasks entry 1"),
    ([{"name": "x", "schedule": "interval"}], "interval_minutes is required with schedule: interval"),
    ([{"name": "x", "schedule": "interval", "interval_minutes": 0}], "from 1 to 1440"),
    ([{"name": "x", "schedule": "daily"}], "schedule: 'daily'"),
])
def test_bad_tasks_are_refused_with_a_sentence(items, phrase):
    with pytest.raises(ConfigError, match=phrase):
        units.parse_tasks(items)


@pytest.mark.parametrize("value,ok", [
    ("1min", True), ("1min 30s", True), ("1min30s", True), ("90", True), ("0", True), ("2h", True), ("1.5h", True),
    ("", False), ("1\n[Service]", False), ("1min; rm", False), ("abc", False), ("1" * 60 + "!", False),
])
def test_time_spans(value, ok):
    assert units.is_timespan(value) is ok
    if not ok:
        with pytest.raises(ConfigError, match="first_delay"):
            units.check_timespan("first_delay", value)


def test_a_name_with_a_trailing_line_feed_writes_no_unit(manager):
    with pytest.raises(ConfigError, match="'t1\\\\n' is not a valid task name"):
        run(manager, tasks({"name": "t1\n", "schedule": "interval", "interval_minutes": 5}))
    assert not manager.unit_dir.exists() or not list(manager.unit_dir.iterdir())
    assert units.UNIT_RE.fullmatch(f"{PREFIX}t1\n.timer") is None and units.UNIT_RE.match(f"{PREFIX}t1.timer\n") is None


SERVICE = {"launcher": "/usr/local/bin/imapsyncctl", "config_dir": "/etc/mailops-imap", "state_dir": "/var/lib/mailops-imap"}


def test_the_service_is_written_with_the_timers_then_left_alone(manager):
    service = units.parse_service(SERVICE)
    plan = run(manager, tasks(INTERVAL), service=service)
    path = manager.unit_dir / f"{PREFIX}.service"
    text = path.read_text(encoding="utf-8")
    assert plan.service is not None and plan.written() == [f"{PREFIX}tick.timer"] and plan.reload
    assert path.stat().st_mode & 0o777 == 0o644 and text.startswith(units.HEADER + "\n")
    assert ("ExecStart=/usr/local/bin/imapsyncctl --config-dir /etc/mailops-imap --state-dir /var/lib/mailops-imap "
            "run %i\n") in text
    assert manager.actions() == ["enable", "daemon-reload", "start"]
    manager.calls.clear()
    again = run(manager, tasks(INTERVAL), service=service)
    assert not again.changed and again.service is None and manager.actions() == []


def test_a_changed_service_alone_is_written_and_reloads(manager):
    run(manager, tasks(INTERVAL), service=units.parse_service(SERVICE))
    manager.calls.clear()
    check = run(manager, tasks(INTERVAL), check=True, service=units.parse_service(dict(SERVICE, memory_max="2G")))
    assert check.changed and check.reload and manager.actions() == []
    assert "MemoryMax=1G\n" in check.diff()[0]["before"] and "MemoryMax=2G\n" in check.diff()[0]["after"]
    assert "MemoryMax=1G\n" in (manager.unit_dir / f"{PREFIX}.service").read_text(encoding="utf-8")
    run(manager, tasks(INTERVAL), service=units.parse_service(dict(SERVICE, memory_max="2G")))
    assert manager.actions() == ["daemon-reload"]
    assert "MemoryMax=2G\n" in (manager.unit_dir / f"{PREFIX}.service").read_text(encoding="utf-8")


def test_the_sandbox_binds_hidden_paths_and_a_user_manager_gets_no_kernel_directives():
    service = units.parse_service(dict(SERVICE, read_paths=["/etc/mailops-imap", "/root/.pyenv/versions/3.11", "/tmp/ca.pem"],
                                       write_paths=["/run/user/0/lmtp"]))
    system = units.render_service(service, "system")
    assert "ProtectHome=tmpfs\n" in system and "ProtectKernelTunables=yes\n" in system
    assert "BindReadOnlyPaths=-/root/.pyenv/versions/3.11\nBindReadOnlyPaths=-/tmp/ca.pem\nBindPaths=-/run/user/0/lmtp\n" in system
    assert "BindReadOnlyPaths=-/etc" not in system and "Wants=network-online.target" in system
    plain = units.render_service(units.parse_service(SERVICE), "system")
    assert "ProtectHome=yes\n" in plain
    user = units.render_service(dict_service(sandbox=True), "user")
    assert "ProtectKernelTunables" not in user.replace("# Not ProtectKernelTunables", "") and "PrivateUsers=yes" in user
    assert "Wants=network-online.target" not in user and "systemctl --user start" in user
    unsandboxed = units.render_service(dict_service(sandbox=False), "user")
    assert "PrivateUsers" not in unsandboxed.replace("(PrivateUsers,", "") and "NoNewPrivileges=yes" in unsandboxed
    assert "PrivateUsers=yes" in units.render_service(dict_service(sandbox=False), "system"), "a system service is sandboxed"


def dict_service(**changes):
    return units.parse_service(dict(SERVICE, **changes))


@pytest.mark.parametrize("changes, phrase", [
    ({"launcher": "/usr/bin/imapsync ctl"}, "service.launcher: '/usr/bin/imapsync ctl' is not an absolute path"),
    ({"state_dir": "var/lib"}, "service.state_dir: 'var/lib' is not an absolute path"),
    ({"read_paths": ["/etc/x\nExecStartPre=/bin/sh"]}, "service.read_paths: "),
    ({"write_paths": ["/run/%i"]}, "service.write_paths: '/run/%i'"),
    ({"stop_timeout": 0}, "service.stop_timeout: 0 is not a whole number"),
    ({"start_timeout": "12h\nUser=root"}, "service.start_timeout: "),
    ({"memory_max": "lots"}, "service.memory_max: 'lots' is not valid"),
])
def test_a_service_value_a_unit_file_cannot_hold_is_refused(changes, phrase):
    with pytest.raises(ConfigError, match=re.escape(phrase)):
        units.parse_service(dict(SERVICE, **changes))
