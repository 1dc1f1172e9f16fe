# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Folder lanes of the builtin engine (sync.Syncer): with many folders to work on, more pairs of sessions sync
folders beside the first; every folder copied once, the result in folder order, at most two batches held at once,
a refused second login leaves the folders to the first lane, a failure in a lane stops the run."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import apply, config, errors, imap, plan, sync
from ansible_collections.mailops.imap.tests.unit.plugins.module_utils._engine.fakestore import Server, message

TARGET = config.parse_target({"host": "127.0.0.1", "master_user": "vmail", "master_password": "pw"})
TASK = config.parse_task({"local_user": "alice", "remote_user": "alice@old", "remote_password": "secret",
                          "remote_host": "old.example.org", "folders": "all"})
FOLDERS = [f"F{number:02d}" for number in range(12)]


@pytest.fixture(name="servers")
def _servers(monkeypatch):
    monkeypatch.setattr(sync, "LANE_MIN_FOLDERS", 4)
    remote, local = Server(), Server()
    for name in FOLDERS:
        for number in range(3):
            remote.add(name, message(f"{name}-{number}", subject=name))
    return remote, local


def connector(remote, local, refuse_after=None, broken=None):
    """A ``connect`` for sync.run: sessions of the fake servers; remote logins past ``refuse_after`` refused as busy;
    ``broken(session)`` may replace a remote session past the first."""
    opened = {"remote": 0}

    def connect(ep):
        if ep.side != "remote":
            return local.connect()
        opened["remote"] += 1
        if refuse_after is not None and opened["remote"] > refuse_after:
            raise errors.ServerBusy("The remote server has too many connections of this user [LIMIT].", "remote")
        session = remote.connect()
        return broken(session) if broken is not None and opened["remote"] > 1 else session

    return connect


def test_two_lanes_copy_every_folder_once_and_report_in_folder_order(servers, tmp_path):
    remote, local = servers
    log: list[str] = []
    result = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), log=log.append, connect=connector(remote, local)).as_dict()
    assert result["status"] == "success", result
    assert remote.sessions == local.sessions == sync.LANES  # a pair of sessions per lane
    assert [f["remote"] for f in result["folders"]] == ["INBOX", *FOLDERS]
    assert result["totals"]["copied"] == 3 * len(FOLDERS)
    for name in FOLDERS:
        assert sorted(local.bodies(name)) == sorted(remote.bodies(name))
    again = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), connect=connector(remote, local)).as_dict()
    assert again["status"] == "success" and again["totals"]["copied"] == again["totals"]["already_present"] == 0


def test_a_refused_second_login_leaves_the_folders_to_the_first_lane(servers, tmp_path):
    remote, local = servers
    log: list[str] = []
    result = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), log=log.append,
                      connect=connector(remote, local, refuse_after=1)).as_dict()
    assert result["status"] == "success", result
    assert result["totals"]["copied"] == 3 * len(FOLDERS)
    assert any("no further pair of sessions" in line and "too many connections" in line for line in log), log


def test_a_failure_in_the_second_lane_stops_the_run_without_a_traceback(servers, tmp_path):
    remote, local = servers

    class Broken:
        """A remote session whose SELECT fails unexpectedly (a bug, not a server's answer)."""

        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def select(self, folder, readonly):
            raise KeyError("unexpected")

    before = threading.active_count()
    result = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), connect=connector(remote, local, broken=Broken)).as_dict()
    assert result["status"] == "failed" and result["errors"][-1]["kind"] == "internal_error", result
    assert "KeyError" in result["errors"][-1]["detail"]
    assert threading.active_count() == before  # no lane left running
    names = [f["remote"] for f in result["folders"]]
    assert names == sorted(names, key=["INBOX", *FOLDERS].index)  # the folders started, in folder order
    again = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), connect=connector(remote, local)).as_dict()
    assert again["status"] == "success"
    for name in FOLDERS:
        assert sorted(local.bodies(name)) == sorted(remote.bodies(name))  # resumed: nothing lost, nothing doubled


def test_the_batch_gate_holds_at_most_two_batches():
    gate = sync.BatchGate()
    gate.acquire(2)  # a transfer of several batches
    entered = threading.Event()

    def single() -> None:
        gate.acquire(1)
        entered.set()
        gate.release(1)

    thread = threading.Thread(target=single)
    thread.start()
    assert not entered.wait(0.2)  # a single batch waits while two are held
    gate.release(2)
    assert entered.wait(5)
    thread.join()
    gate.acquire(1)
    gate.acquire(1)  # two single batches together
    assert gate.held == 2


def test_at_once_raises_the_failure_here_first_and_undoes_what_there_gave():
    undone = []

    def here():
        raise errors.SyncError(errors.AUTH_FAILED, "remote refused", "remote")

    with pytest.raises(errors.SyncError, match="remote refused"):
        sync.at_once(here, lambda: "local session", "test", undo=undone.append)
    assert undone == ["local session"]

    def there():
        raise errors.SyncError(errors.CONNECT_FAILED, "local unreachable", "local")

    with pytest.raises(errors.SyncError, match="local unreachable"):
        sync.at_once(lambda: "remote session", there, "test", undo=undone.append)
    assert sync.at_once(lambda: 1, lambda: 2, "test") == (1, 2)


@pytest.mark.parametrize("sizes, held", [
    ([2000] * 20, 1),  # one small batch
    ([5 << 20], 2),  # a message larger than a batch: alone in the gate
    ([100_000] * 20, 2),  # 2 MB: several batches, the next fetched while one is appended
    ([], 0),  # nothing to copy
])
def test_a_copy_holds_one_batch_only_when_it_is_one_small_batch(sizes, held):
    gate = sync.BatchGate()
    seen = []

    class Inner(apply.Outcome):
        def copy(self, ctx, plan):
            seen.append(gate.held)
            return []

    uids = list(range(1, len(sizes) + 1))
    copy = plan.CopyPlan(present={}, copy=uids, sizes=dict(zip(uids, sizes)), too_big=[], limit=imap.MAX_MESSAGE)
    sync.Gated(Inner(None), gate).copy(None, copy)
    assert seen == [held] and gate.held == 0


def test_the_folders_errors_are_reported_in_folder_order(servers, tmp_path):
    remote, local = servers
    refused = {"F02", "F05", "F07", "F10"}

    class Refusing:
        """A remote session that cannot open some folders (a folder's failure: the lane goes on)."""

        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def select(self, folder, readonly):
            if folder in refused:
                raise errors.SyncError(errors.PROTOCOL_ERROR, f"{folder} cannot be opened", "remote")
            return self.session.select(folder, readonly)

    def connect(ep):
        return Refusing(remote.connect()) if ep.side == "remote" else local.connect()

    result = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), connect=connect).as_dict()
    assert remote.sessions == sync.LANES
    assert [e["folder"] for e in result["errors"]] == sorted(refused)
    assert result["totals"]["copied"] == 3 * (len(FOLDERS) - len(refused))


def test_a_lane_failure_the_user_can_act_on_is_reported_before_its_consequence(servers, tmp_path):
    remote, local = servers
    entered, first = threading.Event(), threading.Event()

    class Failing:
        """Remote sessions: F03 (on another lane) meets a bug once F01 has failed the run with a sentence for the user."""

        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def select(self, folder, readonly):
            if folder == "F01":
                entered.wait(5)
                first.set()
                raise errors.SyncError(errors.AUTH_FAILED, "The remote server refused the password.", "remote")
            if folder == "F03":
                entered.set()
                first.wait(5)
                raise KeyError("a consequence")
            return self.session.select(folder, readonly)

    def connect(ep):
        return Failing(remote.connect()) if ep.side == "remote" else local.connect()

    result = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), connect=connect).as_dict()
    assert result["status"] == "failed"
    assert result["errors"][-1]["kind"] == "auth_failed", result


def test_a_run_stopping_failure_halts_the_other_lanes_after_their_batch(servers, tmp_path, monkeypatch):
    remote, local = servers
    for number in range(200):
        remote.add("F00", message(f"big-{number}", subject="big", body="x" * 50_000))
    monkeypatch.setattr(apply, "BATCH_COUNT", 10)
    started = threading.Event()
    appended = []

    class Slow:
        """Local sessions: appends are counted; the first one lets F01's failure happen."""

        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def append_many(self, folder, messages):
            appended.append(folder)
            started.set()
            time.sleep(0.02)  # a local server's commit
            return self.session.append_many(folder, messages)

    class Failing:
        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def select(self, folder, readonly):
            if folder == "F01":
                started.wait(5)
                raise errors.SyncError(errors.AUTH_FAILED, "The remote server refused the password.", "remote")
            return self.session.select(folder, readonly)

    def connect(ep):
        return Failing(remote.connect()) if ep.side == "remote" else Slow(local.connect())

    result = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), connect=connect).as_dict()
    assert result["status"] == "failed" and result["errors"][-1]["kind"] == "auth_failed", result
    assert appended.count("F00") < 10 and len(local.bodies("F00")) < 203  # F00 stopped after a batch, not at its end
    again = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), connect=connector(remote, local)).as_dict()
    assert again["status"] == "success", again
    for name in FOLDERS:
        assert sorted(local.bodies(name)) == sorted(remote.bodies(name))  # resumed: nothing lost, nothing doubled
