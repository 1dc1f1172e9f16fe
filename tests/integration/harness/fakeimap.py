"""A scriptable fake IMAP server on loopback, for the remote side of tests where a real server cannot misbehave.

It speaks enough IMAP4rev1 for the engine's remote connection (greeting, CAPABILITY, LOGIN, AUTHENTICATE PLAIN,
LIST, STATUS, SELECT/EXAMINE, UID SEARCH, UID FETCH of the stored messages, UID STORE, NOOP, LOGOUT), one thread per
connection, and lets a test make it hostile:

* :class:`FakeMessage` ``flags`` is the raw FLAGS value sent (literals and line breaks included), ``size`` the
  RFC822.SIZE announced, ``literal`` replaces the body literal by ``(announced size, chunks)`` streamed until the
  client hangs up (:attr:`FakeImap.body_bytes_sent` tells how far it got);
* folder names are any text (control characters included), in modified UTF-7 on the wire as on real servers;
* ``drip`` sends the greeting (``"greeting"``) or the responses to a command (``"FETCH"``, ``"LIST"``...) one byte
  every ``drip_interval`` seconds;
* ``extra_list`` yields raw untagged lines added to every LIST response (``* LIST () "/" name``, as many as wanted);
* ``keepalive`` maps a command (``"SEARCH"``...) to ``(count, interval)``: before its answer, ``count`` short
  ``* OK still working`` lines, one every ``interval`` seconds (as Dovecot's "Searched 42% of the mailbox").
"""

from __future__ import annotations

import base64
import dataclasses
import re
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from imapclient.imap_utf7 import decode as decode_utf7, encode as encode_utf7

_LITERAL_RE = re.compile(rb"\{(\d+)(\+?)\}\r\n\Z")


@dataclasses.dataclass
class FakeMessage:
    """A stored message; every field but ``body`` is sent as given (raw bytes), so it can be hostile."""

    body: bytes
    flags: bytes = b"(\\Seen)"
    internaldate: bytes = b'"17-May-2023 09:30:12 +0200"'
    size: int | None = None  # the RFC822.SIZE announced (default: the body's size)
    literal: tuple[int, Callable[[], Iterable[bytes]]] | None = None  # (announced size, chunks) instead of the body
    uid: int = 0


@dataclasses.dataclass
class FakeFolder:
    messages: list[FakeMessage] = dataclasses.field(default_factory=list)
    uidvalidity: int = 1
    uidnext: int = 1

    def add(self, message: FakeMessage) -> FakeMessage:
        message.uid = self.uidnext
        self.uidnext += 1
        self.messages.append(message)
        return message


def _astring(name: str) -> bytes:
    """A folder name on the wire: modified UTF-7 (control characters included), quoted."""
    raw = encode_utf7(name)
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _uids(spec: str, existing: list[int]) -> list[int]:
    top = max(existing, default=0)
    wanted: set[int] = set()
    for part in spec.split(","):
        if ":" in part:
            low_text, high_text = part.split(":")
            low = top if low_text == "*" else int(low_text)
            high = top if high_text == "*" else int(high_text)
            low, high = min(low, high), max(low, high)
            wanted.update(u for u in existing if low <= u <= high)
        else:
            uid = top if part == "*" else int(part)
            if uid in existing:
                wanted.add(uid)
    return sorted(wanted)


class _Session(socketserver.BaseRequestHandler):
    server: _Server

    def setup(self) -> None:
        self.fake = self.server.fake
        self.buffer = b""
        self.selected: FakeFolder | None = None
        self.request.settimeout(60)

    # -- I/O ---------------------------------------------------------------------------------------------
    def _recv_line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            chunk = self.request.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def _recv_exact(self, count: int) -> bytes | None:
        while len(self.buffer) < count:
            chunk = self.request.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _command(self) -> bytes | None:
        """One whole command, literals included (a synchronizing literal gets its continuation)."""
        out = b""
        while True:
            line = self._recv_line()
            if line is None:
                return None
            match = _LITERAL_RE.search(line)
            if not match:
                return out + line[:-2]
            if not match.group(2):
                self.request.sendall(b"+ go ahead\r\n")
            data = self._recv_exact(int(match.group(1)))
            if data is None:
                return None
            out += line[:match.start()] + b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'

    def _send(self, data: bytes, what: str) -> None:
        count, interval = self.fake.keepalive.get(what, (0, 0.0))
        for _line in range(count):
            self.request.sendall(b"* OK still working\r\n")
            time.sleep(interval)
        if what in self.fake.drip:
            for i in range(len(data)):
                self.request.sendall(data[i:i + 1])
                time.sleep(self.fake.drip_interval)
        else:
            self.request.sendall(data)

    # -- commands ----------------------------------------------------------------------------------------
    def handle(self) -> None:
        self.fake.connections += 1
        try:
            self._send(b"* OK [CAPABILITY " + self.fake.capability() + b"] fake IMAP ready\r\n", "greeting")
            while True:
                raw = self._command()
                if raw is None:
                    return
                words = raw.split(b" ", 2)
                if len(words) < 2:
                    self.request.sendall(b"* BAD empty command\r\n")
                    continue
                tag, name = words[0], words[1].upper().decode("ascii", "replace")
                rest = words[2] if len(words) > 2 else b""
                if name == "UID":
                    sub, _sep, rest = rest.partition(b" ")
                    name = sub.upper().decode("ascii", "replace")
                self.fake.commands.append(name)
                if not self._dispatch(tag, name, rest):
                    return
        except OSError:
            return

    def _dispatch(self, tag: bytes, name: str, rest: bytes) -> bool:
        fake = self.fake
        ok = tag + b" OK " + name.encode() + b" done\r\n"
        if name == "CAPABILITY":
            self._send(b"* CAPABILITY " + fake.capability() + b"\r\n" + ok, name)
        elif name == "LOGIN":
            self._send(ok if rest.split(b" ")[0].strip(b'"') == fake.user.encode() else tag + b" NO [AUTHENTICATIONFAILED] no\r\n", name)
        elif name == "AUTHENTICATE":
            self.request.sendall(b"+ \r\n")
            answer = self._recv_line() or b""
            parts = base64.b64decode(answer.strip() or b"=").split(b"\0")
            good = len(parts) == 3 and parts[1] == fake.user.encode() and parts[2] == fake.password.encode()
            self._send(ok if good else tag + b" NO [AUTHENTICATIONFAILED] no\r\n", name)
        elif name == "LIST":
            out = b"".join(b'* LIST (\\HasNoChildren) "/" ' + _astring(folder) + b"\r\n" for folder in fake.folders)
            self._send(out, name)
            if fake.extra_list is not None:
                chunk = []
                for line in fake.extra_list():
                    chunk.append(line)
                    if len(chunk) >= 1000:
                        self.request.sendall(b"".join(chunk))
                        chunk = []
                self.request.sendall(b"".join(chunk))
            self._send(ok, name)
        elif name == "STATUS":
            folder_name = self._folder_name(rest)
            folder = fake.folders.get(folder_name)
            if folder is None:
                self._send(tag + b" NO no such folder\r\n", name)
            else:
                self._send(b"* STATUS " + _astring(folder_name) + b" (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)\r\n"
                           % (len(folder.messages), folder.uidnext, folder.uidvalidity) + ok, name)
        elif name in ("SELECT", "EXAMINE"):
            folder = fake.folders.get(self._folder_name(rest))
            if folder is None:
                self._send(tag + b" NO no such folder\r\n", name)
            else:
                self.selected = folder
                self._send(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* %d EXISTS\r\n* 0 RECENT\r\n"
                           b"* OK [UIDVALIDITY %d] ok\r\n* OK [UIDNEXT %d] ok\r\n" % (len(folder.messages), folder.uidvalidity,
                                                                                      folder.uidnext) + ok, name)
        elif name == "SEARCH":
            self._search(tag, rest, ok)
        elif name == "FETCH":
            self._fetch(rest, ok)
        elif name in ("STORE", "EXPUNGE", "NOOP", "CHECK", "CLOSE", "UNSELECT", "ENABLE", "ID"):
            self._send(ok, name)
        elif name == "LOGOUT":
            self._send(b"* BYE bye\r\n" + ok, name)
            return False
        else:
            self._send(tag + b" BAD unknown command\r\n", name)
        return True

    @staticmethod
    def _folder_name(rest: bytes) -> str:
        match = re.match(rb'"((?:[^"\\]|\\.)*)"|(\S+)', rest, re.S)
        if match is None:
            return ""
        if match.group(1) is not None:
            return decode_utf7(re.sub(rb"\\(.)", rb"\1", match.group(1), flags=re.S))
        return decode_utf7(match.group(2))

    def _search(self, tag: bytes, rest: bytes, ok: bytes) -> None:
        folder = self.selected
        if folder is None:
            self._send(tag + b" BAD no folder selected\r\n", "SEARCH")
            return
        existing = [m.uid for m in folder.messages]
        match = re.search(rb"UID (\S+)", rest)
        found = _uids(match.group(1).decode(), existing) if match else existing
        self._send(b"* SEARCH" + b"".join(b" %d" % uid for uid in found) + b"\r\n" + ok, "SEARCH")

    def _fetch(self, rest: bytes, ok: bytes) -> None:
        folder = self.selected
        spec, _sep, items = rest.partition(b" ")
        items = items.upper()
        existing = [m.uid for m in folder.messages] if folder else []
        for uid in _uids(spec.decode(), existing):
            seq = existing.index(uid) + 1
            msg = next(m for m in folder.messages if m.uid == uid)  # type: ignore[union-attr]
            parts = [b"UID %d" % uid]
            if b"RFC822.SIZE" in items:
                parts.append(b"RFC822.SIZE %d" % (msg.size if msg.size is not None else len(msg.body)))
            if b"FLAGS" in items:
                parts.append(b"FLAGS " + msg.flags)
            if b"INTERNALDATE" in items:
                parts.append(b"INTERNALDATE " + msg.internaldate)
            head = b"* %d FETCH (" % seq + b" ".join(parts)
            if b"BODY.PEEK[HEADER.FIELDS" in items or b"BODY.PEEK[HEADER]" in items:
                header = msg.body.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                key = items[items.index(b"BODY.PEEK[") + 5:items.index(b"]", items.index(b"BODY.PEEK[")) + 1]
                self._send(head + b" " + key + b" {%d}\r\n" % len(header) + header + b")\r\n", "FETCH")
            elif b"BODY.PEEK[]" in items:
                if msg.literal is not None:
                    announced, chunks = msg.literal
                    self.request.sendall(head + b" BODY[] {%d}\r\n" % announced)
                    for chunk in chunks():
                        self.request.sendall(chunk)
                        self.fake.body_bytes_sent += len(chunk)
                    return
                self._send(head + b" BODY[] {%d}\r\n" % len(msg.body) + msg.body + b")\r\n", "FETCH")
            else:
                self._send(head + b")\r\n", "FETCH")
        self._send(ok, "FETCH")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeImap


class FakeImap:
    """The fake server; use as a context manager (``host`` and ``port`` are set while it runs)."""

    def __init__(self, user: str = "fake", password: str = "secret", auth_plain: bool = True) -> None:
        self.user = user
        self.password = password
        self.auth_plain = auth_plain
        self.folders: dict[str, FakeFolder] = {"INBOX": FakeFolder()}
        self.drip: set[str] = set()
        self.drip_interval = 0.2
        self.keepalive: dict[str, tuple[int, float]] = {}
        self.extra_list: Callable[[], Iterator[bytes]] | None = None
        self.commands: list[str] = []
        self.connections = 0
        self.body_bytes_sent = 0
        self.host = "127.0.0.1"
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def capability(self) -> bytes:
        return b"IMAP4rev1 LITERAL+ UIDPLUS" + (b" AUTH=PLAIN" if self.auth_plain else b"")

    def folder(self, name: str) -> FakeFolder:
        return self.folders.setdefault(name, FakeFolder())

    def __enter__(self) -> FakeImap:
        self._server = _Server((self.host, 0), _Session)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def task(self, local_user: str, **overrides: object) -> dict[str, object]:
        """The data of a task (config.parse_task) with this server as the remote."""
        data: dict[str, object] = {
            "local_user": local_user, "remote_user": self.user, "remote_password": self.password,
            "remote_host": self.host, "remote_port": self.port, "remote_security": "none",
        }
        data.update(overrides)
        return data


def hostile_flag_payload(victim: str) -> bytes:
    """A FLAGS value whose keyword, joined raw into a command, would end it and run ``DELETE victim``."""
    payload = b'x)\r\nZ1 DELETE "' + victim.encode() + b'"\r\nZ2 NOOP (x'
    return b"(\\Seen \\Flagged {%d}\r\n" % len(payload) + payload + b")"


__all__ = ["FakeFolder", "FakeImap", "FakeMessage", "hostile_flag_payload"]
