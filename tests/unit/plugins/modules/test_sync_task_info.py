# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""sync_task_info: never changes anything, shows definitions without secrets, fails with a sentence for an unknown name."""

from __future__ import annotations

import json
import os
from unittest import mock

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, store as store_mod, timers
from ansible_collections.mailops.imap.plugins.modules import sync_task_info

SECRET = "Rem0te'pw\"X"
MASTER = "M4ster'pw"


class Exit(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs)
        self.kwargs = kwargs


class Fail(Exit):
    pass


@pytest.fixture
def dirs(tmp_path):
    st = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    st.write("targets", "default", config.parse_target({"master_password": MASTER}).public(), MASTER)
    task = config.parse_task({"name": "t1", "local_user": "alice", "remote_user": "alice@x", "remote_password": SECRET,
                              "remote_host": "imap.example.org", "schedule": "interval", "interval_minutes": 15})
    st.write("tasks", "t1", task.public(), SECRET)
    return {"config_dir": st.config_dir, "state_dir": st.state_dir}


def run_module(args, check_mode=False, next_runs=None):
    def exit_json(self, **kwargs):
        raise Exit(kwargs)

    def fail_json(self, msg, **kwargs):
        raise Fail(dict(kwargs, msg=msg, failed=True))

    fake_next = mock.MagicMock(side_effect=next_runs or dict.fromkeys)
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)), \
            mock.patch.object(basic.AnsibleModule, "exit_json", exit_json), \
            mock.patch.object(basic.AnsibleModule, "fail_json", fail_json), \
            mock.patch.object(timers, "next_runs", fake_next):
        with pytest.raises(Exit) as exc_info:
            sync_task_info.main()
    return exc_info.value


@pytest.mark.parametrize("check_mode", [False, True])
def test_lists_tasks_and_changes_nothing(dirs, check_mode):
    before = sorted(os.walk(dirs["config_dir"]))
    exc = run_module(dirs, check_mode=check_mode)
    assert not isinstance(exc, Fail)
    assert exc.kwargs["changed"] is False
    (task,) = exc.kwargs["tasks"]
    assert task["name"] == "t1" and task["definition"]["interval_minutes"] == 15
    assert task["target"]["master_user"] == "vmail"
    assert task["running"] is False and task["pid"] is None and task["last_result"] is None and task["next_run"] is None
    assert SECRET not in json.dumps(exc.kwargs) and MASTER not in json.dumps(exc.kwargs)
    assert sorted(os.walk(dirs["config_dir"])) == before
    assert not os.path.exists(dirs["state_dir"]), "an info module creates nothing"


def test_one_task_with_its_next_run(dirs):
    exc = run_module(dict(dirs, name="t1"), next_runs=lambda names: {"t1": "2026-01-31T09:15:00+00:00"})
    assert exc.kwargs["tasks"][0]["next_run"] == "2026-01-31T09:15:00+00:00"


def test_unknown_name_fails_with_a_sentence(dirs):
    exc = run_module(dict(dirs, name="nope"))
    assert isinstance(exc, Fail) and exc.kwargs["changed"] is False
    assert exc.kwargs["msg"].startswith("The sync task 'nope' is not defined in ") and exc.kwargs["msg"].endswith(".")


def test_nothing_defined(tmp_path):
    exc = run_module({"config_dir": str(tmp_path / "none"), "state_dir": str(tmp_path / "var")})
    assert not isinstance(exc, Fail) and exc.kwargs["tasks"] == []
