# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""sync_task with tasks (many tasks in one call) and purge; engine: imapsync refusals; sync_timers' module wrapper."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from ansible_collections.mailops.imap.plugins.module_utils import _units
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store
from ansible_collections.mailops.imap.tests.unit.plugins.modules.module_runner import run
from ansible_collections.mailops.imap.plugins.modules import mail_target, sync_task, sync_timers

SECRET = "Rem0te'pw\"X"
OTHER = "Other'pw\\Y"
MASTER = "M\u00e2ster'pw"


def config_dir(tmp_path):
    return str(tmp_path / "etc")


def element(name, **changes):
    return dict({"name": name, "local_user": name, "remote_user": f"{name}@x", "remote_password": SECRET}, **changes)


def bulk(tmp_path, elements, **changes):
    return dict({"tasks": elements, "remote_host": "imap.example.org", "config_dir": config_dir(tmp_path)}, **changes)


def tree(tmp_path):
    root = tmp_path / "etc"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def target(tmp_path):
    run(mail_target, {"master_password": MASTER, "config_dir": config_dir(tmp_path)})


def test_bulk_check_real_again_with_module_defaults(tmp_path, target):
    args = bulk(tmp_path, [element("alice"), element("bob", remote_host="other.example.org", folders="inbox")])
    check = run(sync_task, args, check_mode=True, diff=True)
    assert not check.failed and check.result["changed"]
    assert [r["action"] for r in check.result["results"]] == ["created", "created"]
    assert check.result["summary"] == {"created": 2, "updated": 0, "unchanged": 0, "removed": 0}
    assert sorted(check.result["diff"]["after"]) == ["alice", "bob"]
    assert check.result["diff"]["after"]["alice"]["remote_password"] == "********"
    assert SECRET not in json.dumps(check.result)
    assert tree(tmp_path) == ["secrets/targets/default", "targets/default.json"]

    real = run(sync_task, args)
    assert real.result["changed"] and real.result["removed"] == []
    store = Store(config_dir(tmp_path))
    assert store.load_task("alice").remote_host == "imap.example.org"  # the module call's value
    assert store.load_task("bob").remote_host == "other.example.org"  # the element's own
    assert store.load_task("bob").target == "default" and store.load_task("bob").remote_password == SECRET

    again = run(sync_task, args, diff=True)
    assert not again.result["changed"] and again.result["summary"]["unchanged"] == 2
    assert again.result["diff"] == {"before": {}, "after": {}, "before_header": str(tmp_path / "etc" / "tasks"),
                                    "after_header": str(tmp_path / "etc" / "tasks")}


def test_bulk_update_password_only_and_purge(tmp_path, target):
    run(sync_task, bulk(tmp_path, [element("alice"), element("bob"), element("carol")]))
    changed = bulk(tmp_path, [element("alice", remote_password=OTHER), element("bob")], purge=True)
    check = run(sync_task, changed, check_mode=True, diff=True)
    assert check.result["removed"] == ["carol"] and check.result["summary"] == {
        "created": 0, "updated": 1, "unchanged": 1, "removed": 1}
    assert check.result["diff"]["after"] == {"alice": dict(check.result["diff"]["before"]["alice"],
                                                           remote_password="******** (changed)")}
    assert "carol" in check.result["diff"]["before"] and "carol" not in check.result["diff"]["after"]
    assert "tasks/carol.json" in tree(tmp_path)
    real = run(sync_task, changed)
    assert real.result["results"][0] == {"name": "alice", "action": "updated", "changed": True, "password_changed": True}
    assert "tasks/carol.json" not in tree(tmp_path) and "secrets/tasks/carol" not in tree(tmp_path)
    assert Store(config_dir(tmp_path)).load_task("alice").remote_password == OTHER
    assert not run(sync_task, changed).result["changed"]


def test_purge_removes_a_secret_left_without_definition(tmp_path, target):
    secrets = tmp_path / "etc" / "secrets" / "tasks"
    secrets.mkdir(parents=True)
    (secrets / "orphan").write_text("x", encoding="utf-8")
    ran = run(sync_task, bulk(tmp_path, [element("alice")], purge=True))
    assert ran.result["removed"] == ["orphan"] and not (secrets / "orphan").exists()


def test_an_empty_list_with_purge_removes_every_task(tmp_path, target):
    run(sync_task, bulk(tmp_path, [element("alice")]))
    ran = run(sync_task, bulk(tmp_path, [], purge=True))
    assert ran.result["removed"] == ["alice"] and ran.result["results"] == []


def test_bad_elements_are_all_named_and_nothing_is_written(tmp_path, target):
    elements = [element("good"), element("Bad Name"), element("dup"), element("dup"),
                {"name": "nopass", "local_user": "x", "remote_user": "y"}, element("port", remote_port=0),
                element("days", delete_remote="older_than")]
    refused = run(sync_task, bulk(tmp_path, elements))
    msg = refused.result["msg"]
    assert refused.failed
    assert "tasks entry 2: name: 'Bad Name' is not a valid task name" in msg
    assert "tasks entry 4 (dup): the name 'dup' is already used by tasks entry 3" in msg
    assert "tasks entry 5 (nopass): remote_password is required" in msg
    assert "tasks entry 6 (port): remote_port" in msg
    assert "tasks entry 7 (days): delete_remote_days is required" in msg
    assert "Nothing was written." in msg and "tasks entry 1" not in msg
    assert tree(tmp_path) == ["secrets/targets/default", "targets/default.json"]


def test_missing_target_warns_in_check_mode_and_fails_for_real(tmp_path):
    args = bulk(tmp_path, [element("alice", target="other")])
    check = run(sync_task, args, check_mode=True)
    assert not check.failed and any("'other'" in w for w in check.warnings)
    real = run(sync_task, args)
    assert real.failed and "mailops.imap.mail_target" in real.result["msg"] and not tree(tmp_path)


def test_validate_logs_in_for_every_task_and_names_the_failed_one(tmp_path, target):
    problem = {"folder": "", "uid": None, "message_id": None, "kind": "auth_failed", "side": "remote",
               "detail": "The remote server imap.example.org:143 refused the login."}
    refused = run(sync_task, bulk(tmp_path, [element("alice"), element("bob")], validate=True), logins=[problem])
    assert refused.failed and refused.logins.call_count == 2
    assert refused.result["msg"].startswith("alice: The remote server") and "No definition was saved" in refused.result["msg"]
    assert refused.result["errors"][0]["task"] == "alice" and refused.result["kind"] == "auth_failed"
    assert "tasks" not in " ".join(tree(tmp_path))


@pytest.mark.parametrize("args,phrase", [
    ({"name": "alice", "tasks": []}, "mutually exclusive"),
    ({}, "one of the following is required: name, tasks"),
    ({"tasks": [], "state": "absent"}, "purge: true"),
    ({"name": "alice", "state": "absent", "purge": True}, "purge works with tasks"),
    ({"name": "alice"}, "state is present but all of the following are missing: local_user, remote_user"),
])
def test_modes_are_checked(tmp_path, args, phrase):
    refused = run(sync_task, dict(args, config_dir=config_dir(tmp_path)))
    assert refused.failed and phrase in refused.result["msg"], refused.result["msg"]


IMAPSYNC_REFUSED = {"engine": "imapsync", "folders": "inbox"}


def test_engine_imapsync_options_are_refused_when_defined(tmp_path, target):
    single = run(sync_task, dict(element("alice", **IMAPSYNC_REFUSED), remote_host="imap.example.org",
                                 config_dir=config_dir(tmp_path)))
    assert single.failed and "folders: inbox cannot be rendered for imapsync" in single.result["msg"]
    many = run(sync_task, bulk(tmp_path, [element("ok", engine="imapsync"), element("bad", **IMAPSYNC_REFUSED)]))
    assert many.failed and "tasks entry 2 (bad): folders: inbox cannot be rendered" in many.result["msg"]
    assert "tasks/ok.json" not in tree(tmp_path)
    fine = run(sync_task, bulk(tmp_path, [element("ok", engine="imapsync", folders="all_except", exclude=["^Spam$"])]))
    assert not fine.failed and fine.result["changed"]


def test_engine_imapsync_checked_against_a_default_target_in_check_mode(tmp_path):
    ran = run(sync_task, bulk(tmp_path, [element("bad", **IMAPSYNC_REFUSED)]), check_mode=True)
    assert ran.failed and "folders: inbox cannot be rendered" in ran.result["msg"]
    ok = run(sync_task, bulk(tmp_path, [element("ok", engine="imapsync")]), check_mode=True)
    assert not ok.failed and any("not defined" in w for w in ok.warnings)


def test_sync_timers_module(tmp_path):
    calls = []

    def fake(self, argv):
        calls.append(argv)
        return 0, "", ""

    args = {"tasks": [{"name": "tick", "schedule": "interval", "interval_minutes": 5}, {"name": "m"}],
            "scope": "user", "unit_dir": str(tmp_path / "units"), "first_delay": "10s"}
    with mock.patch.object(_units.Systemctl, "_subprocess", fake):
        check = run(sync_timers, args, check_mode=True, diff=True)
        assert check.result["written"] == ["mailops-imapsync@tick.timer"] and check.result["reloaded"]
        assert check.result["diff"][0]["after"].count("OnActiveSec=10s") == 1 and not (tmp_path / "units").exists()
        real = run(sync_timers, args)
        assert real.result["changed"] and (tmp_path / "units" / "mailops-imapsync@tick.timer").exists()
        assert any("daemon-reload" in c for c in calls)
        assert all(c[1] == "--user" for c in calls)
        bad = run(sync_timers, dict(args, first_delay="1min\n[Service]"))
        assert bad.failed and "first_delay" in bad.result["msg"]


def test_a_client_secret_is_stored_as_the_tasks_secret_and_never_returned(tmp_path, target):
    client_secret = "Cl1ent~Secret.Value"
    app = {"remote_provider": "microsoft365", "remote_auth": "client_credentials", "remote_oauth_client_id": "app-id",
           "remote_oauth_tenant": "contoso.example", "remote_oauth_client_secret": client_secret}
    args = dict({"tasks": [{"name": "alice", "local_user": "alice", "remote_user": "alice@contoso.example"},
                           {"name": "bob", "local_user": "bob", "remote_user": "bob@contoso.example"}],
                 "config_dir": config_dir(tmp_path)}, **app)
    real = run(sync_task, args, diff=True)
    assert not real.failed and real.result["summary"]["created"] == 2, real.result
    assert client_secret not in json.dumps(real.result)
    store = Store(config_dir(tmp_path))
    loaded = store.load_task("bob")
    assert loaded.remote_oauth_client_secret == client_secret and loaded.remote_host == "outlook.office365.com"
    with open(store.secret_path("tasks", "bob"), encoding="utf-8") as handle:
        assert handle.read() == client_secret
    assert client_secret not in json.dumps(store.read_public("tasks", "bob").data)
    again = run(sync_task, args)
    assert not again.result["changed"]
    rotated = run(sync_task, dict(args, remote_oauth_client_secret="N3w~Secret"), diff=True)
    assert rotated.result["summary"]["updated"] == 2 and "N3w~Secret" not in json.dumps(rotated.result)
    assert rotated.result["diff"]["after"]["alice"]["remote_oauth_client_secret"] == "******** (changed)"
    assert "remote_password" not in rotated.result["diff"]["after"]["alice"]
    assert store.load_task("alice").remote_oauth_client_secret == "N3w~Secret"
