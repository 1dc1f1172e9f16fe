"""mailops.imap.migration_report's host side (plugins/module_utils/_report.py) and the failure of an account in
migrate's bulk result (plugins/module_utils/_migrate.py)."""

from __future__ import annotations

import pytest

from ansible_collections.mailops.imap.plugins.module_utils import _argspec, _migrate, _report
from ansible_collections.mailops.imap.plugins.module_utils._engine import config, report, result


def test_the_report_takes_migrates_options_except_what_only_runs_need():
    spec = _report.argument_spec()
    assert {"accounts", "target", "parallel", "state_dir", "remote_password", "folders", "exclude"} <= set(spec)
    assert not {"task", "accounts_file", "config_dir"} & set(spec)
    assert spec["remote_password"].get("no_log") is True


def test_summary_counts_statuses_and_sums_counts():
    complete = {"status": "complete", "totals": {**dict.fromkeys(report.COUNTS, 0), "remote_messages": 3, "copied": 3}}
    failed = report.failed_report("bob", "auth_failed", "Refused.")
    summary, totals = _report.summarize([complete, complete, failed])
    assert summary == {"accounts": 3, "complete": 2, "incomplete": 0, "failed": 1}
    assert totals["remote_messages"] == 6 and totals["copied"] == 6 and set(totals) == set(report.COUNTS)
    assert failed["kind"] == "auth_failed" and failed["message"] == "Refused." and failed["folders"] == []


def run(status=None, errors=()):
    outcome = result.RunResult(task=None, check_mode=False)
    for kind, detail in errors:
        outcome.add_error(kind, detail)
    outcome.finish(status)
    return outcome


def test_a_failed_account_carries_the_kind_and_sentence_of_what_stopped_it():
    stopped = run("failed", [("append_refused", "Over quota."), ("auth_failed", "The remote server refused the login.")])
    assert _migrate.failure(stopped) == {"kind": "auth_failed", "message": "The remote server refused the login."}
    assert _migrate.failure(run("failed")) == {"kind": "internal_error",
                                               "message": "The run failed without a reason; see the host's log."}
    assert _migrate.failure(run(errors=[("append_refused", "Over quota.")])) is None  # partial: not a failure
    accounts = [_argspec.Account(label=f"accounts entry {i}", task=config.parse_task(
        {"local_user": user, "remote_user": user, "remote_password": "pw", "remote_host": "imap.example.org"}))
        for i, user in enumerate(("alice", "bob"), 1)]
    entries = _migrate.aggregate(accounts, [run(), stopped], False, "t", 0.0)["accounts"]
    assert [entry["failure"] for entry in entries] == [None, {"kind": "auth_failed",
                                                              "message": "The remote server refused the login."}]


class _Refused(Exception):
    pass


class _Module:
    """What _report.main uses of AnsibleModule; fail_json raises with what it was given."""

    check_mode = False
    _diff = False

    def __init__(self, params):
        self.params = params

    def warn(self, warning):
        raise AssertionError(warning)

    def fail_json(self, msg, **kwargs):
        raise _Refused(dict(kwargs, msg=msg))

    def exit_json(self, **kwargs):
        raise AssertionError(kwargs)


def _params(**overrides):
    params = {name: spec.get("default") for name, spec in _report.argument_spec().items()}
    params.update(local_user="a", remote_user="b", remote_password="c", remote_host="h", **overrides)
    return params


def test_the_report_says_how_to_get_imapclient_and_refuses_an_old_python_first(monkeypatch):
    from ansible_collections.mailops.imap.plugins.module_utils._engine import pyversion, sync  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(sync, "HAS_IMAPCLIENT", False)
    with pytest.raises(_Refused) as refused:
        _report.main(_Module(_params()))
    said = refused.value.args[0]
    assert "imapclient" in said["msg"] and pyversion.ENVIRONMENT_HINT in said["msg"] and said["changed"] is False
    monkeypatch.setattr(pyversion, "unsupported_python", lambda: "This Python is too old.")
    with pytest.raises(_Refused) as refused:
        _report.main(_Module(_params(remote_port=70000)))  # refused before the parameters are even read
    assert refused.value.args[0]["msg"] == "This Python is too old."
