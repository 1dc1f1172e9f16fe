"""INBOX retrieval (folders: inbox) with Sieve, LMTP delivery and the remote deletion policies, on real Dovecot."""

from __future__ import annotations

import datetime
import email
import email.policy

import pytest

from harness import mail
from harness.dovecot import DovecotServer

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, sync

from test_engine import local_snapshot, remote_snapshot, run

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
OLD = NOW - datetime.timedelta(days=45)
RECENT = NOW - datetime.timedelta(days=3)

FILE_INVOICES = 'require ["fileinto", "mailbox"];\nif header :contains "subject" "invoice" { fileinto :create "Invoices"; }\n'


def inbox_subjects(server, user, folder="INBOX", password=None, master=True):
    return sorted(m.subject for m in mail.messages(server, user, password, folder, master=master))


def remote_inbox(account):
    return mail.messages(account.remote_server, account.remote_user, account.remote_password, "INBOX")


def test_unseen_only_sieve_files_and_remote_marked_seen(account, tmp_path):
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    account.local_server.install_sieve(account.local_user, FILE_INVOICES)
    seen = [(mail.make_message(f"seen {i}"), (b"\\Seen",), RECENT) for i in range(6)]
    invoices = [(mail.make_message(f"invoice {i}"), (), RECENT) for i in range(3)]
    others = [(mail.make_message(f"hello {i}"), (b"\\Flagged",), RECENT) for i in range(4)]
    mail.seed(srv, user, pw, "INBOX", seen + invoices + others)
    mail.seed(srv, user, pw, "Work", [(mail.make_message("work mail"), (), RECENT)])
    work_before = remote_snapshot(account)["Work"]

    plan = run(account, tmp_path, check_mode=True, task_overrides={"folders": "inbox"}).as_dict()
    assert plan["totals"]["copied"] == 7
    assert all("\\Seen" not in m.flags for m in remote_inbox(account) if not m.subject.startswith("seen"))
    assert local_snapshot(account)["INBOX"] == []

    result = run(account, tmp_path, task_overrides={"folders": "inbox"}).as_dict()
    assert result["status"] == "success" and result["totals"]["copied"] == 7, result
    assert [f["remote"] for f in result["folders"]] == ["INBOX"]
    assert inbox_subjects(account.local_server, account.local_user) == [f"hello {i}" for i in range(4)]
    assert inbox_subjects(account.local_server, account.local_user, "Invoices") == [f"invoice {i}" for i in range(3)]
    local_inbox = mail.messages(account.local_server, account.local_user, None, "INBOX", master=True)
    assert all(m.flags == {"\\Flagged"} for m in local_inbox), "copied unseen, with their other flags"
    assert all("\\Seen" in m.flags for m in remote_inbox(account)) and len(remote_inbox(account)) == 13
    assert remote_snapshot(account)["Work"] == work_before, "other remote folders are untouched"
    assert "Work" not in mail.folders(account.local_server, account.local_user, master=True)

    # A re-run copies nothing; a new unseen message is copied alone; a message moved locally to Trash stays there.
    assert run(account, tmp_path, task_overrides={"folders": "inbox"}).as_dict()["totals"]["copied"] == 0
    with mail.session(account.local_server, account.local_user, master=True) as client:
        client.select_folder("INBOX")
        first = sorted(client.search(["ALL"]))[0]
        client.move([first], "Trash")
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message("late arrival"), (), NOW)])
    again = run(account, tmp_path, task_overrides={"folders": "inbox"}).as_dict()
    assert again["totals"]["copied"] == 1
    assert "late arrival" in inbox_subjects(account.local_server, account.local_user)
    assert len(inbox_subjects(account.local_server, account.local_user, "Trash")) == 1
    assert len(inbox_subjects(account.local_server, account.local_user)) == 4

    # Marking a transferred message unread on the remote does not bring it back.
    mail.remove_flags(srv, user, pw, "INBOX", lambda m: m.subject == "hello 0", [b"\\Seen"])
    unread_again = run(account, tmp_path, task_overrides={"folders": "inbox"}).as_dict()
    assert unread_again["totals"]["copied"] == 0 and unread_again["totals"]["already_present"] == 1
    assert all("\\Seen" in m.flags for m in remote_inbox(account))


def test_without_sieve_messages_stay_in_inbox(account, tmp_path):
    account.local_server.install_sieve(account.local_user, FILE_INVOICES)
    mail.seed(account.remote_server, account.remote_user, account.remote_password, "INBOX",
              [(mail.make_message("invoice 9"), (), RECENT)])
    result = run(account, tmp_path, task_overrides={"folders": "inbox", "sieve": False}).as_dict()
    assert result["totals"]["copied"] == 1
    assert inbox_subjects(account.local_server, account.local_user) == ["invoice 9"]


def test_older_than_deletes_only_transferred_old_messages(account, tmp_path):
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "INBOX", [
        (mail.make_message("old, already read"), (b"\\Seen",), OLD),
        (mail.make_message("old, unread"), (), OLD),
        (mail.make_message("recent, unread"), (), RECENT),
    ])
    overrides = {"folders": "inbox", "delete_remote": "older_than", "delete_remote_days": 30}
    plan = run(account, tmp_path, check_mode=True, task_overrides=overrides).as_dict()
    assert plan["totals"]["copied"] == 2 and plan["totals"]["deleted_remote"] == 1
    assert {m.subject for m in remote_inbox(account)} == {"old, already read", "old, unread", "recent, unread"}
    assert all("\\Seen" not in m.flags for m in remote_inbox(account) if m.subject != "old, already read")

    done = run(account, tmp_path, task_overrides=overrides).as_dict()
    assert done["totals"]["copied"] == 2 and done["totals"]["deleted_remote"] == 1
    assert {m.subject for m in remote_inbox(account)} == {"old, already read", "recent, unread"}, \
        "an old message that was never transferred stays on the remote"

    # after_sync in inbox mode deletes what this run and earlier runs transferred.
    gone = run(account, tmp_path, task_overrides={"folders": "inbox", "delete_remote": "after_sync"}).as_dict()
    assert gone["totals"]["deleted_remote"] == 1
    assert {m.subject for m in remote_inbox(account)} == {"old, already read"}
    assert inbox_subjects(account.local_server, account.local_user) == ["old, unread", "recent, unread"]


@pytest.fixture
def lmtp_server():
    """A local server of its own: the global sieve_before script installed here must not reach other tests."""
    with DovecotServer("local") as server:
        yield server


def test_lmtp_delivery_runs_global_sieve_and_vacation_once(account, lmtp_server, tmp_path):
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    local_user = lmtp_server.add_user("vacationer", "irrelevant")
    lmtp_server.install_sieve_before('require ["fileinto", "mailbox", "copy"];\nfileinto :copy :create "Audit";\n')
    lmtp_server.install_sieve(local_user, 'require ["vacation"];\nvacation :days 1 :subject "Away" "I am away.";\n')
    mail.seed(srv, user, pw, "INBOX", [
        (mail.make_message("please answer", sender="Carol <carol@example.org>",
                           extra_headers={"Return-Path": "<bounces+carol@example.org>"}), (), RECENT),
        (mail.make_message("already read"), (b"\\Seen",), RECENT),
    ])
    task = config.parse_task({
        "local_user": local_user, "remote_user": user, "remote_password": pw, "remote_host": srv.host,
        "remote_port": srv.port, "ca_file": str(srv.cert_path), "folders": "inbox", "delivery": "lmtp",
    })
    target = config.parse_target({
        "host": lmtp_server.host, "port": lmtp_server.port, "ca_file": str(lmtp_server.cert_path),
        "master_password": lmtp_server.master_password, "lmtp_host": lmtp_server.host, "lmtp_port": lmtp_server.lmtp_port,
    })
    state = str(tmp_path / "lmtp.sqlite")
    result = sync.run(task, target, state).as_dict()
    assert result["status"] == "success" and result["totals"]["copied"] == 1, result
    assert inbox_subjects(lmtp_server, local_user) == ["please answer"]
    assert inbox_subjects(lmtp_server, local_user, "Audit") == ["please answer"], "the sieve_before script ran"
    replies = lmtp_server.captured_mail()
    assert len(replies) == 1, replies
    reply = email.message_from_bytes(replies[0], policy=email.policy.default)
    assert reply["Subject"] == "Away" and "bounces+carol@example.org" in reply["To"]
    assert all("\\Seen" in m.flags for m in remote_inbox(account))

    # The same message cannot be retrieved again: not by a re-run, not after it is marked unread remotely.
    assert sync.run(task, target, state).as_dict()["totals"]["copied"] == 0
    mail.remove_flags(srv, user, pw, "INBOX", lambda m: m.subject == "please answer", [b"\\Seen"])
    again = sync.run(task, target, state).as_dict()
    assert again["totals"]["copied"] == 0
    assert inbox_subjects(lmtp_server, local_user) == ["please answer"]
    assert len(lmtp_server.captured_mail()) == 1


def test_without_filter_capability_messages_stay_with_a_notice(account, tmp_path):
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message("invoice 1"), (), RECENT)])
    with DovecotServer("local", sieve=False) as plain:
        local_user = plain.add_user("nofilter", "irrelevant")
        task = config.parse_task({"local_user": local_user, "remote_user": user, "remote_password": pw, "remote_host": srv.host,
                                  "remote_port": srv.port, "ca_file": str(srv.cert_path), "folders": "inbox"})
        target = config.parse_target({"host": plain.host, "port": plain.port, "ca_file": str(plain.cert_path),
                                      "master_password": plain.master_password})
        result = sync.run(task, target, str(tmp_path / "s.sqlite")).as_dict()
        assert result["status"] == "success" and result["totals"]["copied"] == 1
        assert any("FILTER=SIEVE" in notice for notice in result["notices"])
        assert inbox_subjects(plain, local_user) == ["invoice 1"]


def test_lmtp_over_a_unix_socket(account, tmp_path):
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    local = account.local_server
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message("over the socket"), (), RECENT)])
    task = config.parse_task({"local_user": account.local_user, "remote_user": user, "remote_password": pw,
                              "remote_host": srv.host, "remote_port": srv.port, "ca_file": str(srv.cert_path),
                              "folders": "inbox", "delivery": "lmtp"})
    target = config.parse_target({"host": local.host, "port": local.port, "ca_file": str(local.cert_path),
                                  "master_password": local.master_password, "lmtp_host": str(local.lmtp_socket)})
    result = sync.run(task, target, str(tmp_path / "s.sqlite")).as_dict()
    assert result["status"] == "success" and result["totals"]["copied"] == 1, result
    assert inbox_subjects(local, account.local_user) == ["over the socket"]
