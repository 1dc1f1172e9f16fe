"""Build messages, seed mailboxes and take comparable snapshots of IMAP accounts.

Everything here talks IMAP through imapclient to a :class:`~harness.dovecot.DovecotServer` (anything with
``host``, ``port``, ``ssl_port``, ``separator``, ``ssl_context()`` and, for master logins,
``master_user``/``master_password``/``master_separator`` works).

imapclient 4 refuses message-set strings such as ``"1:*"``; every helper here searches first and then
fetches or stores explicit lists of at most :data:`CHUNK` UIDs.
"""

from __future__ import annotations

import contextlib
import email
import email.header
import email.message
import email.policy
import email.utils
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple, Union

from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from imapclient.imapclient import _literal

CHUNK = 500
DEFAULT_DATE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
DEFAULT_FROM = "Alice Sender <alice@remote.example>"
DEFAULT_TO = "Bob Receiver <bob@local.example>"
CRLF = b"\r\n"
_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)

Flags = Sequence[Union[str, bytes]]
SeedItem = Union[bytes, tuple]


class MessageRecord(NamedTuple):
    """One message in a :func:`snapshot`: content hash, flags (without ``\\Recent``), INTERNALDATE (UTC ISO), size."""

    sha256: str
    flags: frozenset
    internaldate: str
    size: int


@dataclass(frozen=True)
class FolderInfo:
    """One folder as seen by LIST/LSUB: its LIST flags (str, e.g. ``\\Sent``, ``\\HasNoChildren``), delimiter,
    whether it is subscribed and whether it exists (LSUB may name folders LIST does not)."""

    name: str
    flags: frozenset
    delimiter: str | None
    subscribed: bool
    exists: bool = True

    @property
    def selectable(self) -> bool:
        """False for ``\\Noselect``/``\\NonExistent`` entries."""
        lowered = {flag.lower() for flag in self.flags}
        return self.exists and "\\noselect" not in lowered and "\\nonexistent" not in lowered


@dataclass
class MessageInfo:
    """A message as returned by :func:`messages`; handy in :func:`set_flags` predicates."""

    uid: int
    flags: frozenset
    internaldate: datetime
    size: int
    header: email.message.Message = field(repr=False)
    body: bytes | None = field(default=None, repr=False)

    @property
    def subject(self) -> str | None:
        """The decoded Subject header."""
        value = self.header.get("Subject")
        return None if value is None else str(value)

    @property
    def message_id(self) -> str | None:
        """The Message-ID header, stripped."""
        value = self.header.get("Message-ID")
        return None if value is None else str(value).strip()


# ---------------------------------------------------------------------- messages


def make_message(
    subject: str,
    body: str | bytes | None = None,
    *,
    message_id: str | bool | None = True,
    date: datetime | str | None = None,
    size: int | None = None,
    sender: str = DEFAULT_FROM,
    to: str = DEFAULT_TO,
    extra_headers: Iterable[tuple[str, str]] | dict[str, str] | None = None,
) -> bytes:
    """Return a deterministic RFC 5322 message (CRLF line endings) as bytes.

    *message_id*: True (default) derives a stable ``<...@mailops.test>`` id from subject, date and body;
    a string is used as is (angle brackets added when missing); None or False omits the header.
    *date*: the Date header (aware datetime or preformatted string), default :data:`DEFAULT_DATE`.
    *size*: pad the text body with numbered lines so that the whole message is exactly *size* bytes.
    *extra_headers*: more headers, appended in order.
    """
    if date is None:
        date = DEFAULT_DATE
    date_text = email.utils.format_datetime(date) if isinstance(date, datetime) else date
    if body is None:
        body = f"This is the body of the message {subject!r}.\n"
    body_bytes = body.encode("utf-8") if isinstance(body, str) else body
    body_bytes = _crlf(body_bytes)
    if not body_bytes.endswith(CRLF):
        body_bytes += CRLF

    headers: list[tuple[str, str]] = [
        ("From", sender),
        ("To", to),
        ("Subject", _encode_header(subject)),
        ("Date", date_text),
    ]
    if message_id is True:
        digest = hashlib.sha256(b"\0".join([subject.encode("utf-8"), date_text.encode("ascii"), body_bytes])).hexdigest()
        headers.append(("Message-ID", f"<{digest[:24]}@mailops.test>"))
    elif isinstance(message_id, str) and message_id:
        headers.append(("Message-ID", message_id if message_id.startswith("<") else f"<{message_id}>"))
    eight_bit = any(byte > 127 for byte in body_bytes)
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit" if eight_bit else "7bit"),
    ]
    if extra_headers:
        headers += list(extra_headers.items() if isinstance(extra_headers, dict) else extra_headers)
    head = b"".join(f"{name}: {value}".encode("utf-8") + CRLF for name, value in headers)
    message = head + CRLF + body_bytes
    if size is None:
        return message
    missing = size - len(message)
    if missing < 0:
        raise ValueError(f"size {size} is smaller than the unpadded message ({len(message)} bytes)")
    return message[:-2] + _filler(missing) + CRLF


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", CRLF, data)


def _encode_header(value: str) -> str:
    if value.isascii():
        return value
    return email.header.Header(value, "utf-8").encode(linesep="\r\n")


def _filler(length: int) -> bytes:
    """Deterministic padding of exactly *length* bytes: CRLF-separated numbered lines, never ending in CR."""
    if length <= 0:
        return b""
    parts = []
    total = 0
    number = 0
    while total < length:
        line = f"\r\n{number:08d} " + "the quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLM"
        parts.append(line)
        total += len(line)
        number += 1
    filler = "".join(parts).encode("ascii")[:length]
    if filler.endswith(b"\r"):
        filler = filler[:-1] + b"."
    return filler


# ---------------------------------------------------------------------- connections


def connect(server: Any, security: str = "none", timeout: float = 60.0) -> IMAPClient:
    """Open an unauthenticated IMAPClient to *server*: ``none`` (plain port), ``starttls`` or ``ssl`` (IMAPS port),
    verifying the server against its own certificate."""
    if security == "ssl":
        return IMAPClient(server.host, server.ssl_port, ssl=True, ssl_context=server.ssl_context(), timeout=timeout)
    client = IMAPClient(server.host, server.port, ssl=False, timeout=timeout)
    if security == "starttls":
        client.starttls(server.ssl_context())
    elif security != "none":
        raise ValueError(f"unknown security {security!r}")
    return client


def imap_login(client: IMAPClient, user: str, password: str) -> None:
    """IMAP ``LOGIN`` that also works with non-ASCII credentials (sent as literals; imaplib only sends ASCII)."""
    if user.isascii() and password.isascii():
        client.login(user, password)
        return
    typ, data = client._raw_command(  # pylint: disable=protected-access
        b"LOGIN", [_literal(user.encode("utf-8")), _literal(password.encode("utf-8"))], uid=False,
    )
    if typ != "OK":
        raise LoginError(f"LOGIN failed: {data!r}")
    client._imap.state = "AUTH"  # pylint: disable=protected-access
    client._cached_capabilities = None  # pylint: disable=protected-access


def login(
    server: Any,
    user: str,
    password: str | None = None,
    *,
    master: bool = False,
    method: str = "plain",
    security: str = "none",
    timeout: float = 60.0,
) -> IMAPClient:
    """Connect and authenticate; returns a logged-in IMAPClient (caller logs out; see :func:`session`).

    *master* (implied when *password* is None): log in as *user* through the server's master user, with
    ``AUTHENTICATE PLAIN`` (authzid=user, authcid=master) for ``method="plain"`` or ``LOGIN user*master``
    for ``method="login"``. Otherwise ``AUTHENTICATE PLAIN`` or ``LOGIN`` with *password*.
    """
    if method not in ("plain", "login"):
        raise ValueError(f"unknown method {method!r}")
    master = master or password is None
    if master and not getattr(server, "master_user", None):
        raise ValueError(f"{server!r} has no master user; give a password")
    client = connect(server, security=security, timeout=timeout)
    try:
        if master and method == "plain":
            client.plain_login(server.master_user, server.master_password, authorization_identity=user)
        elif master:
            imap_login(client, f"{user}{server.master_separator}{server.master_user}", server.master_password)
        elif method == "plain":
            client.plain_login(user, password)
        else:
            imap_login(client, user, password)
    except BaseException:
        _close(client)
        raise
    client.normalise_times = False
    return client


@contextlib.contextmanager
def session(server: Any, user: str, password: str | None = None, **kwargs: Any) -> Iterator[IMAPClient]:
    """Context manager around :func:`login` that logs out at the end."""
    client = login(server, user, password, **kwargs)
    try:
        yield client
    finally:
        _close(client)


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # pylint: disable=broad-exception-caught
        with contextlib.suppress(Exception):
            client.shutdown()


# ---------------------------------------------------------------------- seeding


def seed(
    server: Any,
    user: str,
    password: str | None,
    folder: str,
    messages: Iterable[SeedItem],
    *,
    master: bool = False,
    create_parents: bool = True,
    subscribe: bool = True,
    batch_bytes: int = 8 * 1024 * 1024,
    batch_count: int = 100,
) -> list[int]:
    """Append *messages* to *folder* (created, with its parents, and subscribed when missing); return their UIDs.

    Each message is ``bytes`` or a tuple ``(bytes, flags, internaldate)`` (flags and date optional; the date must
    be timezone-aware). Uses MULTIAPPEND in batches of at most *batch_count* messages / *batch_bytes* bytes.
    """
    items = [_seed_item(item) for item in messages]
    with session(server, user, password, master=master) as client:
        ensure_folder(client, folder, separator=server.separator, create_parents=create_parents, subscribe=subscribe)
        uids: list[int] = []
        batch: list[dict] = []
        batch_size = 0
        for item in items:
            if batch and (len(batch) >= batch_count or batch_size + len(item["msg"]) > batch_bytes):
                uids += _append_batch(client, folder, batch)
                batch, batch_size = [], 0
            batch.append(item)
            batch_size += len(item["msg"])
        if batch:
            uids += _append_batch(client, folder, batch)
        return uids


def _seed_item(item: SeedItem) -> dict:
    if isinstance(item, (bytes, bytearray)):
        return {"msg": bytes(item)}
    msg = item[0]
    flags = item[1] if len(item) > 1 else ()
    date = item[2] if len(item) > 2 else None
    entry: dict[str, Any] = {"msg": bytes(msg), "flags": tuple(flags or ())}
    if date is not None:
        if date.tzinfo is None:
            raise ValueError("INTERNALDATE must be a timezone-aware datetime")
        entry["date"] = date
    return entry


def _append_batch(client: IMAPClient, folder: str, batch: list[dict]) -> list[int]:
    typ, data = client.multiappend(folder, batch)
    if typ != "OK":
        raise RuntimeError(f"APPEND to {folder!r} failed: {data!r}")
    found = _APPENDUID_RE.search(b" ".join(part for part in data if isinstance(part, bytes)))
    if not found:
        return []
    return _parse_uid_set(found.group(2).decode("ascii"))


def _parse_uid_set(text: str) -> list[int]:
    uids: list[int] = []
    for part in text.split(","):
        if ":" in part:
            low, high = sorted(int(value) for value in part.split(":"))
            uids.extend(range(low, high + 1))
        else:
            uids.append(int(part))
    return uids


def ensure_folder(client: IMAPClient, folder: str, *, separator: str | None = None, create_parents: bool = True,
                  subscribe: bool = True) -> None:
    """Create *folder* (and, with *create_parents*, each missing parent) and subscribe it; INBOX is left alone."""
    if folder.upper() == "INBOX":
        return
    if separator is None:
        separator = client.namespace().personal[0][1] or "/"
    parts = folder.split(separator)
    names = [separator.join(parts[:index]) for index in range(1, len(parts) + 1)] if create_parents else [folder]
    for name in names:
        if name.upper() == "INBOX" or client.folder_exists(name):
            continue
        client.create_folder(name)
        if subscribe:
            client.subscribe_folder(name)


# ---------------------------------------------------------------------- reading


def folders(server: Any, user: str, password: str | None = None, master: bool = False) -> dict[str, FolderInfo]:
    """LIST and LSUB of the account: folder name (str, as listed) -> :class:`FolderInfo`."""
    with session(server, user, password, master=master) as client:
        return _folders(client)


def _folders(client: IMAPClient) -> dict[str, FolderInfo]:
    listed = {name: (flags, delim) for flags, delim, name in client.list_folders()}
    subscribed = {name for _flags, _delim, name in client.list_sub_folders()}
    result = {}
    for name in sorted(set(listed) | subscribed):
        flags, delim = listed.get(name, ((), None))
        result[name] = FolderInfo(
            name=name,
            flags=frozenset(_text(flag) for flag in flags),
            delimiter=_text(delim) if delim is not None else None,
            subscribed=name in subscribed,
            exists=name in listed,
        )
    return result


def snapshot(server: Any, user: str, password: str | None = None, master: bool = False,
             include: Callable[[str], bool] | None = None) -> dict[str, list[MessageRecord]]:
    """Every selectable folder -> sorted list of :class:`MessageRecord` (empty folders included).

    Compare two snapshots with ``==``; *include* optionally filters folder names.
    """
    result: dict[str, list[MessageRecord]] = {}
    with session(server, user, password, master=master) as client:
        for name, info in _folders(client).items():
            if not info.selectable or (include is not None and not include(name)):
                continue
            records = []
            for _uid, data in _fetch(client, name, [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]):
                body = data[b"BODY[]"]
                records.append(MessageRecord(
                    sha256=hashlib.sha256(body).hexdigest(),
                    flags=_flags(data[b"FLAGS"]),
                    internaldate=_utc_iso(data[b"INTERNALDATE"]),
                    size=int(data[b"RFC822.SIZE"]),
                ))
            result[name] = sorted(records, key=lambda rec: (rec.sha256, sorted(rec.flags), rec.internaldate, rec.size))
    return result


def messages(server: Any, user: str, password: str | None, folder: str, *, master: bool = False,
             with_body: bool = False) -> list[MessageInfo]:
    """The messages of *folder* in UID order (headers parsed; the full bytes with *with_body*)."""
    items = [b"BODY.PEEK[]" if with_body else b"BODY.PEEK[HEADER]", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]
    with session(server, user, password, master=master) as client:
        return [_message_info(uid, data) for uid, data in _fetch(client, folder, items)]


def _message_info(uid: int, data: dict) -> MessageInfo:
    raw = data.get(b"BODY[]")
    header_bytes = raw if raw is not None else data[b"BODY[HEADER]"]
    return MessageInfo(
        uid=uid,
        flags=_flags(data[b"FLAGS"]),
        internaldate=data[b"INTERNALDATE"],
        size=int(data[b"RFC822.SIZE"]),
        header=email.message_from_bytes(header_bytes, policy=email.policy.default),
        body=raw,
    )


def _fetch(client: IMAPClient, folder: str, items: list[bytes], readonly: bool = True) -> Iterator[tuple[int, dict]]:
    client.select_folder(folder, readonly=readonly)
    uids = sorted(client.search(["ALL"]))
    for start in range(0, len(uids), CHUNK):
        chunk = uids[start:start + CHUNK]
        response = client.fetch(chunk, items)
        for uid in chunk:
            if uid in response:
                yield uid, response[uid]


def _flags(flags: Iterable[Any]) -> frozenset:
    return frozenset(_text(flag) for flag in flags if _text(flag).lower() != "\\recent")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _utc_iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("expected an aware INTERNALDATE (normalise_times must be False)")
    return value.astimezone(timezone.utc).isoformat()


# ---------------------------------------------------------------------- flags

Selector = Union[int, Iterable[int], Callable[[MessageInfo], bool], None]


def set_flags(server: Any, user: str, password: str | None, folder: str, selector: Selector, flags: Flags, *,
              master: bool = False) -> list[int]:
    """Replace the flags of the selected messages with *flags*; returns the UIDs touched.

    *selector*: a UID, an iterable of UIDs, a predicate on :class:`MessageInfo`, or None for all messages.
    """
    return _store(server, user, password, folder, selector, flags, "set", master)


def add_flags(server: Any, user: str, password: str | None, folder: str, selector: Selector, flags: Flags, *,
              master: bool = False) -> list[int]:
    """Add *flags* to the selected messages (see :func:`set_flags`)."""
    return _store(server, user, password, folder, selector, flags, "add", master)


def remove_flags(server: Any, user: str, password: str | None, folder: str, selector: Selector, flags: Flags, *,
                 master: bool = False) -> list[int]:
    """Remove *flags* from the selected messages (see :func:`set_flags`)."""
    return _store(server, user, password, folder, selector, flags, "remove", master)


def _store(server: Any, user: str, password: str | None, folder: str, selector: Selector, flags: Flags, action: str,
           master: bool) -> list[int]:
    flag_list = [flag if isinstance(flag, bytes) else flag.encode("utf-8") for flag in flags]
    with session(server, user, password, master=master) as client:
        if callable(selector):
            items = [b"BODY.PEEK[HEADER]", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]
            infos = [_message_info(uid, data) for uid, data in _fetch(client, folder, items, readonly=False)]
            uids = [info.uid for info in infos if selector(info)]
        else:
            client.select_folder(folder)
            existing = set(client.search(["ALL"]))
            if selector is None:
                wanted: Iterable[int] = existing
            elif isinstance(selector, int):
                wanted = [selector]
            else:
                wanted = selector
            uids = sorted(uid for uid in set(wanted) if uid in existing)
        method = {"set": client.set_flags, "add": client.add_flags, "remove": client.remove_flags}[action]
        for start in range(0, len(uids), CHUNK):
            method(uids[start:start + CHUNK], flag_list, silent=True)
        return uids


def delete_messages(server: Any, user: str, password: str | None, folder: str, selector: Selector, *,
                    master: bool = False) -> list[int]:
    """Flag the selected messages ``\\Deleted`` and expunge them (UID EXPUNGE); returns their UIDs."""
    uids = add_flags(server, user, password, folder, selector, [b"\\Deleted"], master=master)
    if uids:
        with session(server, user, password, master=master) as client:
            client.select_folder(folder)
            for start in range(0, len(uids), CHUNK):
                client.uid_expunge(uids[start:start + CHUNK])
    return uids
