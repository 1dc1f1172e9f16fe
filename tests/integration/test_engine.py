"""The builtin engine against real Dovecot servers: exact copies, repeatability, identity, resume, deletion, TLS."""

from __future__ import annotations

import collections
import datetime
import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from harness import mail
from harness.proxy import CuttingProxy

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, folders, plan, sync

TZ = datetime.timezone(datetime.timedelta(hours=2))
D1 = datetime.datetime(2023, 5, 17, 9, 30, 12, tzinfo=TZ)
D2 = datetime.datetime(2024, 1, 2, 23, 59, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))


def task_for(account, state_dir: Path, **overrides):
    data = {
        "local_user": account.local_user,
        "remote_user": account.remote_user,
        "remote_password": account.remote_password,
        "remote_host": account.remote_server.host,
        "remote_port": account.remote_server.port,
        "remote_security": "starttls",
        "ca_file": str(account.remote_server.cert_path),
    }
    data.update(overrides)
    return config.parse_task(data)


def target_for(account, **overrides):
    server = account.local_server
    data = {
        "host": server.host, "port": server.port, "security": "starttls", "ca_file": str(server.cert_path),
        "master_user": server.master_user, "master_password": server.master_password,
    }
    data.update(overrides)
    return config.parse_target(data)


def run(account, state_dir: Path, check_mode: bool = False, task_overrides=None, target_overrides=None):
    task = task_for(account, state_dir, **(task_overrides or {}))
    target = target_for(account, **(target_overrides or {}))
    return sync.run(task, target, str(state_dir / "task.sqlite"), check_mode=check_mode)


def remote_snapshot(account):
    return mail.snapshot(account.remote_server, account.remote_user, account.remote_password)


def local_snapshot(account):
    return mail.snapshot(account.local_server, account.local_user, master=True)


LOCAL_DEFAULTS = ("Drafts", "Junk", "Sent", "Trash")


def expected_local(remote: dict, mapping: dict) -> dict:
    """The local snapshot a correct sync produces from a remote snapshot, given remote -> local names."""
    out = {name: [] for name in LOCAL_DEFAULTS}
    for name, records in remote.items():
        out[mapping.get(name, name)] = records
    return out


def seed_rich(account) -> dict:
    """The issue's cases on the remote; returns remote -> local folder names for the selectable folders."""
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    twin = mail.make_message("Twin copies", date=D1)
    shared_a = mail.make_message("Shared id A", message_id="<same-id@example.org>", date=D1, body="first body\n")
    shared_b = mail.make_message("Shared id B", message_id="<same-id@example.org>", date=D2, body="second, longer body\n")
    no_id = mail.make_message("No Message-ID here", message_id=None, date=D2)
    big = mail.make_message("Twelve megabytes", size=12 * 1024 * 1024, date=D1)
    mail.seed(srv, user, pw, "INBOX", [
        (twin, (b"\\Seen",), D1), (twin, (b"\\Seen",), D1),
        (shared_a, (b"\\Flagged", b"$Forwarded"), D1), (shared_b, (b"Important", b"\\Answered"), D2),
        (no_id, (), D2), (big, (b"\\Seen", b"$Label1"), D1),
    ])
    mail.seed(srv, user, pw, "Sent Items", [(mail.make_message(f"sent {i}", date=D2), (b"\\Seen",), D2) for i in range(3)])
    mail.seed(srv, user, pw, "Releases/v1.2", [(mail.make_message("release notes", date=D1), (b"\\Draft",), D1)])
    mail.seed(srv, user, pw, "Projekte/Ärger & «Öl»/日本", [(mail.make_message("non-ascii folder", date=D1), (), D1)])
    mail.seed(srv, user, pw, "Empty folder", [])
    # A \Noselect parent with a child: with LAYOUT=fs, creating only the child leaves the parent unselectable.
    mail.seed(srv, user, pw, "Ghost/Child", [(mail.make_message("child of a ghost", date=D2), (), D2)], create_parents=False)
    return {
        "INBOX": "INBOX",
        "Sent Items": "Sent",
        "Releases": "Releases",
        "Releases/v1.2": "Releases.v1_2",
        "Projekte": "Projekte",
        "Projekte/Ärger & «Öl»": "Projekte.Ärger & «Öl»",
        "Projekte/Ärger & «Öl»/日本": "Projekte.Ärger & «Öl».日本",
        "Empty folder": "Empty folder",
        "Ghost/Child": "Ghost.Child",
    }


def test_first_run_copies_everything_exactly_once(account, tmp_path):
    mapping = seed_rich(account)
    folders = mail.folders(account.remote_server, account.remote_user, account.remote_password)
    assert not folders["Ghost"].selectable, "the harness should have made a \\Noselect parent"
    remote_before = remote_snapshot(account)

    result = run(account, tmp_path)
    assert result.status == "success", [e["detail"] for e in result.errors]
    assert result.changed

    local = local_snapshot(account)
    expected = expected_local(remote_before, mapping)
    expected.pop("Ghost", None)
    assert local.pop("Ghost", []) == []  # the \Noselect parent may exist locally only as a hierarchy node
    assert local == expected
    assert remote_snapshot(account) == remote_before, "the remote must not change in a plain migration"

    out = result.as_dict()
    total_messages = sum(len(v) for v in remote_before.values())
    assert out["totals"]["copied"] == total_messages
    assert out["totals"]["bytes"] == sum(rec.size for recs in remote_before.values() for rec in recs)
    assert {f["remote"]: f["local"] for f in out["folders"]} == {r: l for r, l in mapping.items() if r in remote_before}
    local_folders = mail.folders(account.local_server, account.local_user, master=True)
    for name in ("Releases.v1_2", "Empty folder", "Projekte.Ärger & «Öl».日本", "Ghost.Child"):
        assert local_folders[name].subscribed, name
    assert "Sent Items" not in local_folders


def test_rerun_new_mail_and_three_way_flags(account, tmp_path):
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message(f"m{i}", date=D1), (), D1) for i in range(6)])
    mail.seed(srv, user, pw, "Work", [(mail.make_message(f"w{i}", date=D2), (b"\\Seen",), D2) for i in range(3)])
    assert run(account, tmp_path).as_dict()["totals"]["copied"] == 9

    again = run(account, tmp_path)
    assert again.as_dict()["totals"] == {"copied": 0, "bytes": 0, "already_present": 0, "flags_updated": 0,
                                         "deleted_remote": 0, "folders_created": 0, "errors": 0}
    assert not again.changed

    # New mail: exactly the new messages are copied.
    fresh = [(mail.make_message(f"new {i}", date=D2), (b"$New",), D2) for i in range(2)]
    mail.seed(srv, user, pw, "Work", fresh)
    newer = run(account, tmp_path).as_dict()
    assert newer["totals"]["copied"] == 2 and newer["totals"]["already_present"] == 0
    assert local_snapshot(account)["Work"] == remote_snapshot(account)["Work"]

    # Three-way: remote adds \Flagged to m0 and removes nothing; locally the user marks m1 read and m0 with a
    # keyword. The remote then also changes m1 (\Answered). Local changes must survive, remote ones arrive.
    def subject_is(*names):
        return lambda info: info.subject in names
    mail.add_flags(srv, user, pw, "INBOX", subject_is("m0"), [b"\\Flagged"])
    mail.add_flags(srv, user, pw, "INBOX", subject_is("m1"), [b"\\Answered"])
    mail.add_flags(account.local_server, account.local_user, None, "INBOX", subject_is("m1"), [b"\\Seen"], master=True)
    mail.add_flags(account.local_server, account.local_user, None, "INBOX", subject_is("m0"), [b"LocalTag"], master=True)
    mail.add_flags(account.local_server, account.local_user, None, "INBOX", subject_is("m2"), [b"\\Flagged"], master=True)
    mail.add_flags(srv, user, pw, "INBOX", subject_is("m2"), [b"\\Seen"])
    mail.remove_flags(srv, user, pw, "INBOX", subject_is("m2"), [b"\\Seen"])  # no net remote change for m2

    flags_run = run(account, tmp_path).as_dict()
    assert flags_run["totals"]["copied"] == 0
    assert flags_run["totals"]["flags_updated"] == 2
    local = {m.subject: m.flags for m in mail.messages(account.local_server, account.local_user, None, "INBOX", master=True)}
    assert local["m0"] == {"\\Flagged", "LocalTag"}
    assert local["m1"] == {"\\Answered", "\\Seen"}
    assert local["m2"] == {"\\Flagged"}, "a flag set only locally survives"
    assert local["m3"] == set()

    # A flag the user removed locally is not brought back when the remote changes something else.
    mail.remove_flags(account.local_server, account.local_user, None, "INBOX", subject_is("m0"), [b"\\Flagged"], master=True)
    mail.add_flags(srv, user, pw, "INBOX", subject_is("m0"), [b"\\Seen"])
    run(account, tmp_path)
    local = {m.subject: m.flags for m in mail.messages(account.local_server, account.local_user, None, "INBOX", master=True)}
    assert local["m0"] == {"\\Seen", "LocalTag"}
    assert not run(account, tmp_path).changed


def test_lost_state_and_half_copied_mailbox_make_no_duplicates(account, tmp_path):
    mapping = seed_rich(account)
    remote_before = remote_snapshot(account)
    # An earlier tool copied part of INBOX (one of the two twins, and the message without Message-ID).
    inbox = mail.messages(account.remote_server, account.remote_user, account.remote_password, "INBOX", with_body=True)
    partial = [m for m in inbox if m.subject in ("Twin copies", "No Message-ID here")][:2]
    assert len(partial) == 2
    mail.seed(account.local_server, account.local_user, None, "INBOX",
              [(m.body, tuple(f.encode() for f in m.flags), m.internaldate) for m in partial], master=True)

    first = run(account, tmp_path / "one").as_dict()
    assert first["totals"]["already_present"] == 2
    expected = expected_local(remote_before, mapping)
    expected.pop("Ghost", None)
    local = local_snapshot(account)
    local.pop("Ghost", None)
    assert local == expected

    # State lost entirely: a new state_dir over the complete copy adopts everything, copies nothing.
    lost = run(account, tmp_path / "two").as_dict()
    assert lost["totals"]["copied"] == 0
    assert lost["totals"]["already_present"] == sum(len(v) for v in remote_before.values())
    local = local_snapshot(account)
    local.pop("Ghost", None)
    assert local == expected
    # ...and the adopted state makes the next run incremental.
    assert not run(account, tmp_path / "two").changed


def _look_alikes(pad: int = 0) -> tuple[bytes, bytes]:
    """Two different messages with the same Message-ID, Date and size (the bodies differ, not their lengths);
    ``pad`` bytes more of body each (messages larger than a literal that is not a message body may be)."""
    filler = ("x" * 76 + "\n") * (pad // 77)
    first = mail.make_message("Look-alike", message_id="<same@example.org>", date=D1, body="body A: the first one\n" + filler)
    second = mail.make_message("Look-alike", message_id="<same@example.org>", date=D1, body="body B: the other one\n" + filler)
    assert first != second and len(first) == len(second)
    return first, second


def small_windows(monkeypatch, size: int) -> None:
    """The planner's windows of UIDs (plan.WINDOW, and plan.COPY_WINDOW without identity matching) at ``size``."""
    monkeypatch.setattr(plan, "WINDOW", size)
    monkeypatch.setattr(plan, "COPY_WINDOW", size)


def _bodies(account) -> list[bytes]:
    infos = mail.messages(account.local_server, account.local_user, None, "INBOX", master=True, with_body=True)
    return sorted(info.body for info in infos)


@pytest.mark.parametrize("window, pad", [(2000, 0), (2, 0), (2000, 5 * 1024 * 1024)],
                         ids=["one window", "look-alikes in different windows", "5 MiB look-alikes"])
def test_look_alikes_deleted_locally_then_lost_state_restores_the_deleted_one_without_duplicate(
        account, tmp_path, monkeypatch, window, pad):
    small_windows(monkeypatch, window)
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    first, second = _look_alikes(pad)
    fillers = [mail.make_message(f"filler {i}", date=D2) for i in range(3)]
    mail.seed(srv, user, pw, "INBOX", [(first, (), D1)] + [(m, (), D2) for m in fillers] + [(second, (), D1)])
    assert run(account, tmp_path / "one").as_dict()["totals"]["copied"] == 5
    # The user deletes the first look-alike locally; then the state is lost.
    infos = mail.messages(account.local_server, account.local_user, None, "INBOX", master=True, with_body=True)
    target = [info.uid for info in infos if info.body == first]
    assert len(target) == 1
    assert mail.delete_messages(account.local_server, account.local_user, None, "INBOX", target, master=True) == target

    lost = run(account, tmp_path / "two").as_dict()

    assert lost["status"] == "success", lost
    assert lost["totals"]["copied"] == 1 and lost["totals"]["already_present"] == 4, lost["totals"]
    assert _bodies(account) == sorted([first, second] + fillers)  # the deleted one is back, nothing doubled
    assert not run(account, tmp_path / "two").changed


@pytest.mark.parametrize("window", [2000, 1], ids=["one window", "a window each"])
def test_true_twins_still_match_by_multiplicity(account, tmp_path, monkeypatch, window):
    small_windows(monkeypatch, window)
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    twin = mail.make_message("True twin", date=D1)
    first, second = _look_alikes()
    mail.seed(srv, user, pw, "INBOX", [(twin, (), D1)] * 3 + [(first, (), D1), (second, (), D1)])
    # Locally: two of the three twins and the second look-alike (an earlier tool's partial copy).
    mail.seed(account.local_server, account.local_user, None, "INBOX", [(twin, (), D1)] * 2 + [(second, (), D1)], master=True)

    result = run(account, tmp_path).as_dict()

    assert result["totals"]["copied"] == 2 and result["totals"]["already_present"] == 3, result["totals"]
    assert _bodies(account) == sorted([twin] * 3 + [first, second])
    assert not run(account, tmp_path / "lost").changed


def test_check_mode_plans_exactly_and_writes_nothing(account, tmp_path):
    mapping = seed_rich(account)
    remote_before = remote_snapshot(account)
    local_before = local_snapshot(account)
    local_folders_before = mail.folders(account.local_server, account.local_user, master=True)

    plan = run(account, tmp_path / "state", check_mode=True).as_dict()
    assert plan["check_mode"] is True and plan["status"] == "success"
    assert not (tmp_path / "state").exists(), "check mode must not create the state directory"
    assert local_snapshot(account) == local_before
    assert mail.folders(account.local_server, account.local_user, master=True) == local_folders_before
    assert remote_snapshot(account) == remote_before

    real = run(account, tmp_path / "state").as_dict()
    for key in ("copied", "bytes", "already_present", "folders_created"):
        assert plan["totals"][key] == real["totals"][key], key
    assert [(f["remote"], f["local"], f["created"], f["copied"]) for f in plan["folders"]] == \
        [(f["remote"], f["local"], f["created"], f["copied"]) for f in real["folders"]]
    assert plan["totals"]["folders_created"] == len([n for n in mapping.values() if n not in ("INBOX", "Sent")])

    # Check mode after changes: plans the new mail and the flag change, applies neither.
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX", [(mail.make_message("late", date=D2), (), D2)])
    mail.add_flags(account.remote_server, account.remote_user, account.remote_password, "Sent Items", None, [b"\\Flagged"])
    local_before = local_snapshot(account)
    plan2 = run(account, tmp_path / "state", check_mode=True).as_dict()
    assert plan2["totals"]["copied"] == 1 and plan2["totals"]["flags_updated"] == 3
    assert local_snapshot(account) == local_before
    real2 = run(account, tmp_path / "state").as_dict()
    assert real2["totals"]["copied"] == 1 and real2["totals"]["flags_updated"] == 3


@pytest.mark.parametrize("side", ["remote", "local"])
def test_connection_cut_mid_run_resumes_without_loss_or_duplicate(account, tmp_path, side):
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    msgs = [(mail.make_message(f"bulk {i}", size=40_000 + i, date=D1), (), D1) for i in range(120)]
    mail.seed(srv, user, pw, "INBOX", msgs[:60])
    mail.seed(srv, user, pw, "Archive/2023", msgs[60:])
    server = srv if side == "remote" else account.local_server
    with CuttingProxy(server.host, server.port) as proxy:
        # Cut after ~2 MB have crossed: in the middle of the transfer (4.8 MB in all).
        proxy.cut_after(2_000_000, "s2c" if side == "remote" else "c2s")
        if side == "remote":
            overrides = ({"remote_port": proxy.port}, None)
        else:
            overrides = (None, {"port": proxy.port})
        result = run(account, tmp_path, task_overrides=overrides[0], target_overrides=overrides[1])
        assert proxy.wait_cut(0), "the proxy never cut the connection: the test proved nothing"
    assert result.status == "success", [e["detail"] for e in result.errors]
    remote = remote_snapshot(account)
    local = local_snapshot(account)
    assert local["INBOX"] == remote["INBOX"]
    assert local["Archive.2023"] == remote["Archive/2023"]
    # And a re-run adds nothing.
    again = run(account, tmp_path).as_dict()
    assert again["totals"]["copied"] == 0
    assert local_snapshot(account) == local


def test_interrupted_run_then_rerun(account, tmp_path, monkeypatch):
    """A run that gives up (the remote keeps dropping) leaves a checkpoint; the next run completes it exactly."""
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message(f"x {i}", size=300_000, date=D1), (), D1) for i in range(40)])
    monkeypatch.setattr(sync, "MAX_RECONNECTS", 0)
    with CuttingProxy(srv.host, srv.port) as proxy:
        proxy.cut_after(6_000_000, "s2c")
        failed = run(account, tmp_path, task_overrides={"remote_port": proxy.port}).as_dict()
        assert proxy.wait_cut(0)
    assert failed["status"] == "failed" and failed["errors"][0]["kind"] == "connection_lost"
    copied_before = len(local_snapshot(account)["INBOX"])
    assert 0 < copied_before < 40, copied_before
    monkeypatch.undo()
    resumed = run(account, tmp_path).as_dict()
    assert resumed["totals"]["copied"] == 40 - copied_before
    assert local_snapshot(account)["INBOX"] == remote_snapshot(account)["INBOX"]


def test_after_sync_deletes_exactly_what_is_confirmed(account, tmp_path):
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message(f"d{i}", date=D1), (), D1) for i in range(5)])
    mail.seed(srv, user, pw, "Folder", [(mail.make_message(f"f{i}", date=D2), (b"\\Seen",), D2) for i in range(3)])
    remote_before = remote_snapshot(account)

    plan = run(account, tmp_path, check_mode=True, task_overrides={"delete_remote": "after_sync"}).as_dict()
    assert plan["totals"]["deleted_remote"] == 8
    assert remote_snapshot(account) == remote_before

    done = run(account, tmp_path, task_overrides={"delete_remote": "after_sync"}).as_dict()
    assert done["totals"]["copied"] == 8 and done["totals"]["deleted_remote"] == 8
    assert remote_snapshot(account) == {"INBOX": [], "Folder": [], "Sent Items": []}
    local = local_snapshot(account)
    assert local["INBOX"] == remote_before["INBOX"] and local["Folder"] == remote_before["Folder"]

    # New mail is copied first, then deleted: the remote is emptied again, the local side has everything.
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message("later", date=D2), (), D2)])
    again = run(account, tmp_path, task_overrides={"delete_remote": "after_sync"}).as_dict()
    assert again["totals"]["copied"] == 1 and again["totals"]["deleted_remote"] == 1
    assert len(local_snapshot(account)["INBOX"]) == 6


def test_refused_message_is_recorded_and_the_run_goes_on(account, tmp_path):
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    small = [(mail.make_message(f"ok {i}", date=D1), (), D1) for i in range(3)]
    too_big = mail.make_message("too big", size=3 * 1024 * 1024, message_id="<too-big@example.org>", date=D1)
    mail.seed(srv, user, pw, "INBOX", small[:2] + [(too_big, (), D1)] + small[2:])
    account.local_server.set_user_quota(account.local_user, "1M")
    result = run(account, tmp_path).as_dict()
    assert result["status"] == "partial"
    assert result["totals"]["copied"] == 3 and result["totals"]["errors"] == 1
    (error,) = result["errors"]
    assert error["folder"] == "INBOX" and error["message_id"] == "<too-big@example.org>" and error["uid"] == 3
    assert error["kind"] == "append_refused" and "quota" in error["detail"].lower()
    # Once the quota allows it, the next run copies the refused message and only it.
    account.local_server.set_user_quota(account.local_user, None)
    retry = run(account, tmp_path).as_dict()
    assert retry["status"] == "success" and retry["totals"]["copied"] == 1
    assert local_snapshot(account)["INBOX"] == remote_snapshot(account)["INBOX"]


def test_a_refusal_inside_a_multiappend_of_many_batches_fails_only_the_refused_message(account, tmp_path):
    """Dovecot (LITERAL+) takes a transfer's batches in one MULTIAPPEND; the quota refuses one message in the middle:
    the whole command stores nothing, its messages are appended again a batch at a time, the one refused alone fails."""
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    small = [(mail.make_message(f"small {i}", body="x" * 2000, date=D1), (), D1) for i in range(200)]
    too_big = mail.make_message("too big", size=2 * 1024 * 1024, message_id="<too-big-mid@example.org>", date=D1)
    mail.seed(srv, user, pw, "INBOX", small[:90] + [(too_big, (), D1)] + small[90:])
    account.local_server.set_user_quota(account.local_user, "1M")
    result = run(account, tmp_path).as_dict()
    assert result["status"] == "partial" and result["totals"]["copied"] == 200 and result["totals"]["errors"] == 1
    (error,) = result["errors"]
    assert error["kind"] == "append_refused" and error["uid"] == 91 and error["message_id"] == "<too-big-mid@example.org>"
    big = hashlib.sha256(too_big).hexdigest()
    assert local_snapshot(account)["INBOX"] == [m for m in remote_snapshot(account)["INBOX"] if m.sha256 != big]  # once each
    account.local_server.set_user_quota(account.local_user, None)
    retry = run(account, tmp_path).as_dict()
    assert retry["status"] == "success" and retry["totals"]["copied"] == 1
    assert local_snapshot(account)["INBOX"] == remote_snapshot(account)["INBOX"]


def test_a_refusal_text_with_control_characters_is_escaped(account, tmp_path):
    """The server's words in an error (here the local server's, rewritten on the way) reach no log or terminal raw."""
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message("too big", size=2 * 1024 * 1024, date=D1), (), D1)])
    account.local_server.set_user_quota(account.local_user, "1M")
    local = account.local_server
    with CuttingProxy(local.host, local.port) as proxy:
        proxy.rewrite(rb"(?i)quota", b"Quota\x1b[2J\xc2\x85status success", count=4)
        result = run(account, tmp_path, target_overrides={"host": proxy.host, "port": proxy.port, "security": "none"})
    (error,) = result.errors
    assert error["kind"] == "append_refused" and "Quota\\x1b[2J\\x85status success" in error["detail"], error
    assert "\x1b" not in error["detail"] and "\x85" not in error["detail"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("overrides,kind,phrase", [
    ({}, "tls_failed", "could not be verified"),
    ({"remote_security": "ssl"}, "tls_failed", "could not be verified"),
])
def test_self_signed_certificate_refused_by_default(account, tmp_path, overrides, kind, phrase):
    overrides = dict(overrides, ca_file=None)
    if overrides.get("remote_security") == "ssl":
        overrides["remote_port"] = account.remote_server.ssl_port
    result = run(account, tmp_path, task_overrides=overrides).as_dict()
    assert result["status"] == "failed"
    (error,) = result["errors"]
    assert error["kind"] == kind and phrase in error["detail"] and "remote" in error["detail"]


@pytest.mark.parametrize("overrides", [
    {"remote_security": "ssl"},  # with ca_file
    {"validate_certs": False, "ca_file": None},
    {"remote_security": "ssl", "validate_certs": False, "ca_file": None},
])
def test_certificate_accepted_with_ca_file_or_validate_certs_false(account, tmp_path, overrides):
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX", [(mail.make_message("hi"), (), D1)])
    if overrides.get("remote_security") == "ssl":
        overrides = dict(overrides, remote_port=account.remote_server.ssl_port)
    result = run(account, tmp_path, task_overrides=overrides).as_dict()
    assert result["status"] == "success" and result["totals"]["copied"] == 1


def test_wrong_password_closed_port_and_no_starttls(account, tmp_path):
    wrong = run(account, tmp_path, task_overrides={"remote_password": "not-the-password"}).as_dict()
    assert wrong["status"] == "failed"
    assert wrong["errors"][0]["kind"] == "auth_failed" and "remote server" in wrong["errors"][0]["detail"]
    assert "not-the-password" not in repr(wrong)

    wrong_local = run(account, tmp_path, target_overrides={"master_password": "nope"}).as_dict()
    assert wrong_local["errors"][0]["kind"] == "auth_failed" and "local server" in wrong_local["errors"][0]["detail"]

    closed = run(account, tmp_path, task_overrides={"remote_port": _free_port()}).as_dict()
    assert closed["status"] == "failed" and closed["errors"][0]["kind"] == "connect_failed"
    assert "remote server" in closed["errors"][0]["detail"]
    assert not local_snapshot(account)["INBOX"]


def test_starttls_unsupported_is_an_error_never_a_fallback(tmp_path, local_server):
    from harness.dovecot import DovecotServer
    with DovecotServer("remote", starttls=False) as plain:
        user = plain.add_user("plainuser", "secret")
        local_user = local_server.add_user("lplain", "x")
        task = config.parse_task({"local_user": local_user, "remote_user": user, "remote_password": "secret",
                                  "remote_host": plain.host, "remote_port": plain.port})
        target = config.parse_target({"host": local_server.host, "port": local_server.port, "ca_file": str(local_server.cert_path),
                                      "master_password": local_server.master_password})
        result = sync.run(task, target, str(tmp_path / "s.sqlite")).as_dict()
        assert result["status"] == "failed" and result["errors"][0]["kind"] == "starttls_unsupported"
        none = sync.run(config.parse_task({"local_user": local_user, "remote_user": user, "remote_password": "secret",
                                           "remote_host": plain.host, "remote_port": plain.port, "remote_security": "none"}),
                        target, str(tmp_path / "s.sqlite")).as_dict()
        assert none["status"] == "success"


def test_state_files_hold_no_password_and_are_private(account, tmp_path):
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX", [(mail.make_message("s"), (), D1)])
    run(account, tmp_path / "st")
    files = [p for p in (tmp_path / "st").rglob("*") if p.is_file()]
    assert files
    secrets = [account.remote_password, account.local_server.master_password]
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode("utf-8") not in data, path
        assert (path.stat().st_mode & 0o077) == 0, oct(path.stat().st_mode)
    assert (os.stat(tmp_path / "st").st_mode & 0o077) == 0


def test_exclude_and_all_except(account, tmp_path):
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    for name in ("Keep", "Spam-old", "Archive/2020", "Archive/2021"):
        mail.seed(srv, user, pw, name, [(mail.make_message(f"in {name}"), (), D1)])
    result = run(account, tmp_path, task_overrides={"folders": "all_except", "exclude": ["^Spam", "", "2020$"]}).as_dict()
    synced = sorted(f["remote"] for f in result["folders"])
    assert synced == ["Archive", "Archive/2021", "INBOX", "Keep", "Sent Items"]
    names = collections.Counter(mail.folders(account.local_server, account.local_user, master=True))
    assert "Spam-old" not in names and "Archive.2020" not in names and "Archive.2021" in names


def test_a_slow_exclude_pattern_fails_the_run_within_its_bound_also_in_a_thread(account, tmp_path, monkeypatch):
    """'.*.*.*.*.*!' passes the definition check (no nested repeat) but backtracks for minutes on a long name: the
    run's matching is bounded (shrunk here), in a thread as bulk runs use, and the task's lock is free afterwards."""
    monkeypatch.setattr(folders, "EXCLUDE_TIMEOUT_S", 1.0, raising=False)
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "a" * 200, [(mail.make_message("under a long name"), (), D1)])
    slow = ".*.*.*.*.*!"
    task = task_for(account, tmp_path, folders="all_except", exclude=["^Spam", slow])
    results: list = []
    began = time.monotonic()
    worker = threading.Thread(target=lambda: results.append(sync.run(task, target_for(account), str(tmp_path / "task.sqlite"))),
                              daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the exclude matching was not bounded"
    assert time.monotonic() - began < 15
    result = results[0].as_dict()
    assert result["status"] == "failed" and [e["kind"] for e in result["errors"]] == ["invalid_definition"], result
    assert f"exclude: the pattern {slow!r} did not finish" in result["errors"][0]["detail"]
    assert mail.folders(account.local_server, account.local_user, master=True).get("a" * 200) is None

    again = run(account, tmp_path, task_overrides={"folders": "all_except", "exclude": ["^Spam"]}).as_dict()
    assert again["status"] == "success" and again["totals"]["copied"] == 1, again


def test_appended_but_not_checkpointed_is_not_appended_again(account, tmp_path):
    """A crash after the local server stored a batch but before the checkpoint: the state is older than the mailbox."""
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message(f"old {i}", date=D1), (), D1) for i in range(5)])
    run(account, tmp_path)
    checkpoint = (tmp_path / "task.sqlite").read_bytes()
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message(f"new {i}", date=D2), (), D2) for i in range(4)])
    # A message delivered locally meanwhile (not from the remote) must not be mistaken for a copy either.
    mail.seed(account.local_server, account.local_user, None, "INBOX", [(mail.make_message("local only"), (), D2)], master=True)
    assert run(account, tmp_path).as_dict()["totals"]["copied"] == 4
    (tmp_path / "task.sqlite").write_bytes(checkpoint)  # back to the state before the last batch

    resumed = run(account, tmp_path).as_dict()
    assert resumed["totals"]["copied"] == 0 and resumed["totals"]["already_present"] == 4
    local = local_snapshot(account)["INBOX"]
    assert len(local) == 10
    remote = remote_snapshot(account)["INBOX"]
    assert all(rec in local for rec in remote)
    assert not run(account, tmp_path).changed


def test_small_windows_over_sparse_uids(account, tmp_path, monkeypatch):
    """Folders are processed a window of UIDs at a time; with tiny windows and gaps in the UIDs nothing is missed."""
    small_windows(monkeypatch, 3)
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    uids = mail.seed(srv, user, pw, "INBOX", [(mail.make_message(f"w{i}", date=D1), (), D1) for i in range(40)])
    mail.delete_messages(srv, user, pw, "INBOX", [u for u in uids if u % 3 == 0 or 10 < u < 25])
    remaining = len(remote_snapshot(account)["INBOX"])
    first = run(account, tmp_path / "a").as_dict()
    assert first["totals"]["copied"] == remaining
    assert local_snapshot(account)["INBOX"] == remote_snapshot(account)["INBOX"]
    adopted = run(account, tmp_path / "b").as_dict()  # lost state: windows on both sides, all adopted
    assert adopted["totals"]["already_present"] == remaining and adopted["totals"]["copied"] == 0
    mail.add_flags(srv, user, pw, "INBOX", None, [b"\\Flagged"])
    flagged = run(account, tmp_path / "b").as_dict()
    assert flagged["totals"]["flags_updated"] == remaining
    plan = run(account, tmp_path / "b", check_mode=True, task_overrides={"delete_remote": "after_sync"}).as_dict()
    assert plan["totals"]["deleted_remote"] == remaining
    gone = run(account, tmp_path / "b", task_overrides={"delete_remote": "after_sync"}).as_dict()
    assert gone["totals"]["deleted_remote"] == remaining
    assert remote_snapshot(account)["INBOX"] == []
    assert len(local_snapshot(account)["INBOX"]) == remaining


def test_an_internal_error_is_a_failed_result_not_a_traceback(account, tmp_path, monkeypatch):
    def broken(self):
        raise KeyError("unexpected")
    monkeypatch.setattr(sync.Syncer, "_folders", broken)
    lines = []
    task = task_for(account, tmp_path)
    result = sync.run(task, target_for(account), str(tmp_path / "s.sqlite"), log=lines.append).as_dict()
    assert result["status"] == "failed" and result["errors"][0]["kind"] == "internal_error"
    assert "KeyError" in result["errors"][0]["detail"] and "Traceback" in "\n".join(lines)
