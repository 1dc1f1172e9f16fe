# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""imap.Connection logging in with an OAuth2 token (remote_auth other than password), against a scripted server:
the SASL mechanism from the capabilities, the exact messages, the error challenge, one retry with a new token."""

from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import errors, imap

from ansible_collections.mailops.imap.tests.unit.plugins.module_utils._engine.responder import Responder

TOKEN = "ya29.Tok3n-_~+/=="


class Source:
    """A token source handing out token-1, token-2...; ``renewable`` as a grant's."""

    def __init__(self, renewable: bool = True) -> None:
        self.renewable = renewable
        self.describe = "the token endpoint of tenant t1" if renewable else "the token file /run/t"
        self.calls: list[bool] = []

    def token(self, *, fresh: bool = False) -> str:
        self.calls.append(fresh)
        return f"tok{len(self.calls)}"


class OAuthServer(Responder):
    """Accepts the tokens in ``accepted``; refuses the others with an error challenge (RFC 7628 section 3.2.2) then NO."""

    def __init__(self, caps: bytes, accepted: tuple[str, ...] = (TOKEN,), code: bytes = b"") -> None:
        super().__init__(caps)
        self.accepted = accepted
        self.code = code  # a response code before the NO's words
        self.responses: list[bytes] = []  # the decoded client responses, in order
        self.mechanisms: list[bytes] = []

    def authenticate(self, conn, reader, tag, rest):
        self.mechanisms.append(rest.split(b" ")[1])
        conn.sendall(b"+ \r\n")
        response = base64.b64decode(reader.readline().strip())
        self.responses.append(response)
        if any(f"auth=Bearer {token}\x01".encode() in response for token in self.accepted):
            self.logged_in(conn, tag)
            return
        challenge = json.dumps({"status": "invalid_token", "schemes": "bearer"}).encode()
        conn.sendall(b"+ " + base64.b64encode(challenge) + b"\r\n")
        self.responses.append(base64.b64decode(reader.readline().strip()))
        conn.sendall(tag + b" NO " + self.code + b"Authentication failed\r\n")


def login(server: OAuthServer, source) -> imap.Connection:
    server.start()
    ep = imap.Endpoint(side="remote", host="127.0.0.1", port=server.port, security="none", validate_certs=True, ca_file=None,
                       user="alice@example.org", password="", timeout=5.0, token=source)
    try:
        return imap.Connection(ep)
    finally:
        server.listener.close()


class Fixed:
    renewable = False
    describe = "the token command get-token"

    def token(self, *, fresh: bool = False) -> str:  # pylint: disable=unused-argument
        return TOKEN


def test_xoauth2_when_the_server_offers_only_xoauth2():
    server = OAuthServer(b"IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2")
    login(server, Fixed()).close()
    assert server.mechanisms == [b"XOAUTH2"]
    assert server.responses == [f"user=alice@example.org\x01auth=Bearer {TOKEN}\x01\x01".encode()]


def test_oauthbearer_when_offered_with_the_gs2_header_host_and_port():
    server = OAuthServer(b"IMAP4rev1 AUTH=XOAUTH2 AUTH=OAUTHBEARER")
    login(server, Fixed()).close()
    assert server.mechanisms == [b"OAUTHBEARER"]
    assert server.responses == [
        f"n,a=alice@example.org,\x01host=127.0.0.1\x01port={server.port}\x01auth=Bearer {TOKEN}\x01\x01".encode()]


def test_oauthbearer_escapes_comma_and_equals_in_the_user_name():
    ep = imap.Endpoint(side="remote", host="h", port=993, security="ssl", validate_certs=True, ca_file=None, user="a,b=c",
                       password="")
    assert imap.sasl_response("OAUTHBEARER", ep, "T").startswith(b"n,a=a=2Cb=3Dc,\x01host=h\x01port=993\x01")


def test_a_server_without_either_mechanism_is_refused_with_a_sentence():
    server = OAuthServer(b"IMAP4rev1 AUTH=PLAIN AUTH=LOGIN")
    with pytest.raises(errors.SyncError) as caught:
        login(server, Fixed())
    assert caught.value.kind == errors.AUTH_FAILED and caught.value.side == "remote"
    assert "offers neither OAUTHBEARER nor XOAUTH2 (its SASL mechanisms: LOGIN, PLAIN)" in caught.value.message
    assert not server.mechanisms


def test_a_refused_grant_token_is_followed_by_one_new_token():
    source = Source()
    server = OAuthServer(b"IMAP4rev1 AUTH=OAUTHBEARER", accepted=("tok2",))
    login(server, source).close()
    assert source.calls == [False, True]
    assert server.responses[1] == b"\x01"  # RFC 7628: the dummy response to the error challenge
    assert b"auth=Bearer tok2\x01" in server.responses[2]


@pytest.mark.parametrize("caps,dummy", [(b"AUTH=XOAUTH2", b""), (b"AUTH=OAUTHBEARER", b"\x01")])
def test_a_token_refused_twice_fails_naming_the_imap_server_and_its_words(caps, dummy):
    source = Source()
    server = OAuthServer(b"IMAP4rev1 " + caps, accepted=())
    with pytest.raises(errors.SyncError) as caught:
        login(server, source)
    message = caught.value.message
    assert caught.value.kind == errors.AUTH_FAILED and caught.value.side == "remote"
    assert message.startswith(f"The remote server 127.0.0.1:{server.port} refused the OAuth2 token")
    assert "from the token endpoint of tenant t1 for 'alice@example.org', and a new one too" in message
    assert "(Authentication failed; status invalid_token)" in message and "IMAP.AccessAsApp" in message
    assert "tok1" not in message and "tok2" not in message
    assert source.calls == [False, True] and server.responses[1] == dummy


def test_a_refused_token_of_a_file_is_not_asked_again():
    source = Source(renewable=False)
    server = OAuthServer(b"IMAP4rev1 AUTH=XOAUTH2", accepted=())
    with pytest.raises(errors.SyncError) as caught:
        login(server, source)
    assert source.calls == [False]
    assert "renew the token of the token file /run/t" in caught.value.message


def test_a_busy_refusal_is_a_busy_server_not_a_bad_token():
    server = OAuthServer(b"IMAP4rev1 AUTH=XOAUTH2", accepted=(), code=b"[UNAVAILABLE] ")
    with pytest.raises(errors.ServerBusy):
        login(server, Source())


def test_a_token_failure_is_not_turned_into_an_imap_timeout():
    class Failing:
        renewable = True
        describe = "the token endpoint of tenant t1"

        def token(self, *, fresh: bool = False) -> str:
            raise errors.SyncError(errors.TOKEN_FAILED, "The token endpoint of tenant t1 refused.", "token endpoint")

    with pytest.raises(errors.SyncError) as caught:
        login(OAuthServer(b"IMAP4rev1 AUTH=XOAUTH2"), Failing())
    assert caught.value.kind == errors.TOKEN_FAILED and caught.value.side == "token endpoint"
