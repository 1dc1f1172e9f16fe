# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Definitions on a host: layout, modes, secrets apart, atomic replacement, run records."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, store as store_mod
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError

SECRET = "pä'ss\"wörd\\x"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_definitions_and_secrets(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    task = config.parse_task({"name": "alice", "local_user": "alice", "remote_user": "a@x", "remote_password": SECRET,
                              "remote_host": "imap.example.org"})
    st.write("tasks", "alice", task.public(), task.remote_password)
    assert mode(st.definition_path("tasks", "alice")) == 0o644
    assert mode(st.secret_path("tasks", "alice")) == 0o600
    assert mode(os.path.dirname(st.secret_path("tasks", "alice"))) == 0o700
    assert SECRET not in open(st.definition_path("tasks", "alice"), encoding="utf-8").read()
    assert st.load_task("alice") == task
    assert st.names("tasks") == ["alice"]
    assert st.remove("tasks", "alice") is True
    assert st.remove("tasks", "alice") is False
    assert not os.path.exists(st.secret_path("tasks", "alice"))
    with pytest.raises(ConfigError, match="not defined"):
        st.load_task("alice")
    with pytest.raises(ConfigError, match="mail_target"):
        st.load_target("default")


def test_names_are_checked_before_any_path_is_built(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    for bad in ("../etc/passwd", "A", "", "x/y", "-x"):
        with pytest.raises(ConfigError):
            st.definition_path("tasks", bad)


def test_run_records_and_log_rotation(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    assert st.last_result("t1") is None and st.running_pid("t1") is None
    st.record_result("t1", {"status": "success"})
    assert st.last_result("t1") == {"status": "success"}
    assert mode(os.path.join(st.runs_dir("t1"), "last.json")) == 0o600
    for i in range(store_mod.KEEP_LOGS + 3):
        st.new_log("t1", f"2026010{i:02d}")
    logs = st.logs("t1")
    assert len(logs) == store_mod.KEEP_LOGS and logs[-1].endswith(f"2026010{store_mod.KEEP_LOGS + 2:02d}.log")
