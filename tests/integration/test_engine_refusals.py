"""Refusals and lost answers against real Dovecot: a CREATE whose OK was lost, a server at its connection limit,
the RFC 5530 response codes of a refused login."""

from __future__ import annotations

import datetime
import json
import os
import subprocess

import pytest

from conftest import Account, unique_name
from harness import mail
from harness.dovecot import DovecotServer
from harness.proxy import CuttingProxy

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, runner, store as store_mod, sync

D1 = datetime.datetime(2023, 5, 17, 9, 30, 12, tzinfo=datetime.timezone.utc)
FAST_BACKOFF = (0.05, 0.1, 0.1, 0.1, 0.1)


def task_for(account: Account, **overrides):
    data = {
        "local_user": account.local_user, "remote_user": account.remote_user, "remote_password": account.remote_password,
        "remote_host": account.remote_server.host, "remote_port": account.remote_server.port,
        "remote_security": "starttls", "ca_file": str(account.remote_server.cert_path),
    }
    data.update(overrides)
    return config.parse_task(data)


def target_for(account: Account, **overrides):
    server = account.local_server
    data = {"host": server.host, "port": server.port, "security": "starttls", "ca_file": str(server.cert_path),
            "master_user": server.master_user, "master_password": server.master_password}
    data.update(overrides)
    return config.parse_target(data)


# -- a CREATE whose OK was lost ------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["ALREADYEXISTS", "no response code"])
def test_folder_created_before_a_cut_is_synced_in_the_same_run(account, tmp_path, monkeypatch, answer):
    """The local server created the folder, the connection broke before its OK: the second CREATE after the reconnect
    is refused (NO [ALREADYEXISTS], or a bare NO from a server without RFC 5530 codes), and the folder is synced all
    the same, subscribed, every message once."""
    monkeypatch.setattr(sync, "BACKOFF_S", FAST_BACKOFF)
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message(f"inbox {i}", date=D1), (), D1) for i in range(2)])
    mail.seed(srv, user, pw, "Projects", [(mail.make_message(f"project {i}", date=D1), (), D1) for i in range(3)])
    local = account.local_server
    with CuttingProxy(local.host, local.port) as proxy:
        # Plain text between the engine and the proxy, so that the proxy can see the answer to the CREATE.
        proxy.cut_on(rb"\S+ OK Create completed")
        if answer != "ALREADYEXISTS":
            proxy.rewrite(rb"NO \[ALREADYEXISTS\] ", b"NO ")
        result = sync.run(task_for(account), target_for(account, port=proxy.port, security="none"),
                          str(tmp_path / "task.sqlite")).as_dict()
        assert proxy.wait_cut(0), "the proxy never cut the connection: the test proved nothing"
        assert answer == "ALREADYEXISTS" or proxy.rewritten == 1
    assert result["status"] == "success", result["errors"]
    assert result["totals"]["folders_created"] == 1 and result["totals"]["copied"] == 5
    folders = mail.folders(local, account.local_user, master=True)
    assert folders["Projects"].selectable and folders["Projects"].subscribed
    remote = mail.snapshot(srv, user, pw)
    mine = mail.snapshot(local, account.local_user, master=True)
    assert mine["Projects"] == remote["Projects"] and mine["INBOX"] == remote["INBOX"]


def test_a_create_refused_for_real_still_fails_the_folder(account, tmp_path):
    """A NO without ALREADYEXISTS for a folder that is not there afterwards is still that folder's error."""
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "Projects", [(mail.make_message("project", date=D1), (), D1)])
    local = account.local_server
    with CuttingProxy(local.host, local.port) as proxy:
        # The server never sees the CREATE of Projects: the proxy turns it into one of a name Dovecot refuses.
        proxy.rewrite(rb'CREATE "Projects"\r\n', b'CREATE "Projects/x"\r\n', "c2s")
        result = sync.run(task_for(account), target_for(account, port=proxy.port, security="none"),
                          str(tmp_path / "task.sqlite")).as_dict()
        assert proxy.rewritten == 1
    assert result["status"] == "partial"
    [error] = result["errors"]
    assert error["folder"] == "Projects" and error["kind"] == "protocol_error" and "local server" in error["detail"]
    assert "Projects" not in mail.folders(local, account.local_user, master=True)


# -- a server at its connection limit ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited_server():
    """A remote Dovecot that takes one session per user and address (mail_max_userip_connections = 1)."""
    with DovecotServer("remote", max_userip_connections=1) as server:
        yield server


@pytest.fixture
def busy_account(limited_server, local_server) -> Account:
    remote_user = limited_server.add_user(unique_name("busy"), "busy-pw-" + os.urandom(4).hex())
    local_user = local_server.add_user(unique_name("lbusy"), "local-pw-" + os.urandom(4).hex())
    return Account(remote_server=limited_server, local_server=local_server, remote_user=remote_user,
                   remote_password=limited_server.users[remote_user], local_user=local_user,
                   local_password=local_server.users[local_user])


def test_connection_limit_released_during_the_backoff_then_the_run_succeeds(busy_account, tmp_path, monkeypatch):
    # Dovecot counts a session until its process ended: leave it some time (the run goes on as soon as it can).
    monkeypatch.setattr(sync, "BACKOFF_S", (0.05, 0.25, 0.5, 1, 2))
    acc = busy_account
    mail.seed(acc.remote_server, acc.remote_user, acc.remote_password, "INBOX",
              [(mail.make_message(f"m {i}", date=D1), (), D1) for i in range(3)])
    holder = mail.login(acc.remote_server, acc.remote_user, acc.remote_password)
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if sum("Reconnecting in" in seen for seen in lines) == 1 and "Reconnecting in" in line:
            holder.logout()  # the other session ends during the backoff

    result = sync.run(task_for(acc), target_for(acc), str(tmp_path / "task.sqlite"), log=log).as_dict()
    assert result["status"] == "success", result["errors"]
    assert result["totals"]["copied"] == 3
    assert any("[LIMIT]" in line and "Reconnecting in" in line for line in lines), lines
    assert mail.snapshot(acc.local_server, acc.local_user, master=True)["INBOX"] == \
        mail.snapshot(acc.remote_server, acc.remote_user, acc.remote_password)["INBOX"]


def test_connection_limit_that_persists_is_server_busy_not_a_wrong_password(busy_account, tmp_path, monkeypatch):
    monkeypatch.setattr(sync, "BACKOFF_S", FAST_BACKOFF)
    acc = busy_account
    holder = mail.login(acc.remote_server, acc.remote_user, acc.remote_password)
    try:
        lines: list[str] = []
        result = sync.run(task_for(acc), target_for(acc), str(tmp_path / "task.sqlite"), log=lines.append).as_dict()
        problems = runner.check_logins(task_for(acc), target_for(acc))
    finally:
        holder.logout()
    assert result["status"] == "failed"
    [error] = result["errors"]
    assert error["kind"] == "server_busy"
    detail = error["detail"]
    assert "remote server" in detail and "Maximum number of connections from user+IP exceeded" in detail
    assert "user name and password" not in detail and "mail_max_userip_connections" in detail
    assert f"still after {sync.MAX_RECONNECTS} retries" in detail
    assert sum("Reconnecting in" in line for line in lines) == sync.MAX_RECONNECTS
    assert not mail.snapshot(acc.local_server, acc.local_user, master=True)["INBOX"]
    # The validate paths (sync_task validate, imapsyncctl validate) say the same, without waiting.
    assert [(p["kind"], p["side"]) for p in problems] == [("server_busy", "remote")]
    assert "Maximum number of connections" in problems[0]["detail"]


def test_imapsyncctl_validate_shows_server_busy(busy_account, imapsyncctl, tmp_path):
    acc = busy_account
    store = store_mod.Store(str(tmp_path / "etc"), str(tmp_path / "var"))
    target = target_for(acc)
    store.write("targets", "default", target.public(), target.master_password)
    task = task_for(acc, name="t1")
    store.write("tasks", "t1", task.public(), task.remote_password)
    env = dict(os.environ, MAILOPS_IMAP_CONFIG_DIR=str(tmp_path / "etc"), MAILOPS_IMAP_STATE_DIR=str(tmp_path / "var"))
    holder = mail.login(acc.remote_server, acc.remote_user, acc.remote_password)
    try:
        done = subprocess.run([imapsyncctl, "validate", "t1", "--json"], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
    finally:
        holder.logout()
    assert done.returncode == 1, done.stdout + done.stderr
    assert [(p["kind"], p["side"]) for p in json.loads(done.stdout)] == [("server_busy", "remote")]
    assert acc.remote_password not in done.stdout + done.stderr


def test_wrong_password_is_still_auth_failed_with_the_servers_words(busy_account, tmp_path):
    acc = busy_account
    result = sync.run(task_for(acc, remote_password="not-the-password"), target_for(acc),
                      str(tmp_path / "task.sqlite")).as_dict()
    assert result["status"] == "failed"
    [error] = result["errors"]
    assert error["kind"] == "auth_failed" and "remote server" in error["detail"]
    assert "[AUTHENTICATIONFAILED]" in error["detail"] and "check the user name and password" in error["detail"]
    assert "not-the-password" not in json.dumps(result)


# -- a command refused for now -------------------------------------------------------------------------------


@pytest.mark.parametrize("times", [1, 100])
def test_a_command_refused_as_unavailable_is_retried(account, tmp_path, monkeypatch, times):
    """A server answering NO [UNAVAILABLE] (a backend down for a moment): the folder is retried after the backoff and
    completes; when the refusals go on, the run stops with server_busy and the server's words."""
    monkeypatch.setattr(sync, "BACKOFF_S", FAST_BACKOFF)
    srv, user, pw = account.remote_server, account.remote_user, account.remote_password
    mail.seed(srv, user, pw, "INBOX", [(mail.make_message(f"inbox {i}", date=D1), (), D1) for i in range(3)])
    lines: list[str] = []
    with CuttingProxy(srv.host, srv.port) as proxy:
        # Plain text between the engine and the proxy, so that the proxy can rewrite the answer to EXAMINE.
        proxy.rewrite(rb"(\S+) OK \[READ-ONLY\] Examine completed[^\r\n]*", rb"\1 NO [UNAVAILABLE] Backend down.", count=times)
        result = sync.run(task_for(account, remote_port=proxy.port, remote_security="none"), target_for(account),
                          str(tmp_path / "task.sqlite"), log=lines.append).as_dict()
    assert any("[UNAVAILABLE] Backend down." in line and "Reconnecting in" in line for line in lines), lines
    if times == 1:
        assert result["status"] == "success", result["errors"]
        assert mail.snapshot(account.local_server, account.local_user, master=True)["INBOX"] == \
            mail.snapshot(srv, user, pw)["INBOX"]
        return
    assert result["status"] == "failed"
    [error] = result["errors"]
    assert error["kind"] == "server_busy" and "remote server" in error["detail"]
    assert "[UNAVAILABLE] Backend down." in error["detail"] and f"still after {sync.MAX_RECONNECTS} retries" in error["detail"]
