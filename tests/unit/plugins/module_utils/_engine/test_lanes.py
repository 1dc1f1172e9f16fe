# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Folder lanes of the builtin engine (sync.Syncer): with many folders to work on, more pairs of sessions sync
folders beside the first; every folder copied once, the result in folder order, at most two batches held at once,
a refused second login leaves the folders to the first lane, a failure in a lane stops the run."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import apply, config, errors, plan, sync
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


def test_the_budget_holds_at_most_its_limit_and_a_larger_batch_alone():
    budget = apply.Budget(100)
    never = threading.Event()
    assert budget.acquire(60, never) and budget.acquire(40, never)  # two batches together
    order = []

    def take(amount, name):
        assert budget.acquire(amount, never)
        order.append(name)

    large = threading.Thread(target=take, args=(500, "large"))  # larger than the limit: alone, once all is released
    large.start()
    time.sleep(0.1)
    small = threading.Thread(target=take, args=(10, "small"))  # asked after the large one: served after it
    small.start()
    time.sleep(0.3)
    assert order == []
    budget.release(60)
    time.sleep(0.3)
    assert order == []  # 40 still held: the large batch waits, and the small one behind it
    budget.release(40)
    large.join(5)
    assert order == ["large"] and budget.used == 100
    budget.release(500)
    small.join(5)
    assert order == ["large", "small"] and budget.used == 10
    stopped = threading.Event()
    stopped.set()
    assert not budget.acquire(100, stopped) and budget.used == 10  # a stopped run takes nothing
    assert budget.acquire(10, never)
    assert not budget.acquire(10, stopped) and budget.held == 2  # two batches, however small: a third waits


def test_lanes_share_one_budget_of_message_bytes(servers, tmp_path, monkeypatch):
    remote, local = servers
    for name in FOLDERS:
        for number in range(20):
            remote.add(name, message(f"{name}-big-{number}", subject=name, body="y" * 20_000))
    monkeypatch.setattr(apply, "BATCH_BYTES", 64 * 1024)  # several batches per folder
    peaks = []
    budgets = []

    class Watched(apply.Budget):
        def __init__(self, limit):
            super().__init__(limit)
            budgets.append(self)

        def acquire(self, amount, stopped):
            took = super().acquire(amount, stopped)
            with self.cond:
                peaks.append((self.used, self.held))
            return took

    lost = set()

    class Dropping:
        """Remote sessions that lose their connection once in the middle of each of some folders' transfers."""

        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def fetch(self, uids, items, **kwargs):
            folder = self.session.selected.name
            if "BODY.PEEK[]" in items and folder in ("F03", "F07") and folder not in lost and len(uids) > 1:
                lost.add(folder)
                raise errors.ConnectionLost("The remote server closed the connection.", "remote")
            return self.session.fetch(uids, items, **kwargs)

    def connect(ep):
        return Dropping(remote.connect()) if ep.side == "remote" else local.connect()

    monkeypatch.setattr(apply, "Budget", Watched)
    monkeypatch.setattr(sync, "BACKOFF_S", (0, 0, 0, 0, 0))
    result = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), connect=connect).as_dict()
    assert result["status"] == "success", result
    assert remote.sessions > sync.LANES and lost == {"F03", "F07"}  # the reconnects
    assert peaks and max(used for used, _held in peaks) <= 2 * 64 * 1024  # two batches' worth, whatever the lanes
    assert max(held for _used, held in peaks) <= 2
    assert (budgets[0].used, budgets[0].held) == (0, 0)  # every batch gave its room back, the lost ones too
    for name in FOLDERS:
        assert sorted(local.bodies(name)) == sorted(remote.bodies(name))


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


def test_a_lane_waiting_to_reconnect_stops_when_another_lane_fails_the_run(servers, tmp_path, monkeypatch):
    remote, local = servers
    monkeypatch.setattr(sync, "BACKOFF_S", (30, 30, 30, 30, 30))
    dropped = threading.Event()

    class Failing:
        """F00 loses its connection (its lane waits 30 s to reconnect); then F01 fails the run."""

        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def select(self, folder, readonly):
            if folder == "F00":
                dropped.set()
                raise errors.ConnectionLost("The remote server closed the connection.", "remote")
            if folder == "F01":
                dropped.wait(5)
                raise errors.SyncError(errors.AUTH_FAILED, "The remote server refused the password.", "remote")
            return self.session.select(folder, readonly)

    def connect(ep):
        return Failing(remote.connect()) if ep.side == "remote" else local.connect()

    started = time.monotonic()
    result = sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), connect=connect).as_dict()
    assert time.monotonic() - started < 10  # not the 30 s of the backoff
    assert result["status"] == "failed" and result["errors"][-1]["kind"] == "auth_failed", result


def test_lanes_whose_multiappends_are_refused_at_once_append_them_again_without_waiting_for_each_other(tmp_path, monkeypatch):
    """An account over quota: every lane's MULTIAPPEND is refused, each while its fetching thread read the next window's
    first batch ahead; the lanes append the refused messages again, none waits for budget room another lane holds."""
    monkeypatch.setattr(sync, "LANE_MIN_FOLDERS", 4)
    monkeypatch.setattr(plan, "COPY_WINDOW", 6)
    monkeypatch.setattr(apply, "BATCH_COUNT", 2)
    remote = Server()
    local = Server(("UIDPLUS", "MULTIAPPEND", "CONDSTORE", "LITERAL+"), refuse=lambda body: "[OVERQUOTA] no" if b"<bad-" in body else None)
    names = FOLDERS[:6]
    for name in names:
        for number in range(8):  # two windows: the first one's MULTIAPPEND refused
            remote.add(name, message(f"bad-{name}" if number == 0 else f"{name}-{number}", subject=name))
    stop = threading.Event()
    outcome: list[dict] = []
    runner = threading.Thread(target=lambda: outcome.append(sync.run(TASK, TARGET, str(tmp_path / "s.sqlite"), stop=stop,
                                                                     connect=connector(remote, local)).as_dict()))
    runner.start()
    runner.join(5)  # a second at most when nothing waits
    stop.set()
    runner.join(10)
    assert not any("stopped on request" in notice for notice in outcome[0]["notices"]), "a lane waited for the budget"
    assert outcome[0]["status"] == "partial" and outcome[0]["totals"]["copied"] == 7 * len(names)
    assert outcome[0]["totals"]["errors"] == len(names)
