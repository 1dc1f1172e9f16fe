"""imap.AppendStream (one MULTIAPPEND under LITERAL+, sent a batch at a time) against the real local Dovecot: a refusal
Dovecot sends before the last message (a tagged NO, early) ends the command cleanly at its end, stores nothing of it
and leaves the connection in step; a command cut off before its end stores nothing (docs/sync-engine.md "Identity")."""

from __future__ import annotations

import time

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import imap


def _message(number: int, size: int = 2000) -> tuple[bytes, tuple[bytes, ...], None]:
    head = f"From: a@example.org\r\nSubject: m{number}\r\nMessage-ID: <m{number}@example.org>\r\n\r\n".encode()
    return head + b"x" * size + b"\r\n", (), None


def _connect(account) -> imap.Connection:
    server = account.local_server
    return imap.Connection(imap.Endpoint("local", server.host, server.port, "none", False, None, account.local_user,
                                         account.local_password, timeout=10))


def _stored(conn: imap.Connection, folder: str = "INBOX") -> int:
    return conn.status(folder)["MESSAGES"]


def test_an_early_refusal_inside_a_multiappend_of_many_batches_stores_none_and_keeps_the_connection(account):
    account.local_server.set_user_quota(account.local_user, "100k")
    conn = _connect(account)
    assert conn.has("LITERAL+") and conn.has("MULTIAPPEND")
    stream = conn.append_stream("INBOX")
    assert stream is not None
    stream.add([_message(0), _message(1, 300_000)])  # over quota: Dovecot answers NO at once, and reads on
    for batch in range(1, 4):
        stream.add([_message(number) for number in range(batch * 50, batch * 50 + 50)])
    with pytest.raises(imap.AppendRefused, match="OVERQUOTA"):
        stream.end()
    assert conn.alive and _stored(conn) == 0  # all or nothing, and the next command is answered as its own
    missing = conn.append_stream("Missing")  # refused at its first message: the same
    assert missing is not None
    missing.add([_message(number) for number in range(20)])
    missing.add([_message(number) for number in range(20, 40)])
    with pytest.raises(imap.AppendRefused, match="TRYCREATE"):
        missing.end()
    stream.add([_message(number) for number in range(3)])
    stream.add([_message(number) for number in range(3, 6)])
    assert stream.end() == [1, 2, 3, 4, 5, 6] and _stored(conn) == 6


def test_a_multiappend_cut_off_before_its_end_stores_nothing(account):
    conn = _connect(account)
    stream = conn.append_stream("INBOX")
    assert stream is not None
    stream.add([_message(number) for number in range(30)])
    conn._drop()  # pylint: disable=protected-access  # what AppendStream.add does when sending fails
    other = _connect(account)
    deadline = time.monotonic() + 0.5  # the server's session ends on its own time: nothing is stored meanwhile either
    while time.monotonic() < deadline:
        assert _stored(other) == 0
        time.sleep(0.05)
