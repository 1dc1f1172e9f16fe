# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What declaring or removing a definition changes: idempotence, masked diffs, secrets, removal, references."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.mailops.imap.plugins.module_utils import _definitions as defs
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, files
from ansible_collections.mailops.imap.plugins.module_utils._engine.errors import ConfigError
from ansible_collections.mailops.imap.plugins.module_utils._engine.store import Store

SECRET = "pä'ss\"wörd\\x"
OTHER = "Other'secret"


def task(**changes):
    data = {"name": "alice", "local_user": "alice", "remote_user": "a@x", "remote_password": SECRET,
            "remote_host": "imap.example.org", "exclude": ["^Spam$"]}
    data.update(changes)
    return config.parse_task(data)


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "etc"), str(tmp_path / "var"))


def declare(store, tsk):
    return defs.plan_present(store, "tasks", tsk.name, tsk.public(), tsk.remote_password)


def test_new_definition_is_a_change_and_nothing_is_written_until_applied(store, tmp_path):
    change = declare(store, task())
    assert change.changed and change.secret_changed and change.before is None
    assert change.definition() == json.loads(json.dumps(task().public()))
    assert not (tmp_path / "etc").exists()
    diff = change.diff()
    assert diff["before"] == {} and diff["after"]["remote_password"] == defs.MASK
    assert diff["after_header"].endswith("tasks/alice.json")
    assert SECRET not in repr(change) and SECRET not in json.dumps(diff)
    change.apply(store)
    assert store.load_task("alice") == task()


def test_same_definition_again_is_no_change(store):
    declare(store, task()).apply(store)
    again = declare(store, task())
    assert not again.changed and not again.secret_changed
    assert again.diff()["before"] == again.diff()["after"]


def test_only_the_password_changed(store):
    declare(store, task()).apply(store)
    change = declare(store, task(remote_password=OTHER))
    assert change.changed and change.secret_changed and change.before == change.after
    diff = change.diff()
    assert diff["before"]["remote_password"] == defs.MASK and diff["after"]["remote_password"] == defs.MASK_CHANGED
    text = json.dumps(diff, ensure_ascii=False) + repr(change)
    assert SECRET not in text and OTHER not in text
    change.apply(store)
    assert store.read("tasks", "alice")[1] == OTHER


def test_a_field_changed(store):
    declare(store, task()).apply(store)
    change = declare(store, task(folders="all_except"))
    assert change.changed and not change.secret_changed
    assert change.diff()["after"]["remote_password"] == defs.MASK
    assert change.diff()["after"]["folders"] == "all_except"


def test_a_token_source_without_secret_shows_no_masked_field(store, tmp_path):
    """A token file task stores no secret: its diff has no remote_password placeholder, before or after; turning
    a password task into one shows the password going away."""
    token_task = task(remote_password="", remote_auth="token_file", remote_token_file=str(tmp_path / "token"))
    change = declare(store, token_task)
    assert change.changed
    assert "remote_password" not in change.diff()["after"]
    change.apply(store)
    again = declare(store, token_task)
    assert not again.changed
    assert "remote_password" not in again.diff()["before"] and "remote_password" not in again.diff()["after"]
    assert store.load_task("alice") == token_task
    store.remove("tasks", "alice")
    declare(store, task()).apply(store)
    switched = declare(store, token_task).diff()
    assert switched["before"]["remote_password"] == defs.MASK and "remote_password" not in switched["after"]


def test_a_secret_readable_by_others_is_written_again(store):
    declare(store, task()).apply(store)
    os.chmod(store.secret_path("tasks", "alice"), 0o644)
    change = declare(store, task())
    assert change.changed and not change.secret_changed and change.secret_exposed
    change.apply(store)
    assert stat.S_IMODE(os.stat(store.secret_path("tasks", "alice")).st_mode) == 0o600
    assert not declare(store, task()).changed


def test_a_world_readable_definition_is_a_change_and_becomes_private(store):
    declare(store, task()).apply(store)
    path = store.definition_path("tasks", "alice")
    os.chmod(path, 0o644)  # as releases before issue 8 wrote it: which remote account maps to which local user
    change = declare(store, task())
    assert change.changed and change.before == change.after and not change.secret_changed
    change.apply(store)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert not declare(store, task()).changed


def test_a_broken_stored_definition_is_replaced(store):
    declare(store, task()).apply(store)
    with open(store.definition_path("tasks", "alice"), "w", encoding="utf-8") as handle:
        handle.write("{not json")
    change = declare(store, task())
    assert change.changed and change.before == {}
    change.apply(store)
    assert store.load_task("alice") == task()


def test_a_secret_without_definition(store):
    declare(store, task()).apply(store)
    os.unlink(store.definition_path("tasks", "alice"))
    absent = defs.plan_absent(store, "tasks", "alice")
    assert absent.changed and absent.diff()["before"] == {"remote_password": defs.MASK}
    present = declare(store, task())
    assert present.changed and present.before is None and not present.secret_changed


def test_absent(store):
    nothing = defs.plan_absent(store, "tasks", "alice")
    assert not nothing.changed and nothing.diff() == {"before": {}, "after": {}, "before_header": nothing.path, "after_header": nothing.path}
    declare(store, task()).apply(store)
    change = defs.plan_absent(store, "tasks", "alice")
    assert change.changed and change.definition() == {} and not change.secret_changed
    assert change.diff()["before"]["remote_password"] == defs.MASK and change.diff()["after"] == {}
    change.apply(store)
    assert not os.path.exists(store.definition_path("tasks", "alice"))
    assert not os.path.exists(store.secret_path("tasks", "alice"))
    assert not defs.plan_absent(store, "tasks", "alice").changed


def test_target_secret_field_and_references(store):
    tgt = config.parse_target({"master_password": SECRET})
    change = defs.plan_present(store, "targets", "default", tgt.public(), tgt.master_password)
    assert change.diff()["after"]["master_password"] == defs.MASK
    assert defs.target_missing(store, "default")
    change.apply(store)
    assert not defs.target_missing(store, "default")
    declare(store, task()).apply(store)
    declare(store, task(name="bob", target="mx2")).apply(store)
    declare(store, task(name="carol")).apply(store)
    assert defs.tasks_using_target(store, "default") == ["alice", "carol"]
    assert defs.tasks_using_target(store, "mx2") == ["bob"]
    assert defs.tasks_using_target(store, "none") == []
    message = defs.target_in_use_message("default", ["alice", "carol"])
    assert "alice, carol" in message and "state: absent" in message


def test_unreadable_files_give_a_sentence(store, monkeypatch):
    declare(store, task()).apply(store)

    def deny(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files, "open_file", deny)
    with pytest.raises(ConfigError, match="alice.json cannot be read .permission denied.; run as root .become: true."):
        declare(store, task())


def test_messages():
    st = Store("/etc/x", "/var/x")
    assert "mailops.imap.mail_target" in defs.missing_target_message(st, "mx2") and "/etc/x" in defs.missing_target_message(st, "mx2")
    assert "not validated" in defs.missing_target_warning(st, "mx2", True)
    assert "not validated" not in defs.missing_target_warning(st, "mx2", False)
    failure = defs.login_failure([
        {"kind": "auth_failed", "side": "remote", "detail": "The remote server refused.", "folder": "", "uid": None},
        {"kind": "tls_failed", "side": "local", "detail": "The local certificate failed."},
    ])
    assert failure["kind"] == "auth_failed" and failure["side"] == "remote"
    assert failure["msg"].startswith("The remote server refused. The local certificate failed.") and "not saved" in failure["msg"]
    assert [e["kind"] for e in failure["errors"]] == ["auth_failed", "tls_failed"]
