# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A scripted IMAP server on a loopback socket for the unit tests that drive imap.Connection (test_imapclient_compat.py,
test_fetchparse.py, test_oauth_login.py): one connection; it logs in (AUTHENTICATE: :meth:`Responder.authenticate`),
answers CAPABILITY, SELECT/EXAMINE and LOGOUT, records every command, and leaves the other commands to
:meth:`Responder.handle`."""

from __future__ import annotations

import socket
import threading
import typing as t


class Responder(threading.Thread):
    """One scripted connection; a subclass answers the commands of its test in :meth:`handle`."""

    selected = b"OK selected"  # the tagged answer to SELECT/EXAMINE

    def __init__(self, caps: bytes) -> None:
        super().__init__(daemon=True)
        self.caps = caps
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.commands: list[bytes] = []

    def handle(self, conn: socket.socket, reader: t.Any, tag: bytes, verb: bytes, rest: bytes, line: bytes) -> bool:
        """Answer one command; False ends the connection. By default: BAD."""
        conn.sendall(tag + b" BAD unknown\r\n")
        return True

    def authenticate(self, conn: socket.socket, reader: t.Any, tag: bytes, rest: bytes) -> None:  # pylint: disable=unused-argument
        """Answer AUTHENTICATE (``rest`` names the mechanism). By default: any response is accepted."""
        conn.sendall(b"+ \r\n")
        reader.readline()
        self.logged_in(conn, tag)

    def logged_in(self, conn: socket.socket, tag: bytes) -> None:
        conn.sendall(tag + b" OK [CAPABILITY " + self.caps + b"] logged in\r\n")

    def run(self) -> None:
        conn, _addr = self.listener.accept()
        with conn, conn.makefile("rb") as reader:
            conn.sendall(b"* OK [CAPABILITY " + self.caps + b"] ready\r\n")
            while True:
                line = reader.readline()
                if not line:
                    return
                tag, _sp, rest = line.rstrip(b"\r\n").partition(b" ")
                self.commands.append(rest)
                verb = rest.split(b" ")[0].upper()
                if verb == b"AUTHENTICATE":
                    self.authenticate(conn, reader, tag, rest)
                elif verb == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY " + self.caps + b"\r\n" + tag + b" OK done\r\n")
                elif verb in (b"SELECT", b"EXAMINE"):
                    conn.sendall(b"* 3 EXISTS\r\n* OK [UIDVALIDITY 9] ok\r\n* OK [UIDNEXT 4] ok\r\n" + tag + b" " + self.selected + b"\r\n")
                elif verb == b"LOGOUT":
                    conn.sendall(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
                    return
                elif not self.handle(conn, reader, tag, verb, rest, line):
                    return
