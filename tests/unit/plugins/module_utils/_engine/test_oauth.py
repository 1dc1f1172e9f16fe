# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The token sources of _engine/oauth.py: which one a task gets, token files and commands under their bounds, when a
grant's token is obtained again, the sentences of an endpoint's refusals. (The grants against a real HTTPS token
endpoint: tests/integration/test_oauth.py.)"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import threading
import time

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import errors, oauth, schema

BASE = {"local_user": "alice", "remote_user": "alice@example.org", "remote_host": "imap.example.org"}


def _task(**fields):
    return schema.parse_task(dict(BASE, **fields))


def test_each_remote_auth_gets_its_source():
    assert oauth.token_source(_task(remote_password="pw")) is None
    assert isinstance(oauth.token_source(_task(remote_auth="token_file", remote_token_file="/t")), oauth.TokenFile)
    command = oauth.token_source(_task(remote_auth="token_command", remote_token_command="get-token --user 'a b'"))
    assert isinstance(command, oauth.TokenCommand) and command.words == ["get-token", "--user", "a b"]
    grant = oauth.token_source(_task(remote_auth="client_credentials", remote_oauth_client_id="app", remote_oauth_tenant="t1",
                                     remote_oauth_client_secret="s"))
    assert isinstance(grant, oauth.ClientCredentials) and grant.renewable
    assert grant.authority == "https://login.microsoftonline.com/t1" and grant.describe == "the token endpoint of tenant t1"
    google = oauth.token_source(_task(remote_auth="service_account", remote_oauth_key_file="/k.json"))
    assert isinstance(google, oauth.ServiceAccount)
    assert (google.subject, google.scope) == ("alice@example.org", "https://mail.google.com/")


def _file(tmp_path, content: bytes, mode: int = 0o600):
    path = tmp_path / "token"
    path.write_bytes(content)
    path.chmod(mode)
    return str(path)


def test_a_token_file_is_read_at_every_call_and_stripped(tmp_path):
    path = _file(tmp_path, b"  ya29.first \n")
    source = oauth.TokenFile(path)
    assert source.token() == "ya29.first" and not source.renewable
    _file(tmp_path, b"ya29.second\n")
    assert source.token() == "ya29.second"


@pytest.mark.parametrize("content,mode,phrase", [
    (b"tok", 0o640, "may be read by its group or by others (mode 0640); make it private to its owner: chmod 600"),
    (b"tok", 0o604, "chmod 600"),
    (b"x" * (oauth.TOKEN_MAX_BYTES + 1), 0o600, f"is larger than {oauth.TOKEN_MAX_BYTES} bytes"),
    (b"secret part\x1b[2J", 0o600, "gave something that is not an access token"),
    (b"\n", 0o600, "gave an empty token"),
])
def test_a_token_file_is_refused_with_a_sentence_that_never_shows_its_content(tmp_path, content, mode, phrase):
    path = _file(tmp_path, content, mode)
    with pytest.raises(oauth.TokenError) as caught:
        oauth.TokenFile(path).token()
    assert caught.value.kind == errors.TOKEN_FAILED and caught.value.side == "token source"
    assert phrase in caught.value.message and f"the token file {path}" in caught.value.message.lower()
    assert "secret part" not in caught.value.message


def test_a_missing_token_file(tmp_path):
    with pytest.raises(oauth.TokenError, match="cannot be read .No such file or directory.; check the path"):
        oauth.TokenFile(str(tmp_path / "none")).token()


def _command(code: str, timeout: float = 10.0) -> oauth.TokenCommand:
    return oauth.TokenCommand(f"{sys.executable} -c {code!r}", timeout)


def test_a_token_command_prints_the_token_without_a_shell_or_input():
    assert _command("import sys; print(sys.stdin.read() + ' tok.1 ')").token() == "tok.1"
    assert oauth.TokenCommand("echo ~").token() == "~"  # no shell: the words as they are (a shell gives $HOME)
    assert oauth.TokenCommand("echo ~").describe == "the token command echo"


def test_a_failing_token_command_shows_its_status_and_a_short_excerpt_of_its_errors():
    with pytest.raises(oauth.TokenError) as caught:
        _command("import sys; sys.stderr.write('no refresh token\\x1b[31m' + 'x' * 9000); sys.exit(3)").token()
    message = caught.value.message
    assert "failed (exit status 3: no refresh token\\x1b[31mxxx" in message and len(message) < 400
    assert caught.value.side == "token source"


@pytest.mark.parametrize("code,timeout,phrase", [
    ("import time; time.sleep(30)", 0.5, "did not finish within 0.5 s and was stopped"),
    ("print('x' * 100000)", 10.0, f"printed more than {oauth.TOKEN_MAX_BYTES} bytes and was stopped"),
])
def test_a_token_command_is_bounded_in_time_and_output(code, timeout, phrase):
    started = time.monotonic()
    with pytest.raises(oauth.TokenError, match=phrase):
        _command(code, timeout).token()
    assert time.monotonic() - started < 5


def test_a_token_command_that_cannot_start():
    with pytest.raises(oauth.TokenError, match="The token command /nonexistent/get-token cannot be started"):
        oauth.TokenCommand("/nonexistent/get-token").token()


class Counting(oauth._Grant):  # pylint: disable=protected-access
    """A grant whose endpoint gives token-1, token-2... valid ``life`` seconds."""

    def __init__(self, life: float) -> None:
        super().__init__()
        self.life = life

    def _obtain(self):
        return f"token-{self.requests + 1}", self.life


def test_a_grant_keeps_its_token_while_valid_and_a_fresh_one_when_asked():
    grant = Counting(3600)
    assert [grant.token(), grant.token(), grant.token(fresh=True), grant.token()] == ["token-1", "token-1", "token-2", "token-2"]
    assert grant.requests == 2


def test_a_grant_obtains_a_new_token_near_the_end_of_the_old_ones_life(monkeypatch):
    grant = Counting(60)
    now = [1000.0]
    monkeypatch.setattr(oauth.time, "monotonic", lambda: now[0])
    assert grant.token() == "token-1"
    now[0] += 53.9  # 10 % of 60 s is less than 5 minutes: renewed once 54 s have passed
    assert grant.token() == "token-1"
    now[0] += 0.2
    assert grant.token() == "token-2"


def test_renew_after():
    assert oauth.renew_after(3600) == 3300  # 5 minutes before the end
    assert oauth.renew_after(600) == 540  # 10 % of its life before the end
    assert oauth.renew_after(0) == 0 and oauth.renew_after(-5) == 0


@pytest.mark.parametrize("answer,phrase", [
    ({"error": "invalid_client", "error_codes": [7000215],
      "error_description": "AADSTS7000215: Invalid client secret provided."},
     "invalid_client (AADSTS7000215: Invalid client secret provided.); check remote_oauth_client_secret"),
    ({"error": "invalid_request", "error_description": "AADSTS90002: Tenant 't1' not found."}, "check remote_oauth_tenant"),
    ({"error": "invalid_grant", "error_codes": [65001], "error_description": "AADSTS65001: consent"}, "grant admin consent"),
    ({"error": "server_error", "error_description": "\x1b[2J" + "x" * 5000}, "\\x1b[2J"),
])
def test_an_entra_refusal_names_the_endpoint_its_code_and_the_fix(answer, phrase):
    grant = oauth.ClientCredentials("app", "t1", "https://127.0.0.1:1", ".default", "s3cr3t", None, None)
    failure = grant._failed(answer, None)  # pylint: disable=protected-access
    assert failure.kind == errors.TOKEN_FAILED and failure.side == "token endpoint"
    assert failure.message.startswith("The token endpoint of tenant t1 (https://127.0.0.1:1/t1) refused a token for "
                                      f"application app: {answer['error']} (")
    assert phrase in failure.message and "s3cr3t" not in failure.message and len(failure.message) < 600


def test_the_certificate_credential_gives_msal_the_key_and_the_sha1_thumbprint(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)
    credential = oauth.certificate_credential(pem, "/c.pem")
    assert credential["thumbprint"] == cert.fingerprint(hashes.SHA1()).hex()
    assert credential["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    with pytest.raises(oauth.TokenError, match="The certificate file /c.pem must hold an unencrypted PEM private key") as caught:
        oauth.certificate_credential(cert.public_bytes(serialization.Encoding.PEM), "/c.pem")
    assert caught.value.side == "token source"  # a file on this host, not the endpoint


def test_a_grant_key_file_must_be_private_too(tmp_path):
    path = _file(tmp_path, b'{"type": "service_account"}', 0o644)
    with pytest.raises(oauth.TokenError, match="chmod 600") as caught:
        oauth.ServiceAccount(path, "alice@example.org", "https://mail.google.com/", None).token()
    assert caught.value.side == "token source"  # a file on this host, not the endpoint
    os.chmod(path, 0o600)
    with pytest.raises(oauth.TokenError, match="is not the JSON key of a service account") as caught:
        oauth.ServiceAccount(path, "alice@example.org", "https://mail.google.com/", None).token()
    assert caught.value.side == "token source"
    key = {"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----", "client_email": "a@b.example",
           "token_uri": "http://oauth2.example/token"}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(key, handle)
    with pytest.raises(oauth.TokenError, match="gives a token_uri that is not an https:// URL"):
        oauth.ServiceAccount(path, "alice@example.org", "https://mail.google.com/", None).token()


class _Endpoint(threading.Thread):
    """A hostile HTTP endpoint on loopback: it answers every request with ``answer(socket)``."""

    def __init__(self, answer) -> None:
        super().__init__(daemon=True)
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/t1/oauth2/v2.0/token"

    def run(self) -> None:
        conn, _addr = self.listener.accept()
        with conn:
            conn.recv(65536)
            try:
                self.answer(conn)
            except OSError:
                pass


def _huge(conn) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
    chunk = b" " * 65536
    for _count in range(100):
        conn.sendall(chunk)


def _drip(conn) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _count in range(100):
        conn.sendall(b" ")
        time.sleep(0.05)


def _drip_headers(conn) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for count in range(100):  # each header line well within requests' per-read timeout
        conn.sendall(f"X-Drip-{count}: 1\r\n".encode())
        time.sleep(0.05)


@pytest.mark.parametrize("answer,phrase", [
    (_huge, f"sent more than {oauth.HTTP_MAX_BYTES} bytes in one answer"),
    (_drip, "did not complete an answer within 0.5 s"),
    (_drip_headers, "did not complete an answer within 0.5 s"),
])
def test_a_token_endpoint_is_bounded_in_bytes_and_time(monkeypatch, answer, phrase):
    pytest.importorskip("requests")
    monkeypatch.setattr(oauth, "HTTP_TIMEOUT_S", 0.5)
    endpoint = _Endpoint(answer)
    endpoint.start()
    started = time.monotonic()
    with pytest.raises(oauth.TokenError, match=phrase) as caught:
        oauth._Http(None, "the token endpoint of tenant t1").post(endpoint.url, data={"client_secret": "s3cr3t"})  # pylint: disable=protected-access
    assert time.monotonic() - started < 5 and caught.value.side == "token endpoint"
    endpoint.listener.close()
