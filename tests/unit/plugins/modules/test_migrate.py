# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the migrate module maps a run's result onto Ansible's (changed, check mode, diff, failure)."""

from __future__ import annotations

import os
import stat
import typing as t
from unittest import mock

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, result
from ansible_collections.mailops.imap.plugins.modules import migrate

SECRET = "Rem0te'pw\"X"


class Exit(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs)
        self.kwargs = kwargs


class Fail(Exit):
    pass


class Outcome(t.NamedTuple):
    exc: Exit
    run: mock.MagicMock
    warnings: list


def outcome(status=None, copied=0, check_mode=False, errors=(), notices=()):
    run = result.RunResult(task=None, check_mode=check_mode)
    run.folders.append(result.FolderResult(remote="INBOX", local="INBOX", copied=copied, bytes=10 * copied, local_before=2))
    for kind, detail in errors:
        run.add_error(kind, detail)
    for text in notices:
        run.notice(text)
    run.finish(status)
    return run


def run_module(tmp_path, run, check_mode=False, diff=False, **changes):
    args = {
        "local_user": "alice", "remote_user": "alice", "remote_password": SECRET, "remote_host": "imap.example.org",
        "state_dir": str(tmp_path / "state"), "target": {"master_password": "M"},
        "_ansible_check_mode": check_mode, "_ansible_diff": diff,
    }
    args.update(changes)
    warnings = []

    def exit_json(self, **kwargs):
        raise Exit(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs.pop("exception", None)
        raise Fail(dict(kwargs, msg=msg, failed=True))

    fake_run = mock.MagicMock(return_value=run)
    with patch_module_args(args), \
            mock.patch.object(basic.AnsibleModule, "exit_json", exit_json), \
            mock.patch.object(basic.AnsibleModule, "fail_json", fail_json), \
            mock.patch.object(basic.AnsibleModule, "warn", lambda self, text, **kw: warnings.append(text)), \
            mock.patch.object(migrate.sync, "run", fake_run), \
            mock.patch.object(migrate.sync, "HAS_IMAPCLIENT", True):
        with pytest.raises(Exit) as exc_info:
            migrate.main()
    return Outcome(exc_info.value, fake_run, warnings)


def test_success_changed_and_state(tmp_path):
    ran = run_module(tmp_path, outcome(copied=3))
    exc, fake_run, warnings = ran.exc, ran.run, ran.warnings
    assert not isinstance(exc, Fail)
    res = exc.kwargs
    assert res["changed"] is True and res["status"] == "success" and res["totals"]["copied"] == 3
    assert "diff" not in res and warnings == []
    assert set(result.RunResult(None, False).as_dict()) <= set(res)
    task, target, state_path = fake_run.call_args.args
    assert fake_run.call_args.kwargs["check_mode"] is False
    assert task.remote_password == SECRET and target.master_password == "M"
    assert state_path == os.path.join(str(tmp_path / "state"), config.state_key(task, target) + ".sqlite")
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert SECRET not in repr(res)


def test_nothing_to_do_is_not_changed(tmp_path):
    exc = run_module(tmp_path, outcome(copied=0)).exc
    assert exc.kwargs["changed"] is False


def test_check_mode_writes_nothing_and_predicts_change(tmp_path):
    ran = run_module(tmp_path, outcome(copied=5, check_mode=True), check_mode=True, diff=True)
    exc, fake_run = ran.exc, ran.run
    assert fake_run.call_args.kwargs["check_mode"] is True
    assert not (tmp_path / "state").exists()
    assert exc.kwargs["changed"] is True and exc.kwargs["check_mode"] is True
    assert exc.kwargs["diff"]["before"] == "INBOX: 2 messages\n" and exc.kwargs["diff"]["after"] == "INBOX: 7 messages\n"


def test_failed_run_fails_with_first_detail(tmp_path):
    run = outcome(status="failed", errors=[("auth_failed", "The remote server refused the login."), ("timeout", "Later.")])
    exc = run_module(tmp_path, run).exc
    assert isinstance(exc, Fail)
    assert exc.kwargs["msg"] == "The remote server refused the login."
    assert exc.kwargs["status"] == "failed" and exc.kwargs["errors"][0]["kind"] == "auth_failed"
    assert exc.kwargs["changed"] is False


def test_partial_run_succeeds_with_warning(tmp_path):
    run = outcome(copied=2, errors=[("append_failed", "The local server refused a message.")])
    assert run.status == "partial"
    ran = run_module(tmp_path, run)
    exc, warnings = ran.exc, ran.warnings
    assert not isinstance(exc, Fail)
    assert exc.kwargs["status"] == "partial" and exc.kwargs["changed"] is True
    assert any("partial" in w for w in warnings)


def test_notices_become_warnings(tmp_path):
    ran = run_module(tmp_path, outcome(notices=["The local server cannot run Sieve."]))
    exc, warnings = ran.exc, ran.warnings
    assert "The local server cannot run Sieve." in warnings
    assert exc.kwargs["notices"] == ["The local server cannot run Sieve."]


def test_skipped_run(tmp_path):
    exc = run_module(tmp_path, outcome(status="skipped", notices=["Another run of this task is active; this run was skipped."])).exc
    assert not isinstance(exc, Fail)
    assert exc.kwargs["skipped"] is True and exc.kwargs["changed"] is False and exc.kwargs["status"] == "skipped"


def test_exclude_without_all_except_warns(tmp_path):
    warnings = run_module(tmp_path, outcome(), exclude=["^Spam$"]).warnings
    assert any("exclude is ignored" in w for w in warnings)


def test_bad_definition_fails_before_anything(tmp_path):
    ran = run_module(tmp_path, outcome(), remote_port=70000)
    exc, fake_run = ran.exc, ran.run
    assert isinstance(exc, Fail) and exc.kwargs["msg"].startswith("remote_port:")
    fake_run.assert_not_called()
    assert not (tmp_path / "state").exists()


def test_missing_imapclient(tmp_path):
    with mock.patch.object(migrate.sync, "IMAPCLIENT_IMPORT_ERROR", "Traceback ..."):
        args = {"local_user": "a", "remote_user": "b", "remote_password": "c", "remote_host": "h", "state_dir": str(tmp_path / "s")}

        def fail_json(self, msg, **kwargs):
            raise Fail(dict(kwargs, msg=msg))

        with patch_module_args(args), mock.patch.object(basic.AnsibleModule, "fail_json", fail_json), \
                mock.patch.object(migrate.sync, "HAS_IMAPCLIENT", False):
            with pytest.raises(Fail) as exc_info:
                migrate.main()
    assert "imapclient" in exc_info.value.kwargs["msg"]
    assert not (tmp_path / "s").exists()
