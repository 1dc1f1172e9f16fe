"""Fast self-tests of the integration harness (Dovecot servers, seeding/snapshots, cutting proxy, reaper)."""

from __future__ import annotations

import hashlib
import json
import smtplib
import socket
import ssl
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from harness import mail
from harness.dovecot import DovecotServer
from harness.proxy import CuttingProxy

WHEN = datetime(2023, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))


def _caps(client: IMAPClient) -> set[bytes]:
    return set(client.capabilities())


def test_remote_starttls_with_certificate_as_ca(account):
    server = account.remote_server
    client = IMAPClient(server.host, server.port, ssl=False, timeout=30)
    try:
        assert b"STARTTLS" in _caps(client)
        context = ssl.create_default_context(cafile=str(server.cert_path))
        client.starttls(context)
        client.plain_login(account.remote_user, account.remote_password)
        assert {b"UIDPLUS", b"MULTIAPPEND", b"CONDSTORE", b"SPECIAL-USE"} <= _caps(client)
    finally:
        client.logout()


def test_remote_certificate_names(remote_server):
    for name in ("127.0.0.1", "localhost"):
        with socket.create_connection((remote_server.host, remote_server.ssl_port), timeout=10) as raw:
            with remote_server.ssl_context().wrap_socket(raw, server_hostname=name) as tls:
                assert tls.recv(64).startswith(b"* OK")
    with socket.create_connection((remote_server.host, remote_server.ssl_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_remote_imaps_login(account):
    with mail.session(account.remote_server, account.remote_user, account.remote_password, security="ssl") as client:
        assert client.list_folders()


def test_non_ascii_password_plain_and_login(account):
    server = account.remote_server
    assert not account.remote_password.isascii()
    for method in ("plain", "login"):
        with mail.session(server, account.remote_user, account.remote_password, method=method) as client:
            client.select_folder("INBOX")
    with pytest.raises(LoginError):
        mail.login(server, account.remote_user, account.remote_password + "-wrong")


def test_user_added_while_running_is_accepted(remote_server):
    name = remote_server.add_user(f"late-{id(remote_server) % 10000}", "s\u00e9cret")
    try:
        with mail.session(remote_server, name, "s\u00e9cret") as client:
            assert client.folder_exists("INBOX")
    finally:
        remote_server.remove_user(name)
    with pytest.raises(LoginError):
        mail.login(remote_server, name, "s\u00e9cret")


def test_starttls_can_be_disabled():
    with DovecotServer("remote", starttls=False) as server:
        assert server.ssl_port is None and server.cert_path is None
        server.add_user("plainuser", "pw")
        client = IMAPClient(server.host, server.port, ssl=False, timeout=30)
        try:
            assert b"STARTTLS" not in _caps(client)
            client.login("plainuser", "pw")
        finally:
            client.logout()


def test_mail_fsync_default_or_never(account):
    """Test servers skip fsync (mail_fsync = never); mail_fsync=None keeps Dovecot's default, which the bench's disk
    variant measures (tests/bench/bench.py), and such a server stores and serves mail alike."""
    assert account.local_server.doveadm("config", "-h", "mail_fsync").stdout.strip() == "never"
    with DovecotServer("local", mail_fsync=None) as server:
        assert server.doveadm("config", "-h", "mail_fsync").stdout.strip() == "optimized"
        server.add_user("fsyncuser", "pw")
        mail.seed(server, "fsyncuser", "pw", "INBOX", [(mail.make_message("kept"), (b"\\Seen",), WHEN)])
        [record] = mail.snapshot(server, "fsyncuser", "pw")["INBOX"]
        assert record.flags == frozenset({"\\Seen"})
    with pytest.raises(ValueError):
        DovecotServer("local", mail_fsync="sometimes")


def test_local_master_login_both_ways(account):
    server = account.local_server
    assert server.master_user == "vmail" and not server.master_password.isascii()
    for method in ("plain", "login"):
        with mail.session(server, account.local_user, master=True, method=method, security="starttls") as client:
            client.select_folder("INBOX")
            assert b"FILTER=SIEVE" in _caps(client)
    with mail.session(server, account.local_user, account.local_password) as client:
        assert client.folder_exists("Sent")
    with pytest.raises(LoginError):
        mail.login(server, "no-such-user", master=True)


def test_list_separators_and_special_use(account):
    remote = mail.folders(account.remote_server, account.remote_user, account.remote_password)
    assert remote["Sent Items"].delimiter == "/"
    assert "\\Sent" in remote["Sent Items"].flags and remote["Sent Items"].subscribed
    assert "Trash" not in remote and "Drafts" not in remote
    with mail.session(account.remote_server, account.remote_user, account.remote_password) as client:
        client.create_folder("Trash")
    assert "\\Trash" in mail.folders(account.remote_server, account.remote_user, account.remote_password)["Trash"].flags

    local = mail.folders(account.local_server, account.local_user, master=True)
    for name in ("Sent", "Trash", "Junk", "Drafts"):
        assert local[name].delimiter == "."
        assert f"\\{name}" in local[name].flags
        assert local[name].subscribed


def test_make_message():
    plain = mail.make_message("Hello", "line one\nline two\n")
    assert b"\r\nMessage-ID: <" in plain and b"\n" not in plain.replace(b"\r\n", b"")
    assert plain == mail.make_message("Hello", "line one\nline two\n")
    assert b"Message-ID" not in mail.make_message("Hello", message_id=None)
    assert b"Message-ID: <x@y>\r\n" in mail.make_message("Hello", message_id="x@y")
    for size in (2000, 2001, 2002, 2003, 4096):
        padded = mail.make_message("Padded", size=size)
        assert len(padded) == size and padded.endswith(b"\r\n") and b"\r\r" not in padded
        assert b"\n" not in padded.replace(b"\r\n", b"")
    big = mail.make_message("Big", size=12 * 1024 * 1024)
    assert len(big) == 12 * 1024 * 1024
    assert max(len(line) for line in big.split(b"\r\n")) < 998
    assert mail.make_message("Gr\u00fc\u00dfe").count(b"=?utf-8?") == 1


def test_seed_snapshot_round_trip(account):
    msgs = [
        (mail.make_message("one"), (), WHEN),
        (mail.make_message("two", message_id=None), ("\\Seen", "$Forwarded"), WHEN + timedelta(days=1)),
        (mail.make_message("three", "k\u00f6rper\n"), ("\\Flagged", "\\Answered", "Important"), WHEN - timedelta(days=400)),
    ]
    remote = account.remote_server
    uids = mail.seed(remote, account.remote_user, account.remote_password, "Archive/2023/Q\u00e9", msgs)
    assert len(uids) == 3
    mail.seed(remote, account.remote_user, account.remote_password, "INBOX", [msgs[0]])
    snap = mail.snapshot(remote, account.remote_user, account.remote_password)
    assert set(snap) == {"INBOX", "Sent Items", "Archive", "Archive/2023", "Archive/2023/Q\u00e9"}
    assert snap["Sent Items"] == [] and snap["Archive"] == []
    expected = sorted(
        (
            mail.MessageRecord(hashlib.sha256(raw).hexdigest(), frozenset(flags), date.astimezone(timezone.utc).isoformat(), len(raw))
            for raw, flags, date in msgs
        ),
        key=lambda rec: (rec.sha256, sorted(rec.flags), rec.internaldate, rec.size),
    )
    assert snap["Archive/2023/Q\u00e9"] == expected
    assert snap["INBOX"] == [expected[[rec.sha256 for rec in expected].index(hashlib.sha256(msgs[0][0]).hexdigest())]]
    listed = mail.folders(remote, account.remote_user, account.remote_password)
    assert all(info.subscribed for name, info in listed.items() if name != "INBOX")

    local = account.local_server
    mail.seed(local, account.local_user, None, "Archive.2023.Q\u00e9", msgs, master=True)
    local_snap = mail.snapshot(local, account.local_user)
    assert local_snap["Archive.2023.Q\u00e9"] == expected
    assert {"Sent", "Trash", "Junk", "Drafts", "INBOX"} <= set(local_snap)


def test_large_message_round_trip(account):
    raw = mail.make_message("huge", size=12 * 1024 * 1024)
    mail.seed(account.local_server, account.local_user, None, "INBOX", [(raw, ("\\Seen",), WHEN)])
    (record,) = mail.snapshot(account.local_server, account.local_user)["INBOX"]
    assert record.size == len(raw) and record.sha256 == hashlib.sha256(raw).hexdigest()


def test_flag_helpers(account):
    server, user, password = account.remote_server, account.remote_user, account.remote_password
    mail.seed(server, user, password, "INBOX", [mail.make_message(f"m{index}") for index in range(5)])
    assert mail.add_flags(server, user, password, "INBOX", lambda msg: msg.subject in ("m1", "m3"), ["\\Seen", "Important"]) == [2, 4]
    assert mail.remove_flags(server, user, password, "INBOX", 4, ["Important"]) == [4]
    assert mail.set_flags(server, user, password, "INBOX", [5, 99], ["$Forwarded"]) == [5]
    flags = {msg.subject: msg.flags for msg in mail.messages(server, user, password, "INBOX")}
    assert flags == {
        "m0": frozenset(), "m1": {"\\Seen", "Important"}, "m2": frozenset(), "m3": {"\\Seen"}, "m4": {"$Forwarded"},
    }
    assert mail.delete_messages(server, user, password, "INBOX", lambda msg: msg.subject == "m0") == [1]
    assert [msg.uid for msg in mail.messages(server, user, password, "INBOX")] == [2, 3, 4, 5]


def test_doveadm_helper(account):
    mail.seed(account.local_server, account.local_user, None, "INBOX", [mail.make_message("counted")])
    result = account.local_server.doveadm("mailbox", "status", "-u", account.local_user, "messages", "INBOX")
    assert result.stdout.split() == ["INBOX", "messages=1"]


def test_lmtp_delivery_runs_sieve(account):
    server = account.local_server
    server.install_sieve(account.local_user, 'require ["fileinto"];\nif header :contains "subject" "junk" { fileinto "Junk"; }\n')
    with smtplib.LMTP(server.host, server.lmtp_port, timeout=30) as lmtp:
        for subject in ("hello", "some junk"):
            lmtp.sendmail("sender@remote.example", [account.local_user], mail.make_message(subject))
    snap = mail.snapshot(server, account.local_user)
    assert len(snap["INBOX"]) == 1 and len(snap["Junk"]) == 1


def test_proxy_cuts_mid_transfer_then_forwards(account):
    server, user, password = account.remote_server, account.remote_user, account.remote_password
    mail.seed(server, user, password, "INBOX", [mail.make_message("big", size=2 * 1024 * 1024)])
    with CuttingProxy(server.host, server.port) as proxy:
        client = IMAPClient(proxy.host, proxy.port, ssl=False, timeout=30)
        client.plain_login(user, password)
        client.select_folder("INBOX")
        proxy.cut_after(100_000)
        with pytest.raises((IMAPClientError, OSError)):
            client.fetch([1], [b"BODY.PEEK[]"])
        assert proxy.wait_cut(5) and proxy.cuts == 1
        assert proxy.active_connections == 0
        with pytest.raises((IMAPClientError, OSError)):
            client.noop()
        with mail.session(proxy, user, password) as fresh:
            fresh.select_folder("INBOX")
            data = fresh.fetch([1], [b"RFC822.SIZE", b"BODY.PEEK[]"])[1]
            assert len(data[b"BODY[]"]) == data[b"RFC822.SIZE"] == 2 * 1024 * 1024
        assert proxy.cuts == 1 and proxy.bytes_s2c > 2 * 1024 * 1024


def test_proxy_cut_client_to_server(account):
    server, user, password = account.remote_server, account.remote_user, account.remote_password
    with CuttingProxy(server.host, server.port) as proxy:
        with mail.session(proxy, user, password) as client:
            proxy.cut_after(50_000, "c2s")
            with pytest.raises((IMAPClientError, OSError)):
                client.append("INBOX", mail.make_message("upload", size=500_000))
        assert proxy.wait_cut(5)
    assert mail.snapshot(server, user, password)["INBOX"] == []


def test_reaper_names_only_what_its_command_left_running(tmp_path):
    """harness/reaper.py (test_demo.py's check that the demo leaves nothing running) sees a process in a session of
    its own and one whose parent exited, not a process started before it, and kills what it names."""
    reaper = Path(__file__).resolve().parent / "harness" / "reaper.py"
    report = tmp_path / "left.json"
    with subprocess.Popen(["sleep", "60"]) as bystander:
        try:
            proc = subprocess.run([sys.executable, str(reaper), str(report), "sh", "-c",
                                   'setsid sleep 61 & (sleep 62 & exit 0); exit 3'], timeout=30, check=False)
            assert proc.returncode == 3, "the command's exit status"
            left = json.loads(report.read_text(encoding="utf-8"))
            assert sorted(left.values()) == ["sleep 61", "sleep 62"]
            for pid in left:
                assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
            assert bystander.poll() is None
            subprocess.run([sys.executable, str(reaper), str(report), "true"], timeout=30, check=True)
            assert json.loads(report.read_text(encoding="utf-8")) == {}
        finally:
            bystander.kill()
