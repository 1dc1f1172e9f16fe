"""Self-tests of the OAuth2 harness (harness/oauth.py, DovecotServer's oauth2 option) with the real client libraries
(msal, google-auth) and raw imaplib: what the engine's OAuth2 tests stand on (issue 12)."""

from __future__ import annotations

import imaplib
import time

import pytest

from conftest import unique_name
from harness.dovecot import DovecotServer
from harness.oauth import ENTRA_SCOPE, GOOGLE_SCOPE, OAuthServer, sasl_oauthbearer, sasl_xoauth2

msal = pytest.importorskip("msal", reason="msal is in tests/requirements.txt: run make deps")
service_account = pytest.importorskip("google.oauth2.service_account", reason="google-auth: run make deps")
google_requests = pytest.importorskip("google.auth.transport.requests", reason="google-auth: run make deps")
requests = pytest.importorskip("requests", reason="requests comes with msal: run make deps")


@pytest.fixture(autouse=True)
def _ca_bundle_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests prefers $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE over a Session's verify (msal's verify= sets that),
    # which would hide the test CA on a machine that sets them.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def authenticate(server: DovecotServer, mechanism: str, user: str, token: str) -> str:
    """Log in with AUTHENTICATE *mechanism* and select INBOX; return "OK" or the server's refusal (its text)."""
    if mechanism == "XOAUTH2":
        initial, abort = sasl_xoauth2(user, token), b""
    else:
        initial, abort = sasl_oauthbearer(user, token, server.host, server.port), b"\x01"
    answers = iter([initial])

    def respond(challenge: bytes) -> bytes:
        # The first "+" is empty: send the initial response. A later one carries the server's JSON error: answer it
        # as RFC 7628 says (XOAUTH2: empty; OAUTHBEARER: %x01), then the server ends with NO.
        return next(answers, abort)

    client = imaplib.IMAP4(server.host, server.port, timeout=15)
    try:
        client.authenticate(mechanism, respond)
    except imaplib.IMAP4.error as error:
        client.shutdown()
        return str(error)
    try:
        assert client.select("INBOX")[0] == "OK"
    finally:
        client.logout()
    return "OK"


def entra_app(server: OAuthServer, app, credential) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(app.client_id, client_credential=credential,
                                              authority=server.authority(app.tenant), verify=str(server.ca_path),
                                              instance_discovery=False)


def test_msal_tokens_by_secret_and_certificate_open_the_tenants_mailboxes(
        oauth_server, oauth_remote_server, make_oauth_account):
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant, certificate=True)
    mailbox = make_oauth_account(tenant.domain).remote_user
    elsewhere = oauth_remote_server.add_user(unique_name("ruser"), "unused-password")
    cert = app.certificate
    for credential, mechanism in ((app.secret, "XOAUTH2"),
                                  ({"private_key": cert.private_key_pem, "thumbprint": cert.sha1_thumbprint}, "OAUTHBEARER"),
                                  ({"private_key": cert.private_key_pem, "public_certificate": cert.certificate_pem}, "XOAUTH2")):
        result = entra_app(oauth_server, app, credential).acquire_token_for_client(scopes=[ENTRA_SCOPE])
        assert result.get("token_type") == "Bearer", result
        token = result["access_token"]
        assert authenticate(oauth_remote_server, mechanism, mailbox, token) == "OK"
        # An app-only token opens the mailboxes of its tenant's domain only.
        assert "AUTHENTICATIONFAILED" in authenticate(oauth_remote_server, mechanism, elsewhere, token)
    assert len(oauth_server.issued(app.client_id)) == 3


def test_msal_caches_a_token_and_the_server_counts_requests(oauth_server):
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant)
    client = entra_app(oauth_server, app, app.secret)
    before = oauth_server.hits["entra-token"]
    first = client.acquire_token_for_client(scopes=[ENTRA_SCOPE])
    second = client.acquire_token_for_client(scopes=[ENTRA_SCOPE])
    assert first["access_token"] == second["access_token"]
    assert oauth_server.hits["entra-token"] == before + 1
    # msal never serves a cached token with less than 5 minutes left: a short life means a request every time.
    oauth_server.token_lifetime = 60
    try:
        client = entra_app(oauth_server, app, app.secret)
        tokens = {client.acquire_token_for_client(scopes=[ENTRA_SCOPE])["access_token"],
                  client.acquire_token_for_client(scopes=[ENTRA_SCOPE])["access_token"]}
    finally:
        oauth_server.token_lifetime = 3600.0
    assert len(tokens) == 2
    assert oauth_server.hits["entra-token"] == before + 3


def test_entra_errors_carry_their_codes(oauth_server):
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant)
    wrong = entra_app(oauth_server, app, app.secret + "x").acquire_token_for_client(scopes=[ENTRA_SCOPE])
    assert wrong["error"] == "invalid_client" and wrong["error_description"].startswith("AADSTS7000215:")
    assert wrong["error_codes"] == [7000215]
    stranger = oauth_server.add_app(tenant, secret=False, certificate=True)
    other = oauth_server.add_app(tenant, secret=False, certificate=True)
    signed_by_another = {"private_key": other.certificate.private_key_pem,
                         "thumbprint": stranger.certificate.sha1_thumbprint}
    forged = entra_app(oauth_server, stranger, signed_by_another).acquire_token_for_client(scopes=[ENTRA_SCOPE])
    assert forged["error_codes"] == [700027]
    unconsented = oauth_server.add_app(tenant, consented=False)
    refused = entra_app(oauth_server, unconsented, unconsented.secret).acquire_token_for_client(scopes=[ENTRA_SCOPE])
    assert refused["error"] == "invalid_grant" and refused["error_codes"] == [65001]
    # An unknown tenant fails msal's discovery; Entra's own answer is AADSTS90002.
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication(app.client_id, client_credential=app.secret,
                                           authority=oauth_server.authority("no-such-tenant.example"),
                                           verify=str(oauth_server.ca_path), instance_discovery=False)
    answer = requests.get(f"{oauth_server.authority('no-such-tenant.example')}/v2.0/.well-known/openid-configuration",
                          verify=str(oauth_server.ca_path), timeout=10)
    assert answer.status_code == 400 and answer.json()["error_codes"] == [90002]


def test_google_service_account_jwt_bearer(oauth_server, oauth_remote_server, tmp_path):
    domain = f"g{unique_name('d')}.example"
    account = oauth_server.add_service_account(domain)
    key_file = account.write_key_file(tmp_path / "key.json")
    assert key_file.stat().st_mode & 0o777 == 0o600
    alice = oauth_remote_server.add_user(f"{unique_name('alice')}@{domain}", "unused-password")
    bob = oauth_remote_server.add_user(f"{unique_name('bob')}@{domain}", "unused-password")
    session = requests.Session()
    session.verify = str(oauth_server.ca_path)
    credentials = service_account.Credentials.from_service_account_file(str(key_file), scopes=[GOOGLE_SCOPE],
                                                                        subject=alice)
    credentials.refresh(google_requests.Request(session))
    assert oauth_server.token_info(credentials.token).username == alice
    assert authenticate(oauth_remote_server, "XOAUTH2", alice, credentials.token) == "OK"
    assert authenticate(oauth_remote_server, "OAUTHBEARER", alice, credentials.token) == "OK"
    # A delegated token opens the impersonated user's mailbox only.
    assert "AUTHENTICATIONFAILED" in authenticate(oauth_remote_server, "XOAUTH2", bob, credentials.token)
    outsider = service_account.Credentials.from_service_account_file(str(key_file), scopes=[GOOGLE_SCOPE],
                                                                     subject="carol@elsewhere.example")
    with pytest.raises(Exception, match="unauthorized_client"):
        outsider.refresh(google_requests.Request(session))


def test_revoked_and_expired_tokens_are_refused(oauth_server, oauth_remote_server):
    user = oauth_remote_server.add_user(unique_name("ruser"), "unused-password")
    revoked, expired = oauth_server.mint_token(user), oauth_server.mint_token(user)
    short = oauth_server.mint_token(user, lifetime=1.0)
    for token in (revoked, expired, short):
        assert authenticate(oauth_remote_server, "XOAUTH2", user, token) == "OK"
    oauth_server.revoke(revoked)
    oauth_server.expire(expired)
    time.sleep(max(0.0, oauth_server.token_info(short).expires_at - time.time()) + 0.05)
    # Each refusal costs Dovecot's half second: one mechanism per token, both for the revoked one.
    for token, mechanism in ((revoked, "XOAUTH2"), (revoked, "OAUTHBEARER"), (expired, "XOAUTH2"),
                             (short, "OAUTHBEARER"), ("not-a-token-at-all", "XOAUTH2")):
        assert "AUTHENTICATIONFAILED" in authenticate(oauth_remote_server, mechanism, user, token)
    # The password passdb stays: the same user still logs in with its password.
    with imaplib.IMAP4(oauth_remote_server.host, oauth_remote_server.port, timeout=15) as client:
        assert client.login(user, "unused-password")[0] == "OK"


def test_a_server_announces_only_its_mechanism(oauth_server):
    with DovecotServer("remote", starttls=False, oauth2_introspection_url=oauth_server.introspection_url,
                       oauth2_mechanisms=("xoauth2",)) as server:
        user = server.add_user(unique_name("ruser"), "unused-password")
        with imaplib.IMAP4(server.host, server.port, timeout=15) as client:
            capabilities = set(client.capabilities)
        assert {"AUTH=PLAIN", "AUTH=XOAUTH2"} <= capabilities and "AUTH=OAUTHBEARER" not in capabilities
        token = oauth_server.mint_token(user)
        assert authenticate(server, "XOAUTH2", user, token) == "OK"
        assert "Unsupported authentication mechanism" in authenticate(server, "OAUTHBEARER", user, token)
    with pytest.raises(ValueError, match="oauth2_mechanisms"):
        DovecotServer("remote", oauth2_introspection_url=oauth_server.introspection_url, oauth2_mechanisms=("plain",))


def test_scripted_answers_and_a_slow_token_endpoint(oauth_server):
    tenant = oauth_server.add_tenant()
    app = oauth_server.add_app(tenant)
    client = entra_app(oauth_server, app, app.secret)
    before = oauth_server.hits["entra-token"]
    # msal raises on a 5xx answer (a 4xx one comes back as a dict with "error"), and its application object
    # replays that answer without asking for 5 s (or Retry-After); it raises ValueError on a body that is not JSON.
    oauth_server.script_token_responses((503, b'{"error": "temporarily_unavailable"}'), (200, b"<html>not json"))
    for _attempt in range(2):
        with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
            client.acquire_token_for_client(scopes=[ENTRA_SCOPE])
    assert oauth_server.hits["entra-token"] == before + 1
    client = entra_app(oauth_server, app, app.secret)
    with pytest.raises(ValueError):
        client.acquire_token_for_client(scopes=[ENTRA_SCOPE])
    assert "access_token" in client.acquire_token_for_client(scopes=[ENTRA_SCOPE])
    assert oauth_server.hits["entra-token"] == before + 3
    oauth_server.token_delay = 1.0
    try:
        with pytest.raises(requests.exceptions.Timeout):
            requests.post(oauth_server.token_uri, data={"grant_type": "x"}, verify=str(oauth_server.ca_path),
                          timeout=0.2)
    finally:
        oauth_server.token_delay = 0.0
