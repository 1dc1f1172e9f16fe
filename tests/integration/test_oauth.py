"""The builtin engine logging in to the remote with OAuth2 tokens (issue 12), against Dovecot's oauth2 passdb and the
loopback OAuth2 server of harness/oauth.py, through the real msal and google-auth: runs with each token source, a token
that expires or is revoked in the middle of a run, the token endpoint's refusals as validate reports them, and a server
announcing only one of the two SASL mechanisms. The session's OAuth server, OAuth Dovecot and local Dovecot
(conftest.py); the engine reaches the remote without TLS, so that a proxy can rewrite what it announces."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import unique_name
from harness import mail
from harness.dovecot import DovecotServer
from harness.oauth import DROP, OAuthServer
from harness.proxy import CuttingProxy

from ansible_collections.mailops.imap.plugins.module_utils._engine import config, sync
from ansible_collections.mailops.imap.plugins.module_utils._engine.engine_builtin import check_logins

pytest.importorskip("msal", reason="msal is in tests/requirements.txt: run make deps")
pytest.importorskip("google.oauth2.service_account", reason="google-auth: run make deps")

PASSWORD = "unused-by-the-engine"


@pytest.fixture
def oauth_remote(oauth_remote_server: DovecotServer) -> DovecotServer:
    """The session's remote Dovecot taking OAuth2 tokens of ``oauth_server`` (conftest.py)."""
    return oauth_remote_server


@pytest.fixture
def lifetime(oauth_server: OAuthServer) -> Iterator[OAuthServer]:
    """The OAuth server, its token lifetime restored after the test."""
    before = oauth_server.token_lifetime
    yield oauth_server
    oauth_server.token_lifetime = before


def mailbox(oauth_remote: DovecotServer, domain: str, messages: int = 3, size: int = 2000) -> str:
    """A fresh remote mailbox USER@DOMAIN with ``messages`` messages in INBOX and one in Archive."""
    user = oauth_remote.add_user(f"{unique_name('ruser')}@{domain}", PASSWORD)
    mail.seed(oauth_remote, user, PASSWORD, "INBOX", [mail.make_message(f"m{i}", size=size) for i in range(messages)])
    mail.seed(oauth_remote, user, PASSWORD, "Archive", [mail.make_message("archived")])
    return user


def target(local_server: DovecotServer) -> config.Target:
    return config.parse_target({"host": local_server.host, "port": local_server.port, "security": "starttls",
                                "ca_file": str(local_server.cert_path), "master_user": local_server.master_user,
                                "master_password": local_server.master_password})


def task(local_server: DovecotServer, host: str, port: int, user: str, **auth: str) -> config.Task:
    local_user = local_server.add_user(unique_name("luser"), "l0cal")
    return config.parse_task({"local_user": local_user, "remote_user": user, "remote_host": host, "remote_port": port,
                              "remote_security": "none", **auth})


def entra(oauth_server: OAuthServer, app, **extra: str) -> dict[str, str]:
    fields = {"remote_auth": "client_credentials", "remote_oauth_client_id": app.client_id,
              "remote_oauth_tenant": app.tenant.domain, "remote_oauth_authority": oauth_server.url,
              "remote_oauth_ca_file": str(oauth_server.ca_path)}
    if app.secret:
        fields["remote_oauth_client_secret"] = app.secret
    return {**fields, **extra}


def run(the_task: config.Task, local_server: DovecotServer, tmp_path: Path, log=None):
    return sync.run(the_task, target(local_server), str(tmp_path / "task.sqlite"), log=log)


def copied(oauth_remote: DovecotServer, user: str, the_task: config.Task, local_server: DovecotServer) -> None:
    remote = mail.snapshot(oauth_remote, user, PASSWORD)
    local = mail.snapshot(local_server, the_task.local_user, master=True)
    assert local["INBOX"] == remote["INBOX"] and local["Archive"] == remote["Archive"]


def private(path: Path, text: str) -> str:
    path.write_text(text, encoding="ascii")
    path.chmod(0o600)
    return str(path)


def test_client_credentials_with_a_secret_copies_the_mailbox_with_one_token(oauth_server, oauth_remote, local_server,
                                                                            tmp_path):
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant)
    user = mailbox(oauth_remote, tenant.domain)
    the_task = task(local_server, oauth_remote.host, oauth_remote.port, user, **entra(oauth_server, app))
    result = run(the_task, local_server, tmp_path)
    assert result.status == "success", [e["detail"] for e in result.errors]
    copied(oauth_remote, user, the_task, local_server)
    assert [t.grant for t in oauth_server.issued(app.client_id)] == ["client_credentials"]
    assert any("not encrypted (remote_security: none): the access token and the mail" in n for n in result.notices)


def test_client_credentials_with_a_certificate_log_in(oauth_server, oauth_remote, local_server, tmp_path):
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant, secret=False, certificate=True)
    user = mailbox(oauth_remote, tenant.domain, messages=0)
    pem = private(tmp_path / "app.pem", app.certificate.pem)
    the_task = task(local_server, oauth_remote.host, oauth_remote.port, user,
                    **entra(oauth_server, app, remote_oauth_certificate=pem))
    assert check_logins(the_task, target(local_server)) == []
    assert len(oauth_server.issued(app.client_id)) == 1


def test_a_google_service_account_copies_the_mailbox_of_the_user_it_acts_as(oauth_server, oauth_remote, local_server,
                                                                            tmp_path):
    domain = f"g{unique_name('d')}.example"
    account = oauth_server.add_service_account(domain)
    key = account.write_key_file(tmp_path / "key.json")
    user = mailbox(oauth_remote, domain)
    the_task = task(local_server, oauth_remote.host, oauth_remote.port, user, remote_auth="service_account",
                    remote_oauth_key_file=str(key), remote_oauth_ca_file=str(oauth_server.ca_path))
    result = run(the_task, local_server, tmp_path)
    assert result.status == "success", [e["detail"] for e in result.errors]
    copied(oauth_remote, user, the_task, local_server)
    (issued,) = oauth_server.issued(account.client_email)
    assert issued.username == user


def _cut_run(oauth_remote, local_server, tmp_path, user, auth, on_reconnect):
    """A run through a proxy that cuts the remote connection in the middle of the transfer; ``on_reconnect`` is
    called when the engine says it reconnects (before its backoff ends)."""
    with CuttingProxy(oauth_remote.host, oauth_remote.port) as proxy:
        the_task = task(local_server, proxy.host, proxy.port, user, **auth)
        proxy.cut_after(150_000, "s2c")
        lines: list[str] = []

        def log(line: str) -> None:
            lines.append(line)
            if "Reconnecting" in line:
                on_reconnect()

        result = run(the_task, local_server, tmp_path, log)
        assert proxy.wait_cut(0), "the proxy never cut the connection: the test proved nothing"
    assert result.status == "success", [e["detail"] for e in result.errors]
    assert any("Reconnecting" in line for line in lines)
    copied(oauth_remote, user, the_task, local_server)
    return lines


def test_a_token_that_expires_during_a_run_is_renewed_at_the_reconnect(lifetime, oauth_remote, local_server, tmp_path):
    oauth_server = lifetime
    oauth_server.token_lifetime = 1.0  # renewed after 0.9 s; the first reconnect waits 1 s
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant)
    user = mailbox(oauth_remote, tenant.domain, messages=12, size=40_000)
    introspected = oauth_server.hits["introspect"]
    _cut_run(oauth_remote, local_server, tmp_path, user, entra(oauth_server, app), lambda: None)
    first, second = oauth_server.issued(app.client_id)
    assert first.expires_at <= second.issued_at
    # Two logins, each with a live token: the expired one was never sent (a refused login and a retry would be a third).
    # Dovecot asks about an app-only token twice per login: harness/dovecot.py _oauth2_passdbs (user, then app).
    assert oauth_server.hits["introspect"] - introspected == 2 * 2


def test_a_token_endpoint_unreachable_at_a_reconnect_is_tried_again_with_the_backoff(lifetime, oauth_remote,
                                                                                     local_server, tmp_path):
    oauth_server = lifetime
    oauth_server.token_lifetime = 1.0  # the reconnect needs a new token
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant)
    user = mailbox(oauth_remote, tenant.domain, messages=12, size=40_000)
    scripted: list[bool] = []

    def endpoint_down_once() -> None:
        if not scripted:
            scripted.append(True)
            oauth_server.script_token_responses((DROP, b""))

    lines = _cut_run(oauth_remote, local_server, tmp_path, user, entra(oauth_server, app), endpoint_down_once)
    (down,) = [line for line in lines if "could not be reached" in line]
    assert down.startswith(f"The token endpoint 127.0.0.1:{oauth_server.port} could not be reached")
    assert "Reconnecting in 2 s (attempt 2 of 5)" in down
    assert len(oauth_server.issued(app.client_id)) == 2


def test_a_token_revoked_during_a_run_is_replaced_after_the_servers_refusal(oauth_server, oauth_remote, local_server,
                                                                            tmp_path):
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant)
    user = mailbox(oauth_remote, tenant.domain, messages=12, size=40_000)
    _cut_run(oauth_remote, local_server, tmp_path, user, entra(oauth_server, app),
             lambda: oauth_server.revoke(oauth_server.issued(app.client_id)[0].token))
    first, second = oauth_server.issued(app.client_id)
    assert first.revoked and not second.revoked


def test_a_token_file_is_read_again_at_the_reconnect(oauth_server, oauth_remote, local_server, tmp_path):
    domain = f"f{unique_name('d')}.example"
    user = mailbox(oauth_remote, domain, messages=12, size=40_000)
    first = oauth_server.mint_token(user)
    path = tmp_path / "token"
    private(path, first + "\n")

    def renewed_by_another_process() -> None:
        oauth_server.revoke(first)
        private(path, oauth_server.mint_token(user))

    _cut_run(oauth_remote, local_server, tmp_path, user, {"remote_auth": "token_file", "remote_token_file": str(path)},
             renewed_by_another_process)


def test_a_token_command_logs_in_and_a_revoked_token_is_refused_by_the_imap_server(oauth_server, oauth_remote,
                                                                                   local_server, tmp_path):
    domain = f"c{unique_name('d')}.example"
    user = mailbox(oauth_remote, domain, messages=0)
    token = oauth_server.mint_token(user)
    path = private(tmp_path / "token", token)
    command = f"{sys.executable} -c \"print(open('{path}').read())\""
    the_task = task(local_server, oauth_remote.host, oauth_remote.port, user, remote_auth="token_command",
                    remote_token_command=command)
    assert check_logins(the_task, target(local_server)) == []
    oauth_server.revoke(token)
    (problem,) = check_logins(the_task, target(local_server))
    assert (problem["kind"], problem["side"]) == ("auth_failed", "remote")
    assert problem["detail"].startswith(f"The remote server {oauth_remote.host}:{oauth_remote.port} refused the OAuth2 "
                                        f"token (OAUTHBEARER) from the token command {sys.executable} for '{user}'")
    assert "renew the token" in problem["detail"] and token not in problem["detail"]


@pytest.mark.parametrize("case,code,phrase", [
    ("wrong secret", "AADSTS7000215", "check remote_oauth_client_secret"),
    ("unknown tenant", "AADSTS90002", "check remote_oauth_tenant"),
    ("no consent", "AADSTS65001", "grant admin consent"),
])
def test_validate_names_the_token_endpoint_and_its_error_code(oauth_server, oauth_remote, local_server, case, code,
                                                              phrase):
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant, consented=case != "no consent")
    fields = entra(oauth_server, app)
    if case == "wrong secret":
        fields["remote_oauth_client_secret"] = "not-the-secret"
    if case == "unknown tenant":
        fields["remote_oauth_tenant"] = "nobody.example"
    the_task = task(local_server, oauth_remote.host, oauth_remote.port, f"someone@{tenant.domain}", **fields)
    (problem,) = check_logins(the_task, target(local_server))
    assert (problem["kind"], problem["side"]) == ("token_failed", "token endpoint")
    assert problem["detail"].startswith("The token endpoint of tenant ") and code in problem["detail"]
    assert phrase in problem["detail"] and "not-the-secret" not in problem["detail"]
    assert app.secret not in problem["detail"]


@pytest.mark.parametrize("announced,hidden", [("XOAUTH2", "OAUTHBEARER"), ("OAUTHBEARER", "XOAUTH2")])
def test_a_server_announcing_one_mechanism_gets_that_one(oauth_server, oauth_remote, local_server, tmp_path, announced,
                                                         hidden):
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant)
    user = mailbox(oauth_remote, tenant.domain, messages=0)
    revoked = oauth_server.mint_token(user)
    oauth_server.revoke(revoked)
    with CuttingProxy(oauth_remote.host, oauth_remote.port) as proxy:
        proxy.rewrite(f" AUTH={hidden}".encode(), b"", count=10)  # from the greetings' (and CAPABILITY's) lists
        # Had the engine used the hidden mechanism anyway, Dovecot would get one it does not know, and refuse.
        proxy.rewrite(f"AUTHENTICATE {hidden}".encode(), b"AUTHENTICATE NONESUCH", "c2s", count=10)
        the_task = task(local_server, proxy.host, proxy.port, user, **entra(oauth_server, app))
        assert check_logins(the_task, target(local_server)) == []
        # A refused token with this mechanism: the server's error challenge is answered, its NO reported.
        refused = task(local_server, proxy.host, proxy.port, user, remote_auth="token_file",
                       remote_token_file=private(tmp_path / "token", revoked))
        (problem,) = check_logins(refused, target(local_server))
        assert proxy.rewritten >= 2  # the mechanism was hidden at both logins (and never asked for: see above)
    assert problem["kind"] == "auth_failed" and f"refused the OAuth2 token ({announced})" in problem["detail"]


HOSTILE = [
    (200, b"\x1b[2J not json", "gave no token"),
    (200, b'{"access_token": "a\\r\\nb", "expires_in": 3600}', "gave something that is not an access token"),
    (200, b" " * (1024 * 1024 + 1), "sent more than 1048576 bytes in one answer"),
]


# An outage (5xx) with msal only: google-auth retries it with a backoff of seconds.
@pytest.mark.parametrize("grant,status,body,phrase", [
    ("client_credentials", 503, b'{"error": "temporarily_unavailable"}', "temporarily_unavailable"),
    *[("client_credentials", *answer) for answer in HOSTILE], *[("service_account", *answer) for answer in HOSTILE]])
def test_a_hostile_token_endpoint_fails_the_login_with_a_bounded_sentence(oauth_server, oauth_remote, local_server,
                                                                          tmp_path, grant, status, body, phrase):
    if grant == "client_credentials":
        tenant = oauth_server.add_tenant()
        user, auth = f"someone@{tenant.domain}", entra(oauth_server, oauth_server.add_app(tenant))
    else:
        domain = f"h{unique_name('d')}.example"
        key = oauth_server.add_service_account(domain).write_key_file(tmp_path / "key.json")
        user, auth = f"someone@{domain}", {"remote_auth": "service_account", "remote_oauth_key_file": str(key),
                                           "remote_oauth_ca_file": str(oauth_server.ca_path)}
    the_task = task(local_server, oauth_remote.host, oauth_remote.port, user, **auth)
    oauth_server.script_token_responses((status, body))
    try:
        (problem,) = check_logins(the_task, target(local_server))
    finally:
        while oauth_server.next_scripted() is not None:
            pass
    assert (problem["kind"], problem["side"]) == ("token_failed", "token endpoint")
    assert phrase in problem["detail"] and "\x1b" not in problem["detail"] and len(problem["detail"]) < 700
