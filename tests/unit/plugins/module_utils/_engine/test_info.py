# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What sync_task_info and imapsyncctl status show about tasks: no secret, running or not, last result, next run."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, info, store as store_mod
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError

SECRET = "pä'ss\"wörd\\x"
MASTER = "M4ster'pw"


def no_timers(names):
    return dict.fromkeys(names)


@pytest.fixture
def st(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target({"name": "main", "port": 10143, "master_password": MASTER})
    st.write("targets", "main", target.public(), MASTER)
    for name in ("beta", "alpha"):
        task = config.parse_task({"name": name, "target": "main", "local_user": name, "remote_user": f"{name}@x",
                                  "remote_password": SECRET, "remote_host": "imap.example.org"})
        st.write("tasks", name, task.public(), SECRET)
    return st


def test_all_tasks_sorted_without_secrets(st):
    tasks = info.tasks_info(st, next_runs=no_timers)
    assert [t["name"] for t in tasks] == ["alpha", "beta"]
    first = tasks[0]
    assert first["definition"]["local_user"] == "alpha" and first["definition"]["name"] == "alpha"
    assert first["target"]["port"] == 10143 and first["target"]["name"] == "main"
    assert first["running"] is False and first["pid"] is None
    assert first["last_result"] is None and first["next_run"] is None
    text = json.dumps(tasks)
    assert SECRET not in text and MASTER not in text
    assert "remote_password" not in text and "master_password" not in text


def test_secret_files_are_never_opened(st, monkeypatch):
    real_open = open

    def guarded(path, *args, **kwargs):
        assert "secrets" not in str(path), f"opened {path}"
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded)
    assert len(info.tasks_info(st, next_runs=no_timers)) == 2


@pytest.mark.parametrize("key", ["remote_password", "remote_oauth_client_secret"])
def test_hand_edited_secret_is_dropped(st, key):
    path = st.definition_path("tasks", "alpha")
    data = json.loads(open(path, encoding="utf-8").read())
    data[key] = SECRET
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    shown = info.tasks_info(st, "alpha", next_runs=no_timers)[0]["definition"]
    assert key not in shown and SECRET not in json.dumps(shown)


def test_one_task_and_next_run(st):
    asked = []

    def next_runs(names):
        asked.append(list(names))
        return {"beta": "2026-01-31T09:15:00+00:00"}

    tasks = info.tasks_info(st, "beta", next_runs=next_runs)
    assert [t["name"] for t in tasks] == ["beta"] and tasks[0]["next_run"] == "2026-01-31T09:15:00+00:00"
    assert asked == [["beta"]], "one question to systemd for all the tasks"


def test_unknown_or_invalid_name(st):
    with pytest.raises(ConfigError, match=r"'nope' is not defined in .*; define it with mailops.imap.sync_task"):
        info.tasks_info(st, "nope", next_runs=no_timers)
    with pytest.raises(ConfigError, match="not a valid task name"):
        info.tasks_info(st, "Bad Name", next_runs=no_timers)


def test_no_definitions_at_all(tmp_path):
    st = store_mod.Store(str(tmp_path / "none"), str(tmp_path / "var"))
    assert info.tasks_info(st, next_runs=no_timers) == []


def test_missing_target_is_null(st):
    st.remove("targets", "main")
    assert info.tasks_info(st, "alpha", next_runs=no_timers)[0]["target"] is None


def test_broken_definition_names_the_file(st):
    path = st.definition_path("tasks", "beta")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("{not json")
    with pytest.raises(ConfigError, match=r"beta\.json cannot be read .*fix or remove it"):
        info.tasks_info(st, next_runs=no_timers)


def test_running_and_last_result(st):
    st.record_result("alpha", {"task": "alpha", "status": "partial", "totals": {"copied": 1}})
    lock = st.state_path("alpha") + ".lock"
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        running = info.tasks_info(st, "alpha", next_runs=no_timers)[0]
        assert running["running"] is True and running["pid"] is None, "running, but the process is not named"
        st.write_pid("alpha")
        running = info.tasks_info(st, "alpha", next_runs=no_timers)[0]
        assert running["running"] is True and running["pid"] == os.getpid()
    finally:
        os.close(fd)
    done = info.tasks_info(st, "alpha", next_runs=no_timers)[0]
    assert done["running"] is False and done["pid"] is None
    assert done["last_result"]["status"] == "partial"
