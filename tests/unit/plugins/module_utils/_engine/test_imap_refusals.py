# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a user reads when a server refuses: the kind and the advice follow the RFC 5530 response code, the
server's words are kept (escaped, bounded), the side is named. Codes real Dovecot cannot be made to send are
covered here; LIMIT and AUTHENTICATIONFAILED also against real Dovecot (tests/integration/test_engine_refusals.py)."""

from __future__ import annotations

import imaplib

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import errors, imap

REMOTE = imap.Endpoint(side="remote", host="imap.example.org", port=143, security="starttls", validate_certs=True,
                       ca_file=None, user="alice@example.org", password="s3cret!")
LOCAL = imap.Endpoint(side="local", host="127.0.0.1", port=143, security="starttls", validate_certs=True, ca_file=None,
                      user="vmail", password="m4ster!", authzid="alice", login_user="alice*vmail")


def refused(ep: imap.Endpoint, words: str | bytes) -> errors.SyncError:
    # The exception imaplib raises for a refused LOGIN (bytes) or AUTHENTICATE (text).
    return imap._login_refused(ep, imap._server_words(imaplib.IMAP4.error(words)))  # pylint: disable=protected-access


@pytest.mark.parametrize("ep", [REMOTE, LOCAL])
@pytest.mark.parametrize("words, kind, advice", [
    (b"[AUTHENTICATIONFAILED] Authentication failed.", errors.AUTH_FAILED, "check the user name and password"),
    ("[AUTHORIZATIONFAILED] Not allowed.", errors.AUTH_FAILED, "the credentials are valid but"),
    ("[EXPIRED] Password expired.", errors.AUTH_FAILED, "has expired: renew it"),
    ("[PRIVACYREQUIRED] Use TLS.", errors.AUTH_FAILED, "only over an encrypted connection"),
    ("[LIMIT] Maximum number of connections from user+IP exceeded", errors.SERVER_BUSY, "close other sessions"),
    ("[UNAVAILABLE] Backend down.", errors.SERVER_BUSY, "run again when the server is available"),
    ("[INUSE] Mailbox locked.", errors.SERVER_BUSY, "run again when the server is available"),
    ("[CLIENTBUG] What?", errors.AUTH_FAILED, "check the user name and password"),
    (b"Login failed.", errors.AUTH_FAILED, "check the user name and password"),
])
def test_login_refusals_by_response_code(ep, words, kind, advice):
    error = refused(ep, words)
    text = words.decode() if isinstance(words, bytes) else words
    assert error.kind == kind and error.side == ep.side
    assert error.message.startswith(f"The {ep.side} server {ep.host}:143 refused the login of ")
    assert f"({text})" in error.message and advice in error.message
    assert ep.password not in error.message
    assert isinstance(error, errors.ServerBusy) == (kind == errors.SERVER_BUSY)


def test_advice_names_the_options_of_the_side():
    assert refused(REMOTE, "[EXPIRED] x").message.endswith("update remote_password.")
    assert "master_password of the target" in refused(LOCAL, "[EXPIRED] x").message
    assert "use remote_security: starttls or ssl" in refused(REMOTE, "[PRIVACYREQUIRED] x").message
    assert "use security: starttls or ssl" in refused(LOCAL, "[PRIVACYREQUIRED] x").message
    assert "'alice' through master user 'vmail'" in refused(LOCAL, "[AUTHORIZATIONFAILED] x").message
    assert "local_user exists" in refused(LOCAL, "[AUTHORIZATIONFAILED] x").message


def test_server_words_are_escaped_and_bounded():
    error = refused(REMOTE, "[UNAVAILABLE] down\r\n\x1b[31mstatus success " + "x" * 1000)
    assert "\n" not in error.message and "\x1b" not in error.message and "\\x1b[31m" in error.message
    assert len(error.message) < 700


def test_a_busy_server_that_persists_says_so_and_what_to_do():
    busy = refused(REMOTE, "[LIMIT] Maximum number of connections from user+IP exceeded")
    final = errors.gave_up(busy, 5)
    assert final.kind == errors.SERVER_BUSY and final.side == "remote" and not isinstance(final, errors.Transient)
    assert "still after 5 retries; close other sessions" in final.message
    assert "Maximum number of connections" in final.message and final.message.endswith("then run again.")
    lost = errors.gave_up(errors.ConnectionLost("The connection to the remote server x:1 was lost (EOF).", "remote"), 5)
    assert lost.kind == errors.CONNECTION_LOST and "gave up after 5 reconnects" in lost.message


@pytest.mark.parametrize("exc, code", [
    (imaplib.IMAP4.error("select failed: [UNAVAILABLE] Internal error occurred."), "UNAVAILABLE"),
    (imaplib.IMAP4.error("SELECT command error: BAD [b'[INUSE] Locked.']"), "INUSE"),
    (imaplib.IMAP4.error("create failed: Mailbox exists [ALREADYEXISTS] in the text"), None),
    (imaplib.IMAP4.error("create failed: [LIMIT] Too many mailboxes."), "LIMIT"),
    (imaplib.IMAP4.error(b"* BYE [UNAVAILABLE] Shutting down."), "UNAVAILABLE"),  # imaplib: a greeting that refuses
])
def test_command_refusals(exc, code):
    assert imap.response_code(imap._server_words(exc)) == code  # pylint: disable=protected-access
    error = imap.classify(exc, LOCAL, "creating folder 'X'")
    assert error.side == "local" and "local server" in error.message
    # UNAVAILABLE and INUSE may pass (retried with backoff); LIMIT on a command is a lasting limit.
    if code in ("UNAVAILABLE", "INUSE"):
        assert isinstance(error, errors.ServerBusy) and "refused creating folder 'X' for now" in error.message
    else:
        assert error.kind == errors.PROTOCOL_ERROR and not isinstance(error, errors.Transient)
