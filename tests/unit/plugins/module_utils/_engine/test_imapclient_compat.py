# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each entry point of imapclient_compat (the one module that uses imapclient's and imaplib's private internals)
against an in-process IMAP responder on a loopback socket, through imap.Connection: an imapclient upgrade that
changes those internals fails here. (STARTTLS: tests/integration/test_engine.py, against Dovecot.)"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import typing as t
from importlib import metadata

import imapclient
import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import imap, imapclient_compat
from ansible_collections.mailops.imap.tests.unit.plugins.module_utils._engine import responder

CAPS = b"IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS SPECIAL-USE LIST-STATUS FILTER=SIEVE AUTH=PLAIN"


class Responder(responder.Responder):
    """Answers the commands the engine sends (LIST, CREATE, SUBSCRIBE, STATUS, UID FILTER, APPEND), records them."""

    selected = b"OK [READ-WRITE] selected"

    def __init__(self, caps: bytes = CAPS) -> None:
        super().__init__(caps)
        self.appended: list[bytes] = []

    def handle(self, conn: socket.socket, reader: t.Any, tag: bytes, verb: bytes, rest: bytes, line: bytes) -> bool:
        if verb == b"LIST":
            conn.sendall(b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n* STATUS Sent (MESSAGES 2 UIDNEXT 7 UIDVALIDITY 9)\r\n'
                         b'* LIST (\\HasNoChildren) "/" INBOX\r\n' + tag + b" OK listed\r\n")
        elif verb == b"CREATE":
            answer = b" NO [ALREADYEXISTS] exists\r\n" if b"Old" in rest else b" OK created\r\n"
            conn.sendall(tag + answer)
        elif verb == b"SUBSCRIBE":
            conn.sendall(tag + b" OK subscribed\r\n")
        elif verb == b"STATUS":
            name = rest.split(b" ")[1]
            conn.sendall(b"* STATUS " + name + b" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 77)\r\n" + tag + b" OK status\r\n")
        elif verb == b"UID" and b"FILTER" in rest:
            answer = b" NO script failed\r\n" if b"UID 9" in rest else b" OK filtered\r\n"
            conn.sendall(b"* 1 FILTERED (UID 3)\r\n" + tag + answer)
        elif verb == b"APPEND":
            self._append(conn, reader, tag, line)
        else:
            return super().handle(conn, reader, tag, verb, rest, line)
        return True

    def _append(self, conn: socket.socket, reader: t.Any, tag: bytes, line: bytes) -> None:
        bodies = []
        while True:
            match = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
            if not match:
                break
            if not match.group(2):
                if b"(\\Refused)" in line:
                    conn.sendall(tag + b" NO [LIMIT] refused before the literal\r\n")
                    return
                conn.sendall(b"+ go\r\n")
            bodies.append(reader.read(int(match.group(1))))
            line = reader.readline()
        if any(b"over quota" in body for body in bodies):
            conn.sendall(tag + b" NO [OVERQUOTA] over quota\r\n")
            return
        self.appended.extend(bodies)
        conn.sendall(tag + f" OK [APPENDUID 9 {':'.join(['1', str(len(bodies))]) if len(bodies) > 1 else '1'}] appended\r\n".encode())


@pytest.fixture
def connect():
    started: list[Responder] = []
    sessions: list[imap.Connection] = []

    def _connect(caps: bytes = CAPS) -> tuple[imap.Connection, Responder]:
        responder = Responder(caps)
        responder.start()
        started.append(responder)
        ep = imap.Endpoint(side="local", host="127.0.0.1", port=responder.port, security="none", validate_certs=True,
                           ca_file=None, user="u", password="p", timeout=5.0)
        session = imap.Connection(ep)
        sessions.append(session)
        return session, responder

    yield _connect
    for session in sessions:
        session.close()
    for responder in started:
        responder.listener.close()


def test_the_client_runs_on_the_engines_bounded_transport(connect):
    session, _responder = connect()
    assert isinstance(session.client, imapclient_compat.Client)
    assert isinstance(imapclient_compat.transport(session.client), imap._IMAP4)  # pylint: disable=protected-access
    assert session.has("LIST-STATUS") and imapclient_compat.MAX_LINE > 0


def test_list_returning_gives_folders_and_their_statuses(connect):
    session, responder = connect()
    folders, statuses = session.list_folders()
    listed = [(flags, name) for flags, _sep, name in folders]
    assert listed == [((b"\\HASNOCHILDREN", b"\\SENT"), "Sent"), ((b"\\HASNOCHILDREN",), "INBOX")]
    assert statuses == {"Sent": {"MESSAGES": 2, "UIDNEXT": 7, "UIDVALIDITY": 9}}
    assert responder.commands[-1].startswith(b'LIST "" "*" RETURN (SPECIAL-USE STATUS (')


def test_create_keeps_the_servers_words_and_an_existing_folder_counts_as_created(connect):
    session, responder = connect()
    session.create("New")
    session.create("Old")  # NO [ALREADYEXISTS]
    assert [c for c in responder.commands if c.startswith(b"CREATE")] == [b'CREATE "New"', b'CREATE "Old"']


def test_create_subscribes_and_reads_the_status_in_the_same_round_trip(connect):
    session, responder = connect()
    session.create("Old")  # NO [ALREADYEXISTS]: the folder exists, its status counts
    assert responder.commands[-3:] == [b'CREATE "Old"', b'SUBSCRIBE "Old"', b'STATUS "Old" (MESSAGES UIDNEXT UIDVALIDITY)']
    sent = len(responder.commands)
    assert session.status("Old") == {"MESSAGES": 0, "UIDNEXT": 1, "UIDVALIDITY": 77}
    assert len(responder.commands) == sent, "the status read with CREATE costs no command"
    assert session.status("Old") == {"MESSAGES": 0, "UIDNEXT": 1, "UIDVALIDITY": 77}
    assert responder.commands[sent:] == [b'STATUS "Old" (MESSAGES UIDNEXT UIDVALIDITY)'], "it is used once"


def test_uid_filter_sieve_answers_none_or_the_servers_words(connect):
    session, responder = connect()
    session.select("INBOX", readonly=False)
    assert session.filter_sieve([1, 2, 3]) is None
    assert session.filter_sieve([9]) == "script failed"
    assert b"UID FILTER SIEVE DELIVERY UID 1:3" in responder.commands


@pytest.mark.parametrize("caps", [CAPS, CAPS.replace(b" LITERAL+", b"")])
def test_append_streams_literals_and_reads_appenduid(connect, caps):
    session, responder = connect(caps)
    assert session.append_many("INBOX", [(b"one\r\n", (b"\\Seen",), None), (b"two\r\n", (), None)]) == [1, 2]
    assert responder.appended == [b"one\r\n", b"two\r\n"]


@pytest.mark.parametrize("flags, body, words", [
    ((b"\\Refused",), b"x\r\n", "[LIMIT] refused before the literal"),  # NO instead of the continuation
    ((), b"over quota\r\n", "[OVERQUOTA] over quota"),  # NO at the end
])
def test_append_refusals_keep_the_servers_words(connect, flags, body, words):
    session, _responder = connect(CAPS.replace(b" LITERAL+", b""))
    with pytest.raises(imap.AppendRefused, match=re.escape(words)):
        session.append_many("INBOX", [(body, flags, None)])


def _import_in_a_new_process(code: str, path: str = "") -> str:
    """Run ``code`` after importing imapclient_compat in a fresh interpreter (``path`` first on sys.path): its stdout."""
    prelude = ("import sys\n" + (f"sys.path.insert(0, {path!r})\n" if path else "") +
               "from ansible_collections.mailops.imap.plugins.module_utils._engine import imapclient_compat\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", prelude + code], env=env, check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def test_imapclient_is_imported_without_importlib_metadata_and_with_its_own_version():
    out = _import_in_a_new_process("import imapclient\n"
                                   "print('importlib.metadata' in sys.modules, imapclient.__version__, imapclient.version_info)")
    assert out == f"False {metadata.version('imapclient')} {imapclient.version_info}"


def test_an_imapclient_wanting_more_of_its_version_module_gets_its_own(tmp_path):
    package = tmp_path / "imapclient"
    package.mkdir()
    (tmp_path / "imapclient-9.8.7.dist-info").mkdir()
    (package / "__init__.py").write_text("from .version import version as __version__, author\nclass IMAPClient:\n    pass\n")
    (package / "version.py").write_text("version = '9.8.7'\nauthor = 'its own'\n")
    out = _import_in_a_new_process("import imapclient\nprint(imapclient.__version__, imapclient.author)", str(tmp_path))
    assert out == "9.8.7 its own"
