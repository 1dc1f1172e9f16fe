# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mail_target and sync_task: check mode, idempotence, validation, missing targets, removal (logins mocked)."""

from __future__ import annotations

import json
import os

from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store
from ansible_collections.mailops.imap.tests.unit.plugins.modules.module_runner import run
from ansible_collections.mailops.imap.plugins.modules import mail_target, sync_task

SECRET = "Rem0te'pw\"X"
MASTER = "M\u00e2ster'pw"


def target(tmp_path, **changes):
    return dict({"master_password": MASTER, "config_dir": str(tmp_path / "etc")}, **changes)


def task(tmp_path, **changes):
    return dict({"name": "alice", "local_user": "alice", "remote_user": "a@x", "remote_password": SECRET,
                 "remote_host": "imap.example.org", "config_dir": str(tmp_path / "etc")}, **changes)


def tree(tmp_path):
    root = tmp_path / "etc"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_mail_target_cycle(tmp_path):
    check = run(mail_target, target(tmp_path), check_mode=True, diff=True)
    assert check.result["changed"] and check.result["master_password_changed"] and not check.failed
    assert check.result["diff"]["after"]["master_password"] == "********"
    assert tree(tmp_path) == []
    real = run(mail_target, target(tmp_path))
    assert real.result["changed"] and "diff" not in real.result
    assert real.result["definition"]["port"] == 143 and "master_password" not in real.result["definition"]
    assert Store(str(tmp_path / "etc")).load_target("default").master_password == MASTER
    assert not run(mail_target, target(tmp_path), check_mode=True).result["changed"]
    assert not run(mail_target, target(tmp_path)).result["changed"]
    changed = run(mail_target, target(tmp_path, master_password="new"), check_mode=True, diff=True)
    assert changed.result["changed"] and changed.result["diff"]["after"]["master_password"] == "******** (changed)"
    assert MASTER not in repr(changed.result) and "'new'" not in repr(changed.result)


def test_mail_target_refuses_empty_password_and_bad_names(tmp_path):
    empty = run(mail_target, target(tmp_path, master_password=""))
    assert empty.failed and "master_password" in empty.result["msg"]
    bad = run(mail_target, target(tmp_path, name="Not/Valid"))
    assert bad.failed and bad.result["msg"].startswith("name:")
    assert tree(tmp_path) == []


def test_mail_target_absent_while_used(tmp_path):
    run(mail_target, target(tmp_path))
    run(sync_task, task(tmp_path))
    absent = {"state": "absent", "config_dir": str(tmp_path / "etc")}
    check = run(mail_target, absent, check_mode=True)
    assert not check.failed and check.result["changed"] and any("alice" in w for w in check.warnings)
    refused = run(mail_target, absent)
    assert refused.failed and refused.result["tasks"] == ["alice"] and "alice" in refused.result["msg"]
    assert "targets/default.json" in tree(tmp_path)
    run(sync_task, {"name": "alice", "state": "absent", "config_dir": str(tmp_path / "etc")})
    removed = run(mail_target, absent)
    assert removed.result["changed"] and removed.result["definition"] == {} and not removed.result["master_password_changed"]
    assert not run(mail_target, absent).result["changed"]


def test_sync_task_cycle_with_validation(tmp_path):
    run(mail_target, target(tmp_path))
    args = task(tmp_path, validate=True)
    check = run(sync_task, args, check_mode=True, diff=True)
    assert check.result["changed"] and check.logins.call_count == 1
    logged_task, logged_target = check.logins.call_args.args
    assert logged_task.remote_password == SECRET and logged_target.master_password == MASTER
    assert "tasks" not in tree(tmp_path)
    real = run(sync_task, args)
    assert real.result["changed"] and real.result["password_changed"] and real.logins.call_count == 1
    stored = json.loads((tmp_path / "etc" / "tasks" / "alice.json").read_text(encoding="utf-8"))
    assert stored == real.result["definition"] and stored["name"] == "alice" and stored["target"] == "default"
    again = run(sync_task, args)
    assert not again.result["changed"] and not again.result["password_changed"] and again.logins.call_count == 1


def test_sync_task_validation_failure_writes_nothing(tmp_path):
    run(mail_target, target(tmp_path))
    problem = {"folder": "", "uid": None, "message_id": None, "kind": "auth_failed", "side": "remote",
               "detail": "The remote server imap.example.org:143 rejected the login of 'a@x'; check the user name and password."}
    for check_mode in (True, False):
        refused = run(sync_task, task(tmp_path, validate=True), check_mode=check_mode, logins=[problem])
        assert refused.failed and refused.result["kind"] == "auth_failed" and refused.result["side"] == "remote"
        assert refused.result["msg"].startswith("The remote server") and "not saved" in refused.result["msg"]
        assert "tasks" not in tree(tmp_path)


def test_sync_task_without_validation_does_not_log_in(tmp_path):
    run(mail_target, target(tmp_path))
    assert run(sync_task, task(tmp_path)).logins.call_count == 0


def test_sync_task_missing_target(tmp_path):
    check = run(sync_task, task(tmp_path, validate=True), check_mode=True)
    assert not check.failed and check.result["changed"] and check.logins.call_count == 0
    assert any("mail_target" in w and "not validated" in w for w in check.warnings)
    assert tree(tmp_path) == []
    real = run(sync_task, task(tmp_path))
    assert real.failed and "mailops.imap.mail_target" in real.result["msg"]
    assert tree(tmp_path) == []


def test_sync_task_bad_input(tmp_path):
    run(mail_target, target(tmp_path))
    for changes, phrase in (({"name": "Bad Name"}, "name:"), ({"target": "../x"}, "target:"),
                            ({"remote_port": 0}, "remote_port"), ({"delete_remote": "older_than"}, "delete_remote_days")):
        refused = run(sync_task, task(tmp_path, **changes))
        assert refused.failed and phrase in refused.result["msg"], refused.result
    assert "tasks" not in tree(tmp_path)


def test_sync_task_refuses_a_backtracking_exclude(tmp_path):
    run(mail_target, target(tmp_path))
    refused = run(sync_task, task(tmp_path, folders="all_except", exclude=["^Spam$", "(a+)+$"]))
    assert refused.failed and "exclude: entry 2 '(a+)+$' repeats a group that holds another repeat" in refused.result["msg"]
    assert "tasks" not in tree(tmp_path)


def test_sync_task_exclude_warning(tmp_path):
    run(mail_target, target(tmp_path))
    ran = run(sync_task, task(tmp_path, exclude=["^Spam$"]))
    assert any("exclude is ignored" in w for w in ran.warnings)


def test_sync_task_absent_keeps_state(tmp_path):
    run(mail_target, target(tmp_path))
    run(sync_task, task(tmp_path))
    state = tmp_path / "var" / "tasks" / "alice.sqlite"
    state.parent.mkdir(parents=True)
    state.write_text("x", encoding="utf-8")
    absent = {"name": "alice", "state": "absent", "config_dir": str(tmp_path / "etc"), "state_dir": str(tmp_path / "var")}
    check = run(sync_task, absent, check_mode=True, diff=True)
    assert check.result["changed"] and check.result["diff"]["after"] == {}
    assert "tasks/alice.json" in tree(tmp_path)
    removed = run(sync_task, absent)
    assert removed.result["changed"] and not removed.result["password_changed"]
    assert "tasks/alice.json" not in tree(tmp_path) and "secrets/tasks/alice" not in tree(tmp_path)
    assert state.exists()
    assert not run(sync_task, absent).result["changed"]


def test_sync_task_absent_refuses_a_name_with_a_line_feed(tmp_path):
    run(mail_target, target(tmp_path))
    run(sync_task, task(tmp_path, name="t1"))
    absent = run(sync_task, {"name": "t1\n", "state": "absent", "config_dir": str(tmp_path / "etc")})
    assert absent.failed and not absent.result.get("changed") and "is not a valid task name" in absent.result["msg"], absent.result
    assert "tasks/t1.json" in tree(tmp_path)


def test_unwritable_config_dir(tmp_path):
    blocker = tmp_path / "etc"
    blocker.write_text("a file, not a directory", encoding="utf-8")
    failed = run(mail_target, target(tmp_path))
    assert failed.failed and "config_dir" in failed.result["msg"] and MASTER not in failed.result["msg"]
    assert os.path.isfile(blocker)
