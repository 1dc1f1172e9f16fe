# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An in-memory IMAP store behind the engine's own connection interface (plan.Mailbox and what apply.Applier calls).

Not a mock of imapclient: folders, UIDs, UIDVALIDITY, flags, INTERNALDATEs and bodies live in Python dicts and the
commands act on them as a server would (SEARCH criteria, FETCH items, MODSEQ with CONDSTORE, APPENDUID with UIDPLUS,
MULTIAPPEND all or nothing, APPENDLIMIT). Each server logs the commands its sessions received that read or open a
folder (``Server.commands``), so that tests can tell what a run cost.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import typing as t

from ansible_collections.mailops.imap.plugins.module_utils._engine import errors, identity, imap

_UIDVALIDITY = itertools.count(1000)
UTC = datetime.timezone.utc


def message(mid: str | None, subject: str = "hello", date: str = "Mon, 1 Jan 2024 10:00:00 +0000", body: str = "text") -> bytes:
    """An RFC 5322 message (without Message-ID when ``mid`` is None)."""
    head = (f"Message-ID: <{mid}>\r\n" if mid else "") + f"Date: {date}\r\nSubject: {subject}\r\nFrom: a@example.org\r\n"
    return f"{head}\r\n{body}\r\n".encode()


@dataclasses.dataclass
class Message:
    body: bytes
    flags: set[bytes]
    date: datetime.datetime
    modseq: int


@dataclasses.dataclass
class Folder:
    name: str
    uidvalidity: int = dataclasses.field(default_factory=lambda: next(_UIDVALIDITY))
    uidnext: int = 1
    modseq: int = 1
    messages: dict[int, Message] = dataclasses.field(default_factory=dict)
    special_use: bytes | None = None

    def bump(self) -> int:
        self.modseq += 1
        return self.modseq


class Server:
    """One IMAP server: its folders, its capabilities; ``refuse(body)`` is the text of an APPEND refusal, else None."""

    def __init__(self, caps: t.Iterable[str] = ("UIDPLUS", "MULTIAPPEND", "CONDSTORE"), appendlimit: int | None = None,
                 refuse: t.Callable[[bytes], str | None] | None = None) -> None:
        self.caps = {c.upper() for c in caps}
        self.appendlimit = appendlimit
        self.refuse = refuse or (lambda _body: None)
        self.folders: dict[str, Folder] = {"INBOX": Folder("INBOX")}
        self.sessions = 0
        self.fail_append_once = False  # the next APPEND loses the connection (before storing anything)
        self.commands: list[tuple[str, str]] = []  # (STATUS, SELECT, EXAMINE, SEARCH or FETCH, folder), in order
        self.filtered: list[int] = []  # the UIDs the sessions' Sieve filter ran on (FILTER=SIEVE), in order

    def add(self, folder: str, body: bytes, flags: t.Iterable[bytes] = (), date: datetime.datetime | None = None) -> int:
        box = self.folders.setdefault(folder, Folder(folder))
        uid = box.uidnext
        box.uidnext += 1
        box.messages[uid] = Message(body, set(flags), date or datetime.datetime(2024, 1, 1, 10, tzinfo=UTC), box.bump())
        return uid

    def expunge(self, folder: str, body: bytes) -> None:
        """Expunge the messages of ``folder`` with this body (another client deleted them)."""
        box = self.folders[folder]
        box.messages = {uid: msg for uid, msg in box.messages.items() if msg.body != body}
        box.bump()

    def recreate(self, folder: str) -> None:
        """Delete and recreate ``folder`` with the same messages: new UIDVALIDITY, new UIDs."""
        old = self.folders.pop(folder)
        for msg in old.messages.values():
            self.add(folder, msg.body, msg.flags, msg.date)

    def bodies(self, folder: str) -> list[bytes]:
        return [m.body for _u, m in sorted(self.folders[folder].messages.items())]

    def flags(self, folder: str) -> dict[bytes, set[bytes]]:
        """Body -> flags of every message of ``folder``."""
        return {m.body: set(m.flags) for m in self.folders[folder].messages.values()}

    def set_flags(self, folder: str, body: bytes, flags: t.Iterable[bytes]) -> None:
        box = self.folders[folder]
        for msg in box.messages.values():
            if msg.body == body:
                msg.flags, msg.modseq = set(flags), box.bump()

    def connect(self, _ep: t.Any = None) -> Session:
        self.sessions += 1
        return Session(self)

    def snapshot(self) -> dict[str, list[tuple[int, bytes, frozenset[bytes]]]]:
        return {name: [(uid, m.body, frozenset(m.flags)) for uid, m in sorted(box.messages.items())]
                for name, box in self.folders.items()}


class Session:
    """One logged-in connection to a :class:`Server` (the methods of imap.Connection the engine uses)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.alive = True
        self.selected: Folder | None = None
        self.readonly = True

    # -- session ------------------------------------------------------------------------------------
    def close(self) -> None:
        self.alive = False

    def has(self, capability: str) -> bool:
        return capability.upper() in self.server.caps

    def max_message(self) -> int:
        return min(self.server.appendlimit or imap.MAX_MESSAGE, imap.MAX_MESSAGE)

    def namespace(self) -> tuple[tuple[str, str], list[str]]:
        return ("", "/"), []

    # -- folders --------------------------------------------------------------------------------------
    def list_folders(self) -> tuple[list[tuple[tuple[bytes, ...], str, str]], dict[str, dict[str, int]]]:
        listed = [((box.special_use,) if box.special_use else (), "/", name) for name, box in self.server.folders.items()]
        return listed, {}

    def _folder(self, name: str) -> Folder:
        box = self.server.folders.get(name)
        if box is None:
            raise errors.SyncError(errors.PROTOCOL_ERROR, f"no folder {name!r}")
        return box

    def _log(self, command: str, folder: str) -> None:
        self.server.commands.append((command, folder))

    def status(self, folder: str) -> dict[str, int]:
        self._log("STATUS", folder)
        box = self._folder(folder)
        out = {"MESSAGES": len(box.messages), "UIDNEXT": box.uidnext, "UIDVALIDITY": box.uidvalidity}
        if self.has("CONDSTORE"):
            out["HIGHESTMODSEQ"] = box.modseq
        return out

    def select(self, folder: str, readonly: bool) -> dict[str, int]:
        self._log("EXAMINE" if readonly else "SELECT", folder)
        self.selected, self.readonly = self._folder(folder), readonly
        return {"EXISTS": len(self.selected.messages), "UIDNEXT": self.selected.uidnext, "UIDVALIDITY": self.selected.uidvalidity}

    def create(self, folder: str) -> None:
        self.server.folders.setdefault(folder, Folder(folder))

    # -- messages -----------------------------------------------------------------------------------------
    def _box(self, writing: bool = False) -> Folder:
        if self.selected is None:
            raise AssertionError("no folder selected")
        if writing and self.readonly:
            raise AssertionError(f"{self.selected.name} was selected read-only")
        return self.selected

    def search_uids(self, criteria: list[t.Any]) -> list[int]:
        box = self._box()
        self._log("SEARCH", box.name)
        return sorted(uid for uid, msg in box.messages.items() if _matches(uid, msg, list(criteria)))

    uid_windows = imap.Connection.uid_windows  # the engine's own windowing over search_uids
    size_windows = imap.Connection.size_windows  # and over sizes_between

    def sizes_between(self, first: int, last: int) -> list[tuple[int, int]]:
        box = self._box()
        self._log("FETCH", box.name)
        return sorted((uid, len(msg.body)) for uid, msg in box.messages.items() if first <= uid <= last)

    def fetch(self, uids: t.Sequence[int], items: list[str], modifiers: list[str] | None = None,
              sizes: t.Mapping[int, int] | None = None) -> dict[int, dict[bytes, t.Any]]:
        box = self._box()
        self._log("FETCH", box.name)
        out: dict[int, dict[bytes, t.Any]] = {}
        for uid in uids:
            msg = box.messages.get(uid)
            if msg is None:
                continue
            header = msg.body[:msg.body.find(b"\r\n\r\n") + 4]
            data: dict[bytes, t.Any] = {}
            for item in items:
                if item == "RFC822.SIZE":
                    data[b"RFC822.SIZE"] = len(msg.body)
                elif item == "FLAGS":
                    data[b"FLAGS"] = tuple(sorted(msg.flags))
                elif item == "INTERNALDATE":
                    data[b"INTERNALDATE"] = msg.date
                elif item == identity.ID_FIELDS:
                    wanted = [line for line in header.split(b"\r\n") if line.split(b":")[0].upper() in (b"MESSAGE-ID", b"DATE")]
                    data[b"BODY[HEADER.FIELDS (MESSAGE-ID DATE)]"] = b"\r\n".join(wanted) + b"\r\n\r\n"
                elif item == identity.HEADER:
                    data[b"BODY[HEADER]"] = header
                elif item == identity.CONTENT:
                    data[b"BODY[]"] = msg.body
                else:
                    raise AssertionError(f"FETCH item {item!r} unknown to the fake")
            out[uid] = data
        return out

    def store(self, uids: t.Sequence[int], flags: t.Sequence[bytes], add: bool) -> None:
        box = self._box(writing=True)
        for uid in uids:
            msg = box.messages.get(uid)
            if msg is not None:
                msg.flags = (msg.flags | set(flags)) if add else (msg.flags - set(flags))
                msg.modseq = box.bump()

    def uid_expunge(self, uids: t.Sequence[int]) -> None:
        box = self._box(writing=True)
        for uid in uids:
            if uid in box.messages and b"\\Deleted" in box.messages[uid].flags:
                del box.messages[uid]

    def expunge(self) -> None:
        box = self._box(writing=True)
        self.uid_expunge([uid for uid, msg in box.messages.items() if b"\\Deleted" in msg.flags])

    def append_many(self, folder: str, messages: list[tuple[bytes, tuple[bytes, ...], t.Any]]) -> list[int] | None:
        if self.server.fail_append_once:
            self.server.fail_append_once = False
            self.alive = False
            raise errors.ConnectionLost("The connection to the fake local server was lost while appending.", "local")
        box = self._folder(folder)
        for body, _flags, _date in messages:
            refused = self.server.refuse(body)
            if refused is None and len(body) > self.max_message():
                refused = "[TOOBIG] too big"
            if refused is not None:
                raise imap.AppendRefused(refused)  # all or nothing, as MULTIAPPEND
        uids = [self.server.add(folder, body, flags, date) for body, flags, date in messages]
        return uids if self.has("UIDPLUS") else None

    def append_stream(self, folder: str) -> Stream | None:
        """imap.Connection.append_stream: only where the server offers MULTIAPPEND and LITERAL+."""
        return Stream(self, folder) if self.has("MULTIAPPEND") and self.has("LITERAL+") else None

    def filter_sieve(self, uids: t.Sequence[int]) -> str | None:
        self.server.filtered.extend(uids)
        return None


class Stream:
    """imap.AppendStream on a fake session: the messages sent are stored when the command ends, all or nothing, by the
    session's append_many (so a test that wraps append_many sees each commit)."""

    def __init__(self, session: Session, folder: str) -> None:
        self.session = session
        self.folder = folder
        self.messages: list[tuple[bytes, tuple[bytes, ...], t.Any]] = []

    def add(self, messages: list[tuple[bytes, tuple[bytes, ...], t.Any]]) -> None:
        if not self.session.alive:
            raise errors.ConnectionLost("The connection to the fake local server was lost while appending.", "local")
        self.messages.extend(messages)

    def end(self) -> list[int] | None:
        messages, self.messages = self.messages, []
        return self.session.append_many(self.folder, messages) if messages else []


def _in_set(uid: int, text: str) -> bool:
    for part in text.split(","):
        low, _sep, high = part.partition(":")
        bounds = sorted(2 ** 32 if b == "*" else int(b) for b in (low, high or low))
        if bounds[0] <= uid <= bounds[1]:
            return True
    return False


def _matches(uid: int, msg: Message, criteria: list[t.Any]) -> bool:
    """Whether a message matches SEARCH ``criteria`` (the keys the engine uses), all of them."""
    while criteria:
        key = criteria.pop(0)
        if key == "NOT":
            if _matches(uid, msg, [criteria.pop(0)]):
                return False
        elif key == "ALL":
            continue
        elif key == "DELETED":
            if b"\\Deleted" not in msg.flags:
                return False
        elif key == "UNSEEN":
            if b"\\Seen" in msg.flags:
                return False
        elif key == "UID":
            if not _in_set(uid, str(criteria.pop(0))):
                return False
        elif key == "BEFORE":
            if msg.date.date() >= criteria.pop(0):
                return False
        elif key == "MODSEQ":
            if msg.modseq < int(criteria.pop(0)):
                return False
        else:
            raise AssertionError(f"SEARCH key {key!r} unknown to the fake")
    return True
