# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's own FETCH reader (fetchparse.py) against an in-process IMAP responder, through imap.Connection: what a
server sends is read within the transport's bounds, and only checked values reach the engine (a UID asked for, sizes
that are numbers, INTERNALDATE in the RFC 3501 form that goes back into APPEND)."""

from __future__ import annotations

import socket
import typing as t

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import errors, fetchparse, imap
from ansible_collections.mailops.imap.tests.unit.plugins.module_utils._engine import responder

CAPS = b"IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS AUTH=PLAIN"
DATE = b"01-Jan-2024 10:00:00 +0100"


class Responder(responder.Responder):
    """Logs in, selects, and answers each UID FETCH with ``answer(tag, command)``, then closes the connection if
    ``hangup``; records the APPEND lines."""

    def __init__(self, answer: t.Callable[[bytes, bytes], bytes], hangup: bool) -> None:
        super().__init__(CAPS)
        self.answer = answer
        self.hangup = hangup
        self.appends: list[bytes] = []

    def handle(self, conn: socket.socket, reader: t.Any, tag: bytes, verb: bytes, rest: bytes, line: bytes) -> bool:
        if verb == b"UID" and b" FETCH " in rest:
            conn.sendall(self.answer(tag, rest))
            return not self.hangup
        if verb == b"APPEND":
            self.appends.append(line)
            size = int(line[line.rindex(b"{") + 1:line.rindex(b"+}")])
            reader.read(size)
            reader.readline()
            conn.sendall(tag + b" OK [APPENDUID 9 1] appended\r\n")
            return True
        return super().handle(conn, reader, tag, verb, rest, line)


@pytest.fixture
def serve():
    started: list[tuple[Responder, imap.Connection]] = []

    def _serve(answer: t.Callable[[bytes, bytes], bytes], hangup: bool = False) -> tuple[imap.Connection, Responder]:
        responder = Responder(answer, hangup)
        responder.start()
        ep = imap.Endpoint(side="remote", host="127.0.0.1", port=responder.port, security="none", validate_certs=True,
                           ca_file=None, user="u", password="p", timeout=5.0)
        session = imap.Connection(ep)
        session.select("INBOX", readonly=True)
        started.append((responder, session))
        return session, responder

    yield _serve
    for responder, session in started:
        session.close()
        responder.listener.close()


def scripted(*responses: bytes, done: bytes = b"OK done") -> t.Callable[[bytes, bytes], bytes]:
    return lambda tag, _command: b"".join(responses) + tag + b" " + done + b"\r\n"


def body_response(seq: int, uid: int, body: bytes, flags: bytes = b"\\Seen", date: bytes = DATE) -> bytes:
    return (b"* %d FETCH (UID %d FLAGS (%s) INTERNALDATE \"%s\" BODY[] {%d}\r\n" % (seq, uid, flags, date, len(body))
            + body + b")\r\n")


def test_bodies_flags_and_dates_are_read_as_sent(serve):
    session, responder = serve(scripted(
        body_response(1, 1, b"one\r\n"),
        b"* 2 FETCH (BODY[] {5}\r\ntwo\r\n INTERNALDATE \" 2-feb-2024 03:04:05 -0000\" UID 2 FLAGS ())\r\n",
        b"* 3 FETCH (UID 3 BODY[] \"three \\\"quoted\\\"\" FLAGS (\\Flagged $Label1))\r\n",
        b"* 9 EXISTS\r\n* 3 FETCH (FLAGS (\\Seen))\r\n",  # other responses, an unsolicited flag update: dropped
    ))
    got = session.fetch([1, 2, 3], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"], sizes={1: 5, 2: 5, 3: 14})
    assert responder.commands[-1] == b"UID FETCH 1:3 (BODY.PEEK[] FLAGS INTERNALDATE)"
    assert got[1] == {b"UID": 1, b"FLAGS": (b"\\Seen",), b"INTERNALDATE": DATE, b"BODY[]": b"one\r\n"}
    assert got[2] == {b"UID": 2, b"FLAGS": (), b"INTERNALDATE": b"02-Feb-2024 03:04:05 -0000", b"BODY[]": b"two\r\n"}
    assert got[3] == {b"UID": 3, b"FLAGS": (b"\\Flagged", b"$Label1"), b"BODY[]": b'three "quoted"'}
    assert session.alive


def test_a_fetched_date_goes_back_into_append_and_a_bad_one_is_left_out(serve):
    session, responder = serve(scripted())
    session.append_many("INBOX", [(b"x\r\n", (b"\\Seen",), DATE)])
    session.append_many("INBOX", [(b"x\r\n", (), b'01-Jan-2024 10:00:00 +0100" (\\Deleted')])
    assert responder.appends[0].endswith(b' (\\Seen) "' + DATE + b'" {3+}\r\n')
    assert responder.appends[1].endswith(b" () {3+}\r\n")


@pytest.mark.parametrize("raw, expected", [
    (DATE, DATE),
    (b" 1-jan-2024 10:00:00 +0100", b"01-Jan-2024 10:00:00 +0100"),
    (b"1-Jan-2024 10:00:00 +0100", b"01-Jan-2024 10:00:00 +0100"),
    (b"32-Jan-2024 10:00:00 +0100", None),
    (b"01-Jan-2024 24:00:00 +0100", None),
    (b"01-Foo-2024 10:00:00 +0100", None),
    (b"01-Jan-2024 10:00:00", None),
    (b"01-Jan-2024 10:00:00 +0100\r\nX", None),
    (b"Mon, 01 Jan 2024 10:00:00 +0100", None),
    (b"", None),
    (None, None),
    # the bounds of every field, in the form sent back (passed on as it is) and in the other forms
    (b"31-Dec-9999 23:59:60 -2359", b"31-Dec-9999 23:59:60 -2359"),
    (b"01-Jan-0001 00:00:00 +0000", b"01-Jan-0001 00:00:00 +0000"),
    (b"00-Jan-2024 10:00:00 +0100", None),
    (b"01-Jan-0000 10:00:00 +0100", None),
    (b"01-Jan-2024 10:60:00 +0100", None),
    (b"01-Jan-2024 10:00:61 +0100", None),
    (b"01-Jan-2024 10:00:00 +2400", None),
    (b"01-Jan-2024 10:00:00 +0160", None),
    (b"01-JAN-2024 10:00:00 +0100", b"01-Jan-2024 10:00:00 +0100"),
    (b" 9-Sep-2024 10:00:00 +0100", b"09-Sep-2024 10:00:00 +0100"),
    (bytearray(DATE), DATE),
    ("01-Jan-2024 10:00:00 +0100", None),
])
def test_internaldate_passes_only_the_rfc3501_form(raw, expected):
    got = fetchparse.internaldate(raw)
    assert got == expected and (got is None or isinstance(got, bytes))  # never a bytearray (bytes is not its base)
    if got == raw and isinstance(raw, bytes):
        assert got is raw  # the form sent back is passed on as it is, not rebuilt


def test_garbage_dates_and_flags_never_reach_a_command(serve):
    session, _responder = serve(scripted(
        body_response(1, 1, b"a", flags=b"\\Seen \"x) Z1 DELETE\"", date=b"yesterday"),
    ))
    got = session.fetch([1], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"], sizes={1: 1})
    assert b"INTERNALDATE" not in got[1]
    assert imap.split_flags(got[1][b"FLAGS"]) == ((b"\\Seen",), (b"x) Z1 DELETE",))


def test_a_response_for_a_uid_not_asked_for_is_dropped(serve):
    session, _responder = serve(scripted(body_response(1, 7, b"intruder"), body_response(2, 2, b"mine")))
    got = session.fetch([1, 2], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"], sizes={1: 4, 2: 4})
    assert list(got) == [2] and got[2][b"BODY[]"] == b"mine"


@pytest.mark.parametrize("response", [
    b"* 1 FETCH (UID 99999999999 FLAGS ())\r\n",  # beyond 32 bits
    b"* 1 FETCH (UID x1 FLAGS ())\r\n",
    b"* 1 FETCH (UID 1 RFC822.SIZE -5)\r\n",
    b"* 1 FETCH (UID 1 FLAGS ((nested)))\r\n",
    b"* 1 FETCH (UID 1 FLAGS)\r\n",  # an attribute without value
    b"* 1 FETCH (UID 1 BODY[] (a list))\r\n",
    b"* 1 FETCH (UID 1 FLAGS ()\r\n",  # the list never closes
    b"* 1 FETCH (UID 1 FLAGS ()) trailing\r\n",
    b"* 1 FETCH (UID 1 {3}\r\nabc FLAGS ())\r\n",
])
def test_a_response_that_cannot_be_read_breaks_the_protocol(serve, response):
    session, _responder = serve(scripted(response))
    with pytest.raises(errors.SyncError) as caught:
        session.fetch([1], ["FLAGS", "RFC822.SIZE"])
    assert caught.value.kind == errors.PROTOCOL_ERROR and "broke the IMAP protocol" in caught.value.message
    assert not session.alive  # nothing more is read from that server


def test_a_literal_beyond_the_bound_is_refused_before_it_is_read(serve):
    session, _responder = serve(scripted(b"* 1 FETCH (UID 1 FLAGS ({%d}\r\n" % (imap.MAX_LITERAL + 1)))
    with pytest.raises(errors.SyncError) as caught:
        session.fetch([1], ["FLAGS"])
    assert caught.value.kind == errors.PROTOCOL_ERROR and f"at most {imap.MAX_LITERAL}" in caught.value.message


def test_bodies_beyond_what_was_announced_break_the_bytes_bound(serve, monkeypatch):
    monkeypatch.setattr(imap, "MAX_MESSAGE", 1000)
    monkeypatch.setattr(imap, "MAX_RESPONSE_BYTES", 1000)
    session, _responder = serve(scripted(*[body_response(1, 1, b"x" * 900)] * 100))
    with pytest.raises(errors.SyncError) as caught:
        session.fetch([1], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"], sizes={1: 10})
    assert caught.value.kind == errors.PROTOCOL_ERROR and "bytes in answer to one command" in caught.value.message


def test_too_many_responses_break_the_protocol(serve, monkeypatch):
    monkeypatch.setattr(imap, "MAX_RESPONSES", 5)
    session, _responder = serve(scripted(*(b"* %d FETCH (UID 1 FLAGS ())\r\n" % n for n in range(1, 8))))
    with pytest.raises(errors.SyncError) as caught:
        session.fetch([1], ["FLAGS"])
    assert "more than 5 responses" in caught.value.message


@pytest.mark.parametrize("cut", [
    b"* 1 FETCH (UID 1 BODY[] {100}\r\nonly a part",  # in the middle of a literal
    b"* 1 FETCH (UID 1 FLAGS (\\Se",  # in the middle of a line
    b"* 1 FETCH (UID 1 FLAGS ())\r\n",  # before the completion
])
def test_a_truncated_response_is_a_lost_connection(serve, cut):
    session, _responder = serve(lambda _tag, _command: cut, hangup=True)
    with pytest.raises(errors.ConnectionLost):
        session.fetch([1], ["BODY.PEEK[]", "FLAGS"], sizes={1: 100})


def test_a_refused_fetch_keeps_the_servers_words(serve):
    session, _responder = serve(scripted(done=b"NO [UNAVAILABLE] try later"))
    with pytest.raises(errors.ServerBusy) as caught:
        session.fetch([1], ["FLAGS"])
    assert "try later" in caught.value.message


def test_sizes_between_names_the_uids_that_exist_with_their_sizes(serve):
    session, responder = serve(scripted(b"* 1 FETCH (UID 2 RFC822.SIZE 120)\r\n* 2 FETCH (RFC822.SIZE 7 UID 5)\r\n"
                                        b"* 3 FETCH (UID 11 RFC822.SIZE 9)\r\n"))  # outside the range: dropped
    assert session.sizes_between(1, 10) == [(2, 120), (5, 7)]
    assert responder.commands[-1] == b"UID FETCH 1:10 (RFC822.SIZE)"


class _Lines:
    """A response as the transport gives it (fetchparse.Reader without bounds)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readline(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        end = len(self.data) if end < 0 else end + 1
        line, self.pos = self.data[self.pos:end], end
        return line

    def read(self, size: int) -> bytes:
        chunk, self.pos = self.data[self.pos:self.pos + size], self.pos + size
        return chunk

    def response_kept(self) -> None:
        pass


def _both_readers(response: bytes) -> tuple[t.Any, t.Any]:
    """What the one-match reader (fetchparse._common) and the general one (_parse, _attributes) make of a response:
    a dict of attributes, None (the fast reader leaves it to the general one), or the exception's class."""
    reader = _Lines(response)
    first = reader.readline()
    start = fetchparse._FETCH_START.match(first)
    assert start is not None
    texts, literals = fetchparse._read_response(reader, first)
    fast = fetchparse._common(texts, literals, start.end())
    try:
        general: t.Any = fetchparse._attributes(fetchparse._parse(texts, literals, start.end()))
    except fetchparse.ServerViolation:
        general = fetchparse.ServerViolation
    return fast, general


USUAL = [
    b"* 1 FETCH (UID 7 FLAGS (\\Seen \\Recent $Foo) INTERNALDATE \"01-Jan-2024 00:00:00 +0000\" BODY[] {5}\r\nhello)\r\n",
    b"* 1 FETCH (UID 7 FLAGS () INTERNALDATE \"31-Dec-1999 23:59:60 -1200\" BODY[] {0}\r\n)\r\n",
    b"* 3 FETCH (UID 4294967295 RFC822.SIZE 0)\r\n",
]


@pytest.mark.parametrize("response", USUAL)
def test_dovecots_responses_are_read_in_one_match_as_the_general_reader_reads_them(response):
    fast, general = _both_readers(response)
    assert fast is not None and fast == general


ODD = [
    b"* 1 FETCH (UID 4294967296 RFC822.SIZE 1)\r\n",  # beyond 32 bits: the general reader refuses it
    b"* 1 FETCH (UID 1 RFC822.SIZE 99999999999)\r\n",
    b"* 1 FETCH (UID 1 RFC822.SIZE 1))\r\n",
    b"* 1 FETCH (UID 1  RFC822.SIZE 1)\r\n",
    b"* 1 FETCH (UID 1 RFC822.SIZE 1 )\r\n",
    b"* 1 FETCH (UID 1 RFC822.SIZE)\r\n",
    b"* 1 FETCH (UID 1x RFC822.SIZE 1)\r\n",
    b"* 1 FETCH (UID 1FLAGS ())\r\n",
    b"* 1 FETCH (UID 1xFLAGS ())\r\n",
    b"* 1 FETCH (FLAGS (\\Seen)UID 1)\r\n",
    b"* 1 FETCH ()\r\n",
    b"* 1 FETCH (UID 1 FLAGS (\\Seen \"quoted\") RFC822.SIZE 1)\r\n",
    b"* 1 FETCH (UID 1 FLAGS ((\\Seen)) RFC822.SIZE 1)\r\n",
    b"* 1 FETCH (UID 1 FLAGS (\\Seen  $x))\r\n",
    b"* 1 FETCH (UID 1 FLAGS (a{3}))\r\n",
    b"* 1 FETCH (UID 1 INTERNALDATE \"01-Jan-2024 00:00:00 +0000\" INTERNALDATE \"garbage\")\r\n",
    b"* 1 FETCH (UID 1 INTERNALDATE \"1-jan-2024 00:00:00 +0000\")\r\n",
    b"* 1 FETCH (UID 1 INTERNALDATE \"01-Jan-2024 00:00:00 +0000\\\"\")\r\n",
    b"* 1 FETCH (UID 1 INTERNALDATE NIL)\r\n",
    b"* 1 FETCH (uid 1 flags (\\seen) internaldate \"01-JAN-2024 00:00:00 +0000\" body[] {2}\r\nhi)\r\n",
    b"* 1 FETCH (UID 1 BODY[] {2}\r\nhi FLAGS (\\Seen))\r\n",
    b"* 1 FETCH (UID 1 BODY[] {2}\r\nhi) extra\r\n",
    b"* 1 FETCH (UID 1 BODY[] NIL)\r\n",
    b"* 1 FETCH (UID 1 BODY[] \"inline\")\r\n",
    b"* 1 FETCH (UID 1 FLAGS {2}\r\nab)\r\n",
    b"* 1 FETCH (UID 1 X-GM-LABELS (\\Inbox) RFC822.SIZE 3)\r\n",
    b"* 1 FETCH (RFC822.SIZE 3 UID 1 UID 2)\r\n",
    b"* 1 FETCH (BODY[] {1}\r\nx BODY[] {1}\r\ny UID 1)\r\n",
]


@pytest.mark.parametrize("response", ODD)
def test_the_one_match_reader_never_reads_a_response_otherwise_than_the_general_reader(response):
    fast, general = _both_readers(response)
    assert fast is None or fast == general


def test_the_one_match_reader_agrees_with_the_general_reader_on_generated_responses():
    """Responses built from the attributes the engine asks for, in every order, with odd spacing, case, dates, flags
    and numbers: the one-match reader gives what the general one gives, or leaves the response to it."""
    import random  # pylint: disable=import-outside-toplevel

    rng = random.Random(11)
    numbers = [b"0", b"7", b"007", b"4294967295", b"4294967296", b"12345678901", b"-1", b"1x"]
    dates = [b"01-Jan-2024 00:00:00 +0000", b" 1-Jan-2024 00:00:00 +0000", b"1-jan-2024 00:00:00 +0000", b"32-Jan-2024 00:00:00 +0000",
             b"01-Jan-2024 24:00:00 +0000", b"", b"x", b"01-Jan-0000 00:00:00 +0000"]
    flags = [b"", b"\\Seen", b"\\Seen $Foo \\Answered", b"\\Seen  $Foo", b"\\*", b"a]b", b"\xc3\xa9", b"\\Seen \"q\"", b"(x)"]
    names = {b"UID": numbers, b"RFC822.SIZE": numbers}
    fast_taken = 0
    for _round in range(3000):
        items = []
        for name in rng.sample([b"UID", b"RFC822.SIZE", b"FLAGS", b"INTERNALDATE"], rng.randint(1, 4)):
            if name in names:
                value = rng.choice(names[name])
            elif name == b"FLAGS":
                value = b"(" + rng.choice(flags) + b")"
            else:
                value = b'"' + rng.choice(dates) + b'"'
            items.append((name.lower() if rng.random() < 0.1 else name) + rng.choice([b" ", b" ", b" ", b"  "]) + value)
        body = rng.random() < 0.5
        text = b" ".join(items) + (b" BODY[] {3}\r\nabc" if body else b"") + rng.choice([b")", b")", b")", b") ", b"))"])
        fast, general = _both_readers(b"* 1 FETCH (" + text + b"\r\n")
        assert fast is None or fast == general, text
        fast_taken += fast is not None
    assert fast_taken > 300  # the generated responses include many of the common form
