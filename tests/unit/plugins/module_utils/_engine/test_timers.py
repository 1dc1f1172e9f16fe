# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The next run of a task's timer, from systemctl's words (sample outputs of systemd 252), never an exception."""

from __future__ import annotations

import datetime
import os
import stat

from ansible_collections.mailops.imap.plugins.module_utils._engine import timers

# systemctl --user list-timers --all --output=json mailops-imapsync@demo.timer mailops-imapsync@cal.timer (systemd 252)
LISTED = ('[{"next":1795652145089550,"left":1795652145089550,"last":0,"passed":0,"unit":"mailops-imapsync@demo.timer",'
          '"activates":"mailops-imapsync@demo.service"},{"next":1795665600000000,"left":1795665600000000,"last":0,"passed":0,'
          '"unit":"mailops-imapsync@cal.timer","activates":"mailops-imapsync@cal.service"}]\n')
SHOW_CALENDAR = "NextElapseUSecRealtime=Thu 2026-11-26 04:00:00 UTC\nNextElapseUSecMonotonic=0\nLoadState=loaded\n"
SHOW_MONOTONIC = "NextElapseUSecRealtime=\nNextElapseUSecMonotonic=2h 40min 42.226945s\nLoadState=loaded\n"
SHOW_NOT_FOUND = "NextElapseUSecRealtime=\nNextElapseUSecMonotonic=infinity\nLoadState=not-found\n"


def iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).isoformat(timespec="seconds")


class Fake:
    """A systemctl that answers per scope: a dict of (scope, verb) -> output, or None for a failed command."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        scope = "user" if "--user" in argv else "system"
        verb = "list-timers" if "list-timers" in argv else "show"
        return self.answers.get((scope, verb))


def test_unit_name():
    assert timers.timer_unit("inbox-carol") == "mailops-imapsync@inbox-carol.timer"


def test_parse_list_timers():
    assert timers.parse_list_timers(LISTED, "mailops-imapsync@demo.timer") == "2026-11-26T00:15:45+00:00"
    assert timers.parse_list_timers(LISTED, "mailops-imapsync@cal.timer") == "2026-11-26T04:00:00+00:00"
    assert timers.parse_list_timers(LISTED, "mailops-imapsync@other.timer") is None
    assert timers.parse_list_timers('[{"unit": "mailops-imapsync@x.timer", "next": 0}]', "mailops-imapsync@x.timer") is None
    assert timers.parse_list_timers('[{"unit": "mailops-imapsync@x.timer", "next": null}]', "mailops-imapsync@x.timer") is None
    assert timers.parse_list_timers("not json", "x") is None
    assert timers.parse_list_timers("{}", "x") is None


def test_parse_timespan():
    assert timers.parse_timespan("2h 40min 42.226945s") == 2 * 3600 + 40 * 60 + 42.226945
    assert timers.parse_timespan("1d 3h") == 86400 + 3 * 3600
    assert timers.parse_timespan("500ms") == 0.5
    assert timers.parse_timespan("1w 2us") == 604800 + 2e-6
    for nothing in ("", "0", "infinity", "n/a", "soon", "3 parsecs"):
        assert timers.parse_timespan(nothing) is None, nothing


def test_parse_timestamp():
    assert timers.parse_timestamp("Thu 2026-11-26 04:00:00 UTC") == datetime.datetime(2026, 11, 26, 4, tzinfo=datetime.timezone.utc).timestamp()
    assert timers.parse_timestamp("@1795665600") == 1795665600.0
    assert timers.parse_timestamp("Thu 2026-11-26 05:00:00 CET") is None, "asked with TZ=UTC: another zone is not guessed"
    for nothing in ("", "n/a", "@0", "@x", "tomorrow"):
        assert timers.parse_timestamp(nothing) is None, nothing


def test_parse_show():
    assert timers.parse_show(SHOW_CALENDAR) == "2026-11-26T04:00:00+00:00"
    span = 2 * 3600 + 40 * 60 + 42.226945
    assert timers.parse_show(SHOW_MONOTONIC, now=1_000_000.0, monotonic_now=500.0) == iso(1_000_000.0 - 500.0 + span)
    assert timers.parse_show(SHOW_NOT_FOUND) is None
    both = "LoadState=loaded\nNextElapseUSecRealtime=@2000000000\nNextElapseUSecMonotonic=1h\n"
    assert timers.parse_show(both, now=1_000_000.0, monotonic_now=0.0) == iso(1_000_000.0 + 3600), "the earlier one"


def test_system_manager_first_then_user():
    fake = Fake({("system", "list-timers"): "[]\n", ("user", "list-timers"): LISTED})
    assert timers.next_runs(["demo", "cal", "none"], run=fake) == {
        "demo": "2026-11-26T00:15:45+00:00", "cal": "2026-11-26T04:00:00+00:00", "none": None}
    assert [c[1] for c in fake.calls] == ["list-timers", "--user"]
    assert fake.calls[0][-3:] == ["mailops-imapsync@demo.timer", "mailops-imapsync@cal.timer", "mailops-imapsync@none.timer"]
    assert "--user" not in fake.calls[0]


def test_system_answer_wins():
    fake = Fake({("system", "list-timers"): LISTED})
    assert timers.next_run("cal", run=fake) == "2026-11-26T04:00:00+00:00"
    assert len(fake.calls) == 1


def test_old_systemd_falls_back_to_show():
    fake = Fake({("system", "list-timers"): "NEXT LEFT LAST PASSED UNIT ACTIVATES\n", ("system", "show"): SHOW_CALENDAR})
    assert timers.next_run("cal", run=fake) == "2026-11-26T04:00:00+00:00"


def test_no_manager_anywhere_is_none():
    fake = Fake({})
    assert timers.next_runs(["a", "b"], run=fake) == {"a": None, "b": None}
    # per scope: list-timers, then one show (which fails: no manager), nothing more
    assert len(fake.calls) == 4


def test_nothing_to_ask():
    fake = Fake({})
    assert timers.next_runs([], run=fake) == {}
    assert fake.calls == []


def test_without_systemctl(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert timers.next_run("x") is None


def test_real_commands_with_a_stand_in_systemctl(monkeypatch, tmp_path):
    """The subprocess path: environment (C locale, UTC), arguments, exit codes."""
    log = tmp_path / "calls"
    script = tmp_path / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f"echo \"$TZ $LC_ALL $*\" >> {log}\n"
        "case \"$*\" in\n"
        "  *--user*list-timers*) echo '[{\"unit\": \"mailops-imapsync@t1.timer\", \"next\": 1795665600000000}]' ;;\n"
        "  *) echo 'System has not been booted with systemd as init system (PID 1).' >&2; exit 1 ;;\n"
        "esac\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert timers.next_runs(["t1", "t2"]) == {"t1": "2026-11-26T04:00:00+00:00", "t2": None}
    calls = log.read_text(encoding="utf-8").splitlines()
    assert calls[0].startswith("UTC C list-timers --all --no-pager --output=json mailops-imapsync@t1.timer")
    assert any(c.startswith("UTC C --user list-timers") for c in calls)


def test_a_hanging_systemctl_does_not_hang(monkeypatch, tmp_path):
    script = tmp_path / "systemctl"
    script.write_text("#!/bin/sh\nsleep 30\n", encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(timers, "TIMEOUT_S", 0.2)
    assert timers.next_run("x") is None
