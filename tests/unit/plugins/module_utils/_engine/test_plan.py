# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The builtin engine's planner and applier against an in-memory IMAP store (fakestore): new mail, flag merges,
flag_sync without CONDSTORE, identity adoption, deletions by policy, UIDVALIDITY change, INBOX retrieval, refusals.
Each case is run in check mode (the planner alone: its counts, and nothing written anywhere) and for real (what the
servers hold afterwards)."""

from __future__ import annotations

import datetime
import os
import sqlite3
import threading
import time

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import apply, config, deletion, errors, flagsets, plan, schema, sync
from ansible_collections.mailops.imap.plugins.module_utils._engine.folders import FolderPlan
from ansible_collections.mailops.imap.plugins.module_utils._engine.result import FolderResult
from ansible_collections.mailops.imap.plugins.module_utils._engine.state import State
from ansible_collections.mailops.imap.tests.unit.plugins.module_utils._engine.fakestore import UTC, Server, message

SEEN, FLAGGED, ANSWERED = b"\\Seen", b"\\Flagged", b"\\Answered"
TARGET = config.parse_target({"host": "127.0.0.1", "master_user": "vmail", "master_password": "pw"})


def task(**overrides):
    data = {"local_user": "alice", "remote_user": "alice@old", "remote_password": "secret", "remote_host": "old.example.org"}
    data.update(overrides)
    return config.parse_task(data)


class Rig:
    """A remote and a local fake server and a task's state file; ``run`` syncs them with the builtin engine."""

    def __init__(self, tmp_path, remote: Server | None = None, local: Server | None = None) -> None:
        self.remote = remote or Server()
        self.local = local or Server()
        self.state = str(tmp_path / "task.sqlite")
        self.log: list[str] = []

    def connect(self, ep):
        return (self.remote if ep.side == "remote" else self.local).connect()

    def run(self, check_mode: bool = False, **overrides):
        result = sync.run(task(**overrides), TARGET, self.state, check_mode=check_mode, log=self.log.append,
                          connect=self.connect).as_dict()
        assert result["status"] in ("success", "partial"), result
        return result

    def both(self, **overrides):
        """The check-mode result, then the real run's; check mode must have written nothing anywhere."""
        before = (self.remote.snapshot(), self.local.snapshot(), os.path.exists(self.state))
        check = self.run(check_mode=True, **overrides)
        assert (self.remote.snapshot(), self.local.snapshot(), os.path.exists(self.state)) == before
        return check, self.run(**overrides)


def totals(result, *names):
    return tuple(result["totals"][n] for n in names)


COUNTS = ("copied", "already_present", "flags_updated", "deleted_remote", "errors")


# -- new mail and identity adoption -----------------------------------------------------------------------------------
@pytest.mark.parametrize("remote_ids, local_ids, copied, present", [
    (["a", "b", "c"], [], 3, 0),  # a first run into an empty account
    (["a", "b", "c"], ["a", "c"], 1, 2),  # two already there (an earlier tool, lost state): adopted, never doubled
    (["a", "a", "b"], ["a"], 2, 1),  # true twins: multiplicities count
    ([None, None], [None], 1, 1),  # no Message-ID: matched by a digest of the whole header
])
def test_new_mail_and_identity_adoption(tmp_path, remote_ids, local_ids, copied, present):
    rig = Rig(tmp_path)
    for mid in remote_ids:
        rig.remote.add("INBOX", message(mid, subject="s"))
    for mid in local_ids:
        rig.local.add("INBOX", message(mid, subject="s"))
    check, real = rig.both(folders="all")
    assert totals(check, "copied", "already_present") == totals(real, "copied", "already_present") == (copied, present)
    assert sorted(rig.local.bodies("INBOX")) == sorted(rig.remote.bodies("INBOX"))
    again = rig.run(folders="all")
    assert totals(again, *COUNTS) == (0, 0, 0, 0, 0)


def test_same_key_different_content_is_told_apart_by_content(tmp_path):
    rig = Rig(tmp_path)
    one, other = message("k", body="one!"), message("k", body="two!")  # same Message-ID, Date and size
    rig.remote.add("INBOX", one)
    rig.remote.add("INBOX", other)
    rig.local.add("INBOX", other)
    check, real = rig.both(folders="all")
    assert totals(check, "copied", "already_present") == totals(real, "copied", "already_present") == (1, 1)
    assert sorted(rig.local.bodies("INBOX")) == sorted([one, other])


def test_a_missing_local_folder_is_planned_then_created(tmp_path):
    rig = Rig(tmp_path)
    rig.remote.add("Projects", message("p"))
    check, real = rig.both(folders="all")
    created = [(f["local"], f["created"], f["copied"]) for r in (check, real) for f in r["folders"] if f["remote"] == "Projects"]
    assert created == [("Projects", True, 1)] * 2
    assert rig.local.bodies("Projects") == [message("p")]


def test_the_planner_alone_yields_each_windows_actions(tmp_path):
    remote, local = Server(), Server(appendlimit=200)
    for mid in ("a", "b", "c"):
        remote.add("INBOX", message(mid))
    big = remote.add("INBOX", message("big", body="x" * 300))
    local.add("INBOX", message("b"))
    state = State(str(tmp_path / "s.sqlite"), readonly=True)
    ctx = plan.FolderRun(folder=FolderPlan("INBOX", "INBOX"), result=FolderResult("INBOX", "INBOX"),
                         remote=remote.connect(), local=local.connect(), state=state)
    planner = plan.Planner(task(folders="all"), plan.FlagReader(), threading.Event(), lambda _line: None, writes=False)
    assert planner.open(ctx, None, None, exists=True) is False
    assert planner.match_state(ctx) is True and not ctx.usable
    planner.select_remote(ctx)
    assert list(planner.flag_updates(ctx)) == []
    planner.local_pool(ctx)
    windows = list(planner.copies(ctx))
    ctx.pool.close()
    assert [(w.present, w.copy, w.too_big) for w in windows] == [({2: 1}, [1, 3], [big])]
    assert windows[0].bytes == len(message("a")) + len(message("c"))


# -- flags --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("condstore", [True, False])
@pytest.mark.parametrize("remote_now, local_now, merged, updated", [
    ({SEEN, FLAGGED}, {SEEN}, {SEEN, FLAGGED}, 1),  # flagged on the remote: added locally
    (set(), {SEEN}, set(), 1),  # unread again on the remote: removed locally
    ({SEEN, FLAGGED}, {SEEN, ANSWERED}, {SEEN, FLAGGED, ANSWERED}, 1),  # both changed: merged
    ({SEEN}, set(), set(), 0),  # unchanged on the remote, unread again locally: the local change stays
    ({SEEN, FLAGGED}, {FLAGGED}, {FLAGGED}, 0),  # flagged on both sides, unread again locally: nothing to do
    (set(), set(), set(), 0),  # unread again on both sides: nothing to do
    ({SEEN, FLAGGED}, {SEEN, FLAGGED}, {SEEN, FLAGGED}, 0),  # flagged on both sides: nothing to do
])
def test_flag_merges_are_three_way(tmp_path, condstore, remote_now, local_now, merged, updated):
    caps = ("UIDPLUS", "MULTIAPPEND") + (("CONDSTORE",) if condstore else ())
    rig = Rig(tmp_path, Server(caps), Server(caps))
    body = message("m")
    rig.remote.add("INBOX", body, {SEEN})
    rig.run(folders="all")
    rig.remote.set_flags("INBOX", body, remote_now)
    rig.local.set_flags("INBOX", body, local_now)
    check, real = rig.both(folders="all")
    assert totals(check, *COUNTS) == totals(real, *COUNTS) == (0, 0, updated, 0, 0)
    assert rig.local.flags("INBOX")[body] == merged
    assert totals(rig.run(folders="all"), "flags_updated") == (0,)


NO_CONDSTORE = ("UIDPLUS", "MULTIAPPEND")
WITH_CONDSTORE = NO_CONDSTORE + ("CONDSTORE",)


def opened(server: Server) -> list[str]:
    """The folders a server's sessions opened or read messages of (any command but STATUS) since the last call."""
    folders = sorted({folder for command, folder in server.commands if command != "STATUS"})
    server.commands.clear()
    return folders


@pytest.mark.parametrize("caps, flag_sync, remote_opened", [
    (WITH_CONDSTORE, "all", []),  # the same HIGHESTMODSEQ: no flag changed
    (WITH_CONDSTORE, "changed_folders", []),
    (NO_CONDSTORE, "changed_folders", []),  # the same UIDVALIDITY, UIDNEXT and MESSAGES: the flags are not read
    (NO_CONDSTORE, "all", ["INBOX", "Work"]),  # without CONDSTORE, every copied message's flags are read
])
def test_an_unchanged_folder_is_done_from_its_status_alone(tmp_path, caps, flag_sync, remote_opened):
    rig = Rig(tmp_path, Server(caps), Server(caps))
    for folder in ("INBOX", "Work"):
        rig.remote.add(folder, message(f"{folder}-1"), {SEEN})
    rig.run(folders="all", flag_sync=flag_sync)
    for server in (rig.remote, rig.local):
        server.commands.clear()
    check, real = rig.both(folders="all", flag_sync=flag_sync)
    assert totals(check, *COUNTS) == totals(real, *COUNTS) == (0, 0, 0, 0, 0)
    assert (opened(rig.remote), opened(rig.local)) == (remote_opened, [])


@pytest.mark.parametrize("change", ["new", "expunged"])
def test_changed_folders_reads_the_flags_of_changed_folders_only(tmp_path, change):
    rig = Rig(tmp_path, Server(NO_CONDSTORE), Server(NO_CONDSTORE))
    for folder in ("INBOX", "Work"):
        for number in (1, 2):
            rig.remote.add(folder, message(f"{folder}-{number}"))
    rig.run(folders="all", flag_sync="changed_folders")
    for folder in ("INBOX", "Work"):
        rig.remote.set_flags(folder, message(f"{folder}-1"), {FLAGGED})
    if change == "new":
        rig.remote.add("Work", message("Work-3"))
    else:
        rig.remote.expunge("Work", message("Work-2"))  # fewer messages, the same UIDNEXT
    opened(rig.remote)
    check, real = rig.both(folders="all", flag_sync="changed_folders")
    copied = 1 if change == "new" else 0
    assert totals(check, "copied", "flags_updated") == totals(real, "copied", "flags_updated") == (copied, 1)
    assert opened(rig.remote) == ["Work"]
    assert rig.local.flags("Work")[message("Work-1")] == {FLAGGED}
    assert (message("Work-3") in rig.local.bodies("Work")) is (change == "new")
    # The price (docs/sync-engine.md): the flag changed in the unchanged INBOX is not copied by changed_folders...
    assert rig.local.flags("INBOX")[message("INBOX-1")] == set()
    assert totals(rig.run(folders="all", flag_sync="changed_folders"), "flags_updated") == (0,)
    assert rig.local.flags("INBOX")[message("INBOX-1")] == set()
    # ... and is by flag_sync: all, which reads the flags of every folder.
    assert totals(rig.run(folders="all", flag_sync="all"), "flags_updated") == (1,)
    assert rig.local.flags("INBOX")[message("INBOX-1")] == {FLAGGED}


@pytest.mark.parametrize("flag_sync", schema.FLAG_SYNC_CHOICES)
def test_with_condstore_flag_sync_changes_nothing(tmp_path, flag_sync):
    rig = Rig(tmp_path, Server(WITH_CONDSTORE), Server(WITH_CONDSTORE))
    rig.remote.add("INBOX", message("i"))
    rig.remote.add("Work", message("w"))
    rig.run(folders="all", flag_sync=flag_sync)
    rig.remote.set_flags("Work", message("w"), {FLAGGED})  # a new HIGHESTMODSEQ, the same UIDNEXT and MESSAGES
    opened(rig.remote)
    check, real = rig.both(folders="all", flag_sync=flag_sync)
    assert totals(check, *COUNTS) == totals(real, *COUNTS) == (0, 0, 1, 0, 0)
    assert opened(rig.remote) == ["Work"]
    assert rig.local.flags("Work")[message("w")] == {FLAGGED}


def test_a_folder_whose_message_count_the_state_lacks_counts_as_changed(tmp_path):
    """A state written before the count was recorded (a migrated file) holds NULL: the next sync reads the flags once."""
    rig = Rig(tmp_path, Server(NO_CONDSTORE), Server(NO_CONDSTORE))
    rig.remote.add("INBOX", message("i"))
    rig.run(folders="all", flag_sync="changed_folders")
    db = sqlite3.connect(rig.state)
    with db:
        db.execute("UPDATE folders SET remote_messages = NULL")
    db.close()
    opened(rig.remote)
    rig.run(folders="all", flag_sync="changed_folders")
    assert opened(rig.remote) == ["INBOX"]
    rig.run(folders="all", flag_sync="changed_folders")
    assert opened(rig.remote) == []


# -- deletions ----------------------------------------------------------------------------------------------------------
OLD = datetime.datetime(2020, 1, 1, tzinfo=UTC)
NEW = datetime.datetime.now(UTC)


@pytest.mark.parametrize("policy, days, deleted", [
    ("never", None, []),
    ("after_sync", None, ["old", "new"]),
    ("older_than", 30, ["old"]),
])
def test_deletion_policies(tmp_path, policy, days, deleted):
    rig = Rig(tmp_path)
    rig.remote.add("INBOX", message("old"), date=OLD)
    rig.remote.add("INBOX", message("new"), date=NEW)
    overrides = {"folders": "all", "delete_remote": policy, "delete_remote_days": days}
    check, real = rig.both(**overrides)
    assert totals(check, "copied", "deleted_remote") == totals(real, "copied", "deleted_remote") == (2, len(deleted))
    assert sorted(rig.local.bodies("INBOX")) == sorted([message("old"), message("new")])
    assert sorted(rig.remote.bodies("INBOX")) == sorted(message(m) for m in ("old", "new") if m not in deleted)


def test_without_uidplus_nothing_is_expunged_while_other_messages_are_marked_deleted(tmp_path):
    rig = Rig(tmp_path, remote=Server(("MULTIAPPEND",)))
    rig.remote.add("INBOX", message("a"))
    rig.remote.add("INBOX", message("gone"), {b"\\Deleted"})
    result = rig.run(folders="all", delete_remote="after_sync")
    assert totals(result, "copied", "deleted_remote") == (2, 0)
    assert any("no UIDPLUS" in notice for notice in result["notices"])
    assert len(rig.remote.bodies("INBOX")) == 2


def test_every_policy_is_one_entry_of_the_registry():
    assert config.DELETE_CHOICES == tuple(deletion.POLICIES) == ("never", "after_sync", "older_than")
    today = datetime.date(2026, 3, 31)
    assert deletion.policy("after_sync").criteria(None, today) == ["NOT", "DELETED"]
    assert deletion.policy("older_than").criteria(30, today) == ["BEFORE", datetime.date(2026, 3, 1), "NOT", "DELETED"]
    assert [p.needs_days for p in deletion.POLICIES.values()] == [False, False, True]
    assert [p.deletes for p in deletion.POLICIES.values()] == [False, True, True]


# -- UIDVALIDITY and state ------------------------------------------------------------------------------------------------
def test_a_uidvalidity_change_matches_by_identity_and_copies_nothing_twice(tmp_path):
    rig = Rig(tmp_path)
    for mid in ("a", "b"):
        rig.remote.add("INBOX", message(mid))
    rig.run(folders="all")
    rig.remote.recreate("INBOX")
    rig.remote.add("INBOX", message("c"))
    check, real = rig.both(folders="all")
    assert totals(check, "copied", "already_present") == totals(real, "copied", "already_present") == (1, 2)
    assert any("UIDVALIDITY changed" in line for line in rig.log)
    assert sorted(rig.local.bodies("INBOX")) == sorted(message(m) for m in "abc")


def test_a_connection_lost_mid_copy_resumes_from_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(sync, "BACKOFF_S", (0, 0, 0, 0, 0))
    monkeypatch.setattr(apply, "BATCH_COUNT", 2)
    rig = Rig(tmp_path)
    for number in range(7):
        rig.remote.add("INBOX", message(f"m{number}"))
    append = rig.local.connect().__class__.append_many
    calls = []

    def flaky(session, folder, messages):
        calls.append(len(messages))
        if len(calls) == 2:  # the second batch: the connection drops
            rig.local.fail_append_once = True
        return append(session, folder, messages)

    monkeypatch.setattr(rig.local.connect().__class__, "append_many", flaky)
    result = rig.run(folders="all")
    assert totals(result, "copied", "errors") == (7, 0)
    assert sorted(rig.local.bodies("INBOX")) == sorted(rig.remote.bodies("INBOX"))
    assert any("Reconnecting in 0 s" in line for line in rig.log)


# -- refusals -------------------------------------------------------------------------------------------------------------
def test_a_message_over_the_local_limit_is_too_big_in_check_mode_too(tmp_path):
    rig = Rig(tmp_path, local=Server(appendlimit=300))
    rig.remote.add("INBOX", message("small"))
    rig.remote.add("INBOX", message("large", body="x" * 400))
    check, real = rig.both(folders="all")
    for result in (check, real):
        assert result["status"] == "partial" and totals(result, "copied", "errors") == (1, 1)
        assert [e["kind"] for e in result["errors"]] == ["too_big"]
    assert rig.local.bodies("INBOX") == [message("small")]


def test_a_refused_message_is_found_one_by_one_and_the_others_are_kept(tmp_path):
    rig = Rig(tmp_path, local=Server(refuse=lambda body: "[OVERQUOTA] no" if b"bad" in body else None))
    for mid in ("a", "bad", "c"):
        rig.remote.add("INBOX", message(mid))
    result = rig.run(folders="all")
    assert totals(result, "copied", "errors") == (2, 1)
    assert [(e["kind"], e["message_id"]) for e in result["errors"]] == [("append_refused", "<bad>")]
    assert sorted(rig.local.bodies("INBOX")) == sorted([message("a"), message("c")])


# -- INBOX retrieval ----------------------------------------------------------------------------------------------------
def test_inbox_retrieval_copies_the_unseen_and_marks_them_seen(tmp_path):
    rig = Rig(tmp_path)
    rig.remote.add("INBOX", message("read"), {SEEN})
    rig.remote.add("INBOX", message("u1"))
    rig.remote.add("INBOX", message("u2"))
    rig.remote.add("Other", message("elsewhere"))
    check, real = rig.both(folders="inbox", sieve=False)
    assert totals(check, *COUNTS) == totals(real, *COUNTS) == (2, 0, 0, 0, 0)
    assert sorted(rig.local.bodies("INBOX")) == sorted([message("u1"), message("u2")])
    assert all(SEEN in flags for flags in rig.remote.flags("INBOX").values())
    assert "Other" not in rig.local.folders
    # Marked unread again on the remote: not copied twice, only marked \Seen.
    rig.remote.set_flags("INBOX", message("u1"), set())
    again = rig.run(folders="inbox", sieve=False)
    assert totals(again, "copied", "already_present") == (0, 1)
    assert SEEN in rig.remote.flags("INBOX")[message("u1")]


def test_inbox_retrieval_ignores_flag_sync(tmp_path):
    rig = Rig(tmp_path, Server(NO_CONDSTORE), Server(NO_CONDSTORE))
    rig.remote.add("INBOX", message("u1"))
    rig.run(folders="inbox", sieve=False, flag_sync="changed_folders")
    rig.remote.set_flags("INBOX", message("u1"), set())  # unread again: the same UIDNEXT and MESSAGES
    again = rig.run(folders="inbox", sieve=False, flag_sync="changed_folders")
    assert totals(again, "copied", "already_present") == (0, 1)
    assert SEEN in rig.remote.flags("INBOX")[message("u1")]


def test_inbox_retrieval_with_deletion_removes_what_was_retrieved(tmp_path):
    rig = Rig(tmp_path)
    rig.remote.add("INBOX", message("u1"))
    check, real = rig.both(folders="inbox", sieve=False, delete_remote="after_sync")
    assert totals(check, "copied", "deleted_remote") == totals(real, "copied", "deleted_remote") == (1, 1)
    assert rig.remote.bodies("INBOX") == []


# -- notices --------------------------------------------------------------------------------------------------------------
def test_flags_that_are_not_imap_flags_are_dropped_with_a_notice(tmp_path):
    rig = Rig(tmp_path)
    rig.remote.add("INBOX", message("m"), {SEEN, b"bad flag", b"x)\r\nZ1 LOGOUT"})
    check, real = rig.both(folders="all")
    assert totals(check, "copied") == totals(real, "copied") == (1,)
    assert rig.local.flags("INBOX")[message("m")] == {SEEN}
    # (Check mode reads no flags of the messages it would copy: the notice comes with the copy.)
    assert [n for n in real["notices"] if n.startswith("A server sent 2 flags that are not valid IMAP flags")], real["notices"]
    assert check["notices"] == []


def test_a_stopped_run_ends_after_the_current_window_and_the_next_run_continues(tmp_path):
    rig = Rig(tmp_path)
    for number in range(3):
        rig.remote.add("INBOX", message(f"m{number}"))
        rig.remote.add("Later", message(f"l{number}"))
    stop = threading.Event()

    def log(line):
        rig.log.append(line)
        if line.startswith("INBOX -> INBOX: done"):
            stop.set()

    result = sync.run(task(folders="all"), TARGET, rig.state, log=log, stop=stop, connect=rig.connect).as_dict()
    assert [(f["remote"], f["copied"]) for f in result["folders"]] == [("INBOX", 3)]
    assert any("stopped on request" in notice for notice in result["notices"])
    again = rig.run(folders="all")
    assert totals(again, "copied", "already_present") == (3, 0)
    assert sorted(rig.local.bodies("Later")) == sorted(rig.remote.bodies("Later"))


def test_the_flag_reader_counts_every_dropped_flag_however_often_a_flags_value_comes_back():
    reader = plan.FlagReader()
    odd = (b"\\Seen", b"bad{flag", b"\\Recent")
    for _round in range(3):
        assert reader(odd) == frozenset({b"\\Seen"})
    assert reader.dropped == 3 and reader.examples == [b"bad{flag"]
    assert reader((b"$Label", ["not", "a flag"])) == frozenset({b"$Label"})  # a list cannot be a key: judged all the same
    assert reader(None) == frozenset() and reader([b"\\Answered"]) == frozenset({b"\\Answered"})
    for number in range(flagsets.FLAG_SETS + 10):  # more sets than are kept (flagsets.cached, test_flagsets.py)
        assert reader((b"$L%d" % number,)) == frozenset({b"$L%d" % number})
    assert reader.dropped == 4 and "4 flags" in (reader.notice() or "")  # the list too


def _windows_of_batches(monkeypatch, slow_append: float = 0.0):
    """Windows of 6 UIDs, batches of 2; each local append takes ``slow_append`` s (a local server's commit). The
    order of the remote size reads (one a window) and the local appends is kept in ``events``."""
    monkeypatch.setattr(plan, "COPY_WINDOW", 6)
    monkeypatch.setattr(apply, "BATCH_COUNT", 2)
    events: list[str] = []
    session = Server().connect().__class__
    sizes, append = session.sizes_between, session.append_many

    def sizes_between(self, first, last):
        events.append("sizes")
        return sizes(self, first, last)

    def append_many(self, folder, messages):
        time.sleep(slow_append)
        events.append("append")
        return append(self, folder, messages)

    monkeypatch.setattr(session, "sizes_between", sizes_between)
    monkeypatch.setattr(session, "append_many", append_many)
    return events


def test_a_transfer_reads_the_next_window_while_its_last_batches_are_appended(tmp_path, monkeypatch):
    events = _windows_of_batches(monkeypatch, slow_append=0.05)
    rig = Rig(tmp_path)
    for number in range(20):
        rig.remote.add("INBOX", message(f"m{number}"))
    result = rig.run(folders="all")
    assert totals(result, "copied", "errors") == (20, 0)
    assert rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")  # every message once, in order
    # Windows of 6 (3 batches): the second window's sizes are read before the first window's last append is done.
    assert events.index("sizes", 1) < 3, events
    assert totals(rig.run(folders="all"), "copied") == (0,)


def test_a_connection_lost_while_reading_the_next_window_ahead_keeps_the_window_appended(tmp_path, monkeypatch):
    monkeypatch.setattr(sync, "BACKOFF_S", (0, 0, 0, 0, 0))
    events = _windows_of_batches(monkeypatch, slow_append=0.02)
    rig = Rig(tmp_path)
    for number in range(14):
        rig.remote.add("INBOX", message(f"m{number}"))
    session = rig.remote.connect().__class__
    sizes = session.sizes_between
    lost = []

    def flaky(self, first, last):
        if first > 1 and not lost:  # the second window's sizes, read ahead: the connection drops
            lost.append(first)
            raise errors.ConnectionLost("The connection to the fake remote server was lost.", "remote")
        return sizes(self, first, last)

    monkeypatch.setattr(session, "sizes_between", flaky)
    result = rig.run(folders="all")
    assert lost and totals(result, "copied", "errors") == (14, 0)
    assert rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")  # the first window was kept, nothing doubled
    assert any("Reconnecting in 0 s" in line for line in rig.log)
    assert events.count("append") == 7  # 14 messages in batches of 2: none appended twice


# -- one MULTIAPPEND across batches (a local server with LITERAL+) -----------------------------------------------------
STREAMING = ("UIDPLUS", "MULTIAPPEND", "CONDSTORE", "LITERAL+")


def _commits(monkeypatch, batch_count: int = 10) -> list[int]:
    """Batches of ``batch_count``; the sizes of the local server's commits (fakestore.Stream.end calls append_many)."""
    monkeypatch.setattr(apply, "BATCH_COUNT", batch_count)
    commits: list[int] = []
    session = Server().connect().__class__
    append = session.append_many

    def append_many(self, folder, messages):
        commits.append(len(messages))
        return append(self, folder, messages)

    monkeypatch.setattr(session, "append_many", append_many)
    return commits


def _streaming(tmp_path, monkeypatch, messages: int) -> tuple[Rig, list[int]]:
    """A rig whose local server offers LITERAL+, ``messages`` in the remote INBOX, batches of 10, reconnects without
    waiting; and the sizes of the local server's commits (:func:`_commits`)."""
    monkeypatch.setattr(sync, "BACKOFF_S", (0, 0, 0, 0, 0))
    commits = _commits(monkeypatch)
    rig = Rig(tmp_path, local=Server(STREAMING))
    for number in range(messages):
        rig.remote.add("INBOX", message(f"m{number}"))
    return rig, commits


def _body_fetches(monkeypatch, rig, before=None) -> list[list[int]]:
    """The remote body FETCHes of ``rig``'s runs (their UIDs, in order); ``before(number, uids)`` runs before each
    (numbered from 1), where a test makes one fail, wait or stop the run."""
    session = rig.remote.connect().__class__
    fetch, fetched = session.fetch, []

    def counted(self, uids, items, modifiers=None, sizes=None):
        if self.server is rig.remote and "BODY.PEEK[]" in items:
            fetched.append(sorted(uids))
            if before is not None:
                before(len(fetched), sorted(uids))
        return fetch(self, uids, items, modifiers, sizes)

    monkeypatch.setattr(session, "fetch", counted)
    return fetched


def _lost_at(number: int):
    """A ``before`` for :func:`_body_fetches`: the remote connection drops at that body FETCH."""
    def before(count, _uids):
        if count == number:
            raise errors.ConnectionLost("The connection to the fake remote server was lost.", "remote")
    return before


def test_a_transfer_appends_its_batches_in_one_multiappend_with_commits_growing_from_the_first_batch(tmp_path, monkeypatch):
    rig, commits = _streaming(tmp_path, monkeypatch, 300)
    result = rig.run(folders="all")
    assert totals(result, "copied", "errors") == (300, 0)
    assert rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")  # every message once, in order
    # 30 batches of 10: the first commit after the first batch, each later one as large as all before it, the rest last.
    assert commits == [10, 10, 20, 40, 80, 140]
    assert [line for line in rig.log if "messages copied" in line][0].endswith(": 10 of 300 messages copied")
    assert totals(rig.run(folders="all"), "copied") == (0,)


def test_without_literal_plus_every_batch_is_a_multiappend_of_its_own(tmp_path, monkeypatch):
    commits = _commits(monkeypatch)
    rig = Rig(tmp_path)  # MULTIAPPEND, no LITERAL+: each message literal waits for the server's go-ahead
    for number in range(40):
        rig.remote.add("INBOX", message(f"m{number}"))
    assert totals(rig.run(folders="all"), "copied") == (40,)
    assert commits == [10, 10, 10, 10] and rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")


def test_a_refused_multiappend_is_appended_again_a_batch_at_a_time_and_only_the_refused_message_fails(tmp_path, monkeypatch):
    commits = _commits(monkeypatch)
    rig = Rig(tmp_path, local=Server(STREAMING, refuse=lambda body: "[OVERQUOTA] no" if b"<bad>" in body else None))
    for number in range(60):
        rig.remote.add("INBOX", message("bad" if number == 25 else f"m{number}"))
    result = rig.run(folders="all")
    assert result["status"] == "partial" and totals(result, "copied", "errors") == (59, 1)
    assert [(e["kind"], e["uid"]) for e in result["errors"]] == [("append_refused", 26)]
    # Every other message once: the refused commit's (UIDs 21 to 40) after the others.
    assert sorted(rig.local.bodies("INBOX")) == sorted(b for b in rig.remote.bodies("INBOX") if b != message("bad"))
    assert commits[:4] == [10, 10, 20, 20]  # the third commit (UIDs 21-40) refused, 20 more after it
    assert totals(rig.run(folders="all"), "copied", "errors") == (0, 1)  # refused again, nothing doubled


def test_a_remote_failure_mid_transfer_commits_what_was_sent_before_the_folder_resumes(tmp_path, monkeypatch):
    rig, commits = _streaming(tmp_path, monkeypatch, 60)
    fetched = _body_fetches(monkeypatch, rig, _lost_at(4))  # the fourth batch (UIDs 31-40), the third being sent
    result = rig.run(folders="all")
    assert totals(result, "copied", "errors") == (60, 0)
    assert rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")  # nothing lost, nothing doubled
    assert commits[:3] == [10, 10, 10]  # the third batch committed when the fetch failed
    assert [batch[0] for batch in fetched].count(21) == 1  # and not fetched again
    assert any("Reconnecting in 0 s" in line for line in rig.log)


def test_a_local_connection_lost_mid_multiappend_stores_none_of_it_and_the_next_attempt_copies_it(tmp_path, monkeypatch):
    rig, commits = _streaming(tmp_path, monkeypatch, 60)
    stream = rig.local.connect().append_stream("INBOX").__class__
    add, adds = stream.add, []

    def add_once_lost(self, messages):
        adds.append(len(messages))
        if len(adds) == 4:
            self.session.alive = False  # the fourth batch: the local connection breaks
        return add(self, messages)

    monkeypatch.setattr(stream, "add", add_once_lost)
    result = rig.run(folders="all")
    assert totals(result, "copied", "errors") == (60, 0)
    assert rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")
    assert commits[:2] == [10, 10] and sum(commits) == 60  # the open one (UIDs 21-30) was never stored: sent again
    assert any("Reconnecting in 0 s" in line for line in rig.log)


def test_a_stop_ends_the_open_multiappend_with_what_was_sent(tmp_path, monkeypatch):
    rig, commits = _streaming(tmp_path, monkeypatch, 300)
    stop = threading.Event()
    _body_fetches(monkeypatch, rig, lambda count, _uids: stop.set() if count == 4 else None)
    result = sync.run(task(folders="all"), TARGET, rig.state, log=rig.log.append, stop=stop, connect=rig.connect).as_dict()
    assert any("stopped on request" in notice for notice in result["notices"])
    assert commits == [10, 10, 20] and result["totals"]["copied"] == 40  # the fourth batch was sent, then committed
    assert rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")[:40]
    assert totals(rig.run(folders="all"), "copied") == (260,)
    assert rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")


def test_a_refused_multiappend_is_appended_again_while_the_next_window_is_read_ahead(tmp_path, monkeypatch):
    """The transfer's fetching thread read the next window's first batch ahead (its room in the budget held) when the
    refused MULTIAPPEND is appended again: that needs room in the same budget, and must not wait for the room it holds."""
    monkeypatch.setattr(plan, "COPY_WINDOW", 6)
    monkeypatch.setattr(apply, "BATCH_COUNT", 2)
    monkeypatch.setattr(apply, "BATCH_BYTES", 1000)  # the run's budget: 2,000 announced bytes
    rig = Rig(tmp_path, local=Server(STREAMING, refuse=lambda body: "[OVERQUOTA] no" if b"<bad>" in body else None))
    for number in range(6):  # the first window, one MULTIAPPEND, refused
        rig.remote.add("INBOX", message("bad" if number == 1 else f"m{number}"))
    rig.remote.add("INBOX", message("big", body="x" * 1900))  # the second window's first batch: alone over 1,000 bytes
    stop = threading.Event()
    outcome: list[dict] = []
    runner = threading.Thread(target=lambda: outcome.append(sync.run(task(folders="all"), TARGET, rig.state, log=rig.log.append,
                                                                     stop=stop, connect=rig.connect).as_dict()))
    runner.start()
    runner.join(5)  # a second at most when nothing waits
    stop.set()  # a run stuck waiting for the budget ends here
    runner.join(10)
    assert not any("stopped on request" in notice for notice in outcome[0]["notices"]), "the run waited for the budget"
    assert outcome[0]["status"] == "partial" and totals(outcome[0], "copied", "errors") == (6, 1)
    assert sorted(rig.local.bodies("INBOX")) == sorted(b for b in rig.remote.bodies("INBOX") if b != message("bad"))


def test_an_open_multiappend_ends_once_open_commit_seconds_while_the_next_batch_is_still_being_fetched(tmp_path, monkeypatch):
    """A slow remote: the batches sent are committed and checkpointed once the MULTIAPPEND has been open COMMIT_SECONDS,
    not only when the next batch arrives (a fetch may take minutes; the local server would wait with an open command)."""
    monkeypatch.setattr(apply, "COMMIT_SECONDS", 0.2)
    rig, commits = _streaming(tmp_path, monkeypatch, 40)
    session = rig.remote.connect().__class__
    events: list[str] = []
    append = session.append_many

    def slow_fourth(_count, uids):
        if uids[0] == 31:
            time.sleep(1.0)  # the fourth batch comes slowly, while the third is in an open MULTIAPPEND
            events.append("fourth batch fetched")

    def append_many(self, folder, messages):
        events.append(f"commit of {len(messages)}")
        return append(self, folder, messages)

    _body_fetches(monkeypatch, rig, slow_fourth)
    monkeypatch.setattr(session, "append_many", append_many)
    assert totals(rig.run(folders="all"), "copied", "errors") == (40, 0)
    assert rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")
    assert events == ["commit of 10"] * 3 + ["fourth batch fetched", "commit of 10"] and commits == [10, 10, 10, 10]


def test_a_multiappend_stored_but_its_answer_lost_is_found_by_identity_when_the_folder_resumes(tmp_path, monkeypatch):
    rig, commits = _streaming(tmp_path, monkeypatch, 60)
    stream = rig.local.connect().append_stream("INBOX").__class__
    end, ends = stream.end, []

    def end_answer_lost(self):
        luids = end(self)
        ends.append(len(luids or []))
        if len(ends) == 3:  # the third commit: stored, and the connection breaks before its answer is read
            self.session.alive = False
            raise errors.ConnectionLost("The connection to the fake local server was lost while appending.", "local")
        return luids

    monkeypatch.setattr(stream, "end", end_answer_lost)
    result = rig.run(folders="all")
    assert rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")  # the third commit's messages once, in order
    assert totals(result, "copied", "already_present", "errors") == (40, 20, 0) and sum(commits) == 60
    assert totals(rig.run(folders="all"), "copied", "already_present") == (0, 0)


@pytest.mark.parametrize("caps", [STREAMING, ("UIDPLUS", "MULTIAPPEND", "CONDSTORE")])
def test_inbox_retrieval_filters_what_an_attempt_stored_before_it_failed(tmp_path, monkeypatch, caps):
    """A remote failure in the middle of a window: the messages stored before it are filtered by the next attempt
    (they are known to it, and only marked \\Seen), each exactly once."""
    monkeypatch.setattr(sync, "BACKOFF_S", (0, 0, 0, 0, 0))
    _commits(monkeypatch)
    rig = Rig(tmp_path, local=Server((*caps, "FILTER=SIEVE")))
    for number in range(60):
        rig.remote.add("INBOX", message(f"m{number}"))
    _body_fetches(monkeypatch, rig, _lost_at(4))
    result = rig.run(folders="inbox", sieve=True)
    assert totals(result, "copied", "already_present", "errors") == (60, 0, 0)  # the first attempt's: copied, not present
    assert rig.local.bodies("INBOX") == rig.remote.bodies("INBOX")
    assert sorted(rig.local.filtered) == sorted(rig.local.folders["INBOX"].messages)  # every one once
    assert all(SEEN in flags for flags in rig.remote.flags("INBOX").values())
