# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Definitions on a host: layout, modes, secrets apart, atomic replacement, run records."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, store as store_mod
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError, SyncError

SECRET = "pä'ss\"wörd\\x"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_definitions_and_secrets(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    task = config.parse_task({"name": "alice", "local_user": "alice", "remote_user": "a@x", "remote_password": SECRET,
                              "remote_host": "imap.example.org"})
    st.write("tasks", "alice", task.public(), task.remote_password)
    assert mode(st.definition_path("tasks", "alice")) == 0o600  # which remote account lands in which user: private
    assert mode(os.path.dirname(st.definition_path("tasks", "alice"))) == 0o700
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


@pytest.fixture
def umask_000():
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_an_existing_world_readable_definition_becomes_private_when_written_again(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target({"host": "127.0.0.1", "master_user": "vmail", "master_password": SECRET})
    st.write("targets", "default", target.public(), target.master_password)
    os.chmod(st.definition_path("targets", "default"), 0o644)  # as earlier releases wrote it
    os.chmod(os.path.dirname(st.definition_path("targets", "default")), 0o755)
    st.write("targets", "default", target.public(), target.master_password)
    assert mode(st.definition_path("targets", "default")) == 0o600
    assert mode(os.path.dirname(st.definition_path("targets", "default"))) == 0o700


def test_under_umask_000_no_directory_or_file_is_writable_by_others(tmp_path, umask_000):
    st = store_mod.Store(str(tmp_path / "etc" / "deep"), str(tmp_path / "var" / "lib" / "mailops"))
    task = config.parse_task({"name": "alice", "local_user": "alice", "remote_user": "a@x", "remote_password": SECRET,
                              "remote_host": "imap.example.org"})
    st.write("tasks", "alice", task.public(), task.remote_password)
    st.record_result("alice", {"status": "success"})
    st.new_log("alice", "20260101T000000Z")
    created = [tmp_path / "etc", tmp_path / "var", tmp_path / "var" / "lib"]
    for root in (tmp_path / "etc", tmp_path / "var"):
        for directory, _dirs, names in os.walk(root):
            created.append(directory)
            created.extend(os.path.join(directory, name) for name in names)
    assert len(created) > 12
    for path in created:
        assert mode(path) & 0o022 == 0, f"{path} is {mode(path):04o}"
    assert mode(st.config_dir) == 0o755 and mode(os.path.join(st.config_dir, "tasks")) == 0o700
    assert mode(st.state_dir) == 0o700 and mode(tmp_path / "var" / "lib") == 0o700  # parents too
    assert mode(st.runs_dir("alice")) == 0o700
    assert mode(os.path.join(st.runs_dir("alice"), "20260101T000000Z.log")) == 0o600


def test_a_config_dir_others_can_write_is_refused(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = config.parse_target({"host": "127.0.0.1", "master_user": "vmail", "master_password": SECRET})
    st.write("targets", "default", target.public(), target.master_password)
    os.chmod(os.path.join(st.config_dir, "targets"), 0o777)
    with pytest.raises(ConfigError, match=r"can be written by other users \(mode 0777\); make it writable by its owner only"):
        st.load_target("default")
    with pytest.raises(ConfigError, match="can be written by other users"):
        st.write("targets", "default", target.public(), target.master_password)


def test_a_state_dir_others_can_write_is_refused_for_run_records(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    os.makedirs(st.state_dir)
    os.chmod(st.state_dir, 0o777)
    with pytest.raises(SyncError, match=r"can be written by other users") as caught:
        st.record_result("t1", {"status": "success"})
    assert caught.value.kind == "state_error"
    assert not os.path.exists(os.path.join(st.state_dir, "runs"))


def test_symbolic_links_in_the_directories_are_never_followed(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("precious\n", encoding="utf-8")
    os.chmod(elsewhere, 0o644)
    os.makedirs(st.runs_dir("t1"))
    os.symlink(elsewhere, os.path.join(st.runs_dir("t1"), "20260101T000000Z.log"))
    with pytest.raises(SyncError, match="is a symbolic link; remove it"):
        st.new_log("t1", "20260101T000000Z")
    os.makedirs(os.path.join(st.config_dir, "tasks"), mode=0o700)
    os.symlink(elsewhere, st.definition_path("tasks", "t1"))
    with pytest.raises(ConfigError, match="is a symbolic link"):
        st.load_task("t1")
    assert elsewhere.read_text(encoding="utf-8") == "precious\n" and mode(elsewhere) == 0o644


def test_a_stored_task_with_a_pattern_refused_today_still_loads(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    data = {"name": "old", "local_user": "a", "remote_user": "a@x", "remote_host": "imap.x.org", "folders": "all_except",
            "exclude": ["^Shared(/[^/]+)+$"]}
    st.write("tasks", "old", data, "pw")
    assert st.load_task("old").exclude == ("^Shared(/[^/]+)+$",)


def test_a_client_secret_is_the_tasks_secret_and_the_token_source_files_are_paths(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    client = config.parse_task({"name": "m365", "local_user": "alice", "remote_user": "alice@contoso.example",
                                "remote_provider": "microsoft365", "remote_auth": "client_credentials",
                                "remote_oauth_client_id": "app-id", "remote_oauth_tenant": "contoso.example",
                                "remote_oauth_client_secret": SECRET})
    google = config.parse_task({"name": "gw", "local_user": "bob", "remote_user": "bob@example.com", "remote_provider": "google",
                                "remote_auth": "service_account", "remote_oauth_key_file": "/etc/keys/sa.json"})
    for task in (client, google):
        st.write("tasks", str(task.name), task.public(), store_mod.task_secret(task))
    assert mode(st.secret_path("tasks", "m365")) == 0o600
    with open(st.secret_path("tasks", "m365"), encoding="utf-8") as handle:
        assert handle.read() == SECRET
    with open(st.definition_path("tasks", "m365"), encoding="utf-8") as handle:
        text = handle.read()
    assert SECRET not in text and "remote_oauth_client_secret" not in text and '"remote_oauth_client_id": "app-id"' in text
    assert st.load_task("m365") == client and st.load_task("m365").remote_oauth_client_secret == SECRET
    assert st.read_secret("tasks", "gw") == (True, "")  # a service account's secret is its key file, stored as a path
    assert st.load_task("gw") == google and st.read_public("tasks", "gw").data["remote_oauth_key_file"] == "/etc/keys/sa.json"
