# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""IMAP connections: TLS as asked (verified by default, never a silent plain-text fallback),
AUTHENTICATE PLAIN where offered, errors classified, UID sets always as lists of ints in bounded chunks.

A server (the remote above all) chooses every byte it sends, so every connection is bounded (:class:`_IMAP4`):
connect, TLS, greeting, STARTTLS and login within one deadline; a response that delivers almost nothing for a
whole timeout period has stalled; literals, lines and the responses to one command are capped in size and number
(a message body up to MAX_MESSAGE, whatever size was announced). Flags are IMAP atoms (:func:`split_flags`); folder
names travel in modified UTF-7, which encodes control characters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import imaplib
import io
import json
import re
import selectors
import socket
import ssl
import time
import traceback
import typing as t

from . import errors
from . import fetchparse, flagsets
from .fetchparse import ServerViolation
from .folders import Namespace
from .imapclient_compat import MAX_LINE, Appending, Client, Refused, Transport, append as raw_append
from .imapclient_compat import create_subscribe_status, end_command, list_returning, start_command, transport, uid_filter_sieve
from .oauth import TokenSource
from .text import capitalized, printable

try:
    import imapclient  # noqa: F401  pylint: disable=unused-import
    from imapclient.response_parser import parse_response
    from imapclient.imap_utf7 import decode as decode_utf7
except ImportError:  # pragma: no cover - depends on the host
    HAS_IMAPCLIENT = False
    IMAPCLIENT_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_IMAPCLIENT = True
    IMAPCLIENT_IMPORT_ERROR = None

# UIDs per command: keeps command lines far below servers' limits (Dovecot: 64 KiB).
UID_CHUNK = 1000
# Seconds: a read's timeout; also the deadline of connect + TLS + greeting + STARTTLS + login as a whole, and the
# period in which a response must deliver PROGRESS_BYTES or a whole line (or a command be sent) not to count as stalled.
DEFAULT_TIMEOUT = 120.0
PROGRESS_BYTES = 1024

# Bounds on what a server may send besides message bodies (a hostile remote chooses every byte).
MAX_LITERAL = 4 * 1024 * 1024  # one literal that is not a message body (a header block, a folder name)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # the responses to one command, message bodies apart
MAX_RESPONSES = 100_000  # untagged responses kept for one command (folders listed, messages fetched...)
# The largest message copied: the local server's APPENDLIMIT (RFC 7889) when it announces a smaller one.
MAX_MESSAGE = 256 * 1024 * 1024
# Untagged responses that no later command reads (imaplib keeps them until a SELECT): dropped when a command starts.
_NEVER_READ_LATER = ("EXPUNGE", "EXISTS", "RECENT", "VANISHED")
_IO_CHUNK = 65536
# UIDs in one ``UID FETCH a:b (RFC822.SIZE)`` of Connection.size_windows: its responses stay far below MAX_RESPONSES.
SIZE_SPAN = 32_000
# FETCH items whose responses the engine reads itself (fetchparse.py) rather than through imapclient.
_RAW_ITEMS = frozenset({"BODY.PEEK[]", "FLAGS", "INTERNALDATE", "RFC822.SIZE"})

# RFC 3501 flag: "\" atom (system flag) or atom (keyword); atom-chars exclude SP, CTLs, 8-bit and ( ) { % * " \ ].
_FLAG_RE = re.compile(rb'\\?[^\x00-\x20\x7f-\xff(){%*"\\\]]+')

_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)
# An RFC 5530 response code at the start of a server's text; imapclient and imaplib put "create failed: " or
# "SELECT command error: BAD [b'" before it in their exceptions, and keep a refusing greeting whole ("* BYE [...").
_RESP_CODE_RE = re.compile(r"(?:\A(?:\* (?:BYE|NO|BAD|OK) )?|: |\[b['\"])\[([A-Za-z][A-Za-z0-9-]{0,40})[\] ]")
# Response codes of a refusal that may pass: retried with backoff (sync.Syncer). LIMIT is transient only at login
# (too many connections); on another command it is a lasting limit (too many folders, flags, ...).
_BUSY_CODES = frozenset({"UNAVAILABLE", "INUSE"})
_BUSY_LOGIN_CODES = _BUSY_CODES | {"LIMIT"}
SERVER_TEXT_LIMIT = 300  # characters of a server's words kept in an error


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where and how to log in; ``side`` is ``remote`` or ``local`` and appears in every error."""

    side: str
    host: str
    port: int
    security: str
    validate_certs: bool
    ca_file: str | None
    user: str
    password: str = dataclasses.field(repr=False)
    authzid: str | None = None  # log in as this user with the credentials of ``user`` (master user)
    login_user: str | None = None  # the LOGIN fallback's user name (``user*master``)
    # remote_auth with a token source (oauth.token_source): log in with its OAuth2 token instead of ``password``
    token: TokenSource | None = dataclasses.field(default=None, repr=False, compare=False)
    timeout: float = dataclasses.field(default_factory=lambda: DEFAULT_TIMEOUT)


def insecure_notice(ep: Endpoint) -> str | None:
    """The result notice for a connection that anyone on the network path can read or alter; None when it is safe."""
    where = _server(ep)
    secret = "password" if ep.token is None else "access token"
    if ep.security == "none":
        return (f"The connection to {where} is not encrypted ({ep.side}_security: none): the {secret} and the mail "
                f"crossed the network in clear; use {ep.side}_security: ssl or starttls.")
    if not ep.validate_certs:
        return (f"The TLS certificate of {where} was not verified (validate_certs: false): anyone on the network path "
                f"could read the {secret} and the mail; give its CA certificate in ca_file and remove validate_certs: false.")
    return None


def chunks(items: t.Sequence[int], size: int = UID_CHUNK) -> t.Iterator[list[int]]:
    """Yield lists of at most ``size`` items (imapclient 4 wants lists of ints, never range strings)."""
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def uid_set(uids: t.Iterable[int]) -> bytes:
    """A compact UID set (``1:5,9``) for raw commands."""
    out: list[str] = []
    ordered = sorted(set(uids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(out).encode("ascii")


def parse_uid_set(text: bytes) -> list[int]:
    result: list[int] = []
    for part in text.split(b","):
        if b":" in part:
            low, high = (int(x) for x in part.split(b":"))
            if low > high:
                low, high = high, low
            result.extend(range(low, high + 1))
        elif part:
            result.append(int(part))
    return result


def split_flags(raw: t.Any) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The flags of a FETCH FLAGS value that are IMAP flags (RFC 3501 atoms of at most flagsets.MAX_FLAG_BYTES), and
    the others, which are dropped.

    The one check for flags a server sent: only what passes it is ever written into a command.
    """
    valid: list[bytes] = []
    dropped: list[bytes] = []
    for flag in raw or ():
        value = flag if isinstance(flag, bytes) else str(flag).encode("utf-8", "surrogateescape")
        (valid if len(value) <= flagsets.MAX_FLAG_BYTES and _FLAG_RE.fullmatch(value) else dropped).append(value)
    return tuple(valid), tuple(dropped)


class _Stalled(socket.timeout):
    """A response delivered less than PROGRESS_BYTES in a whole timeout period."""


class _Raw(io.RawIOBase):
    """The socket of an :class:`_IMAP4` as a raw stream, each read under the connection's time bounds."""

    def __init__(self, imap: _IMAP4) -> None:
        super().__init__()
        self.imap = imap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        return self.imap.recv_into(buffer)


class _IMAP4(Transport):
    """imaplib's IMAP4 (plain, or implicit TLS with ``context``) under the engine's time and size bounds."""

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext | None, deadline: float | None) -> None:
        self.io_timeout = timeout
        self.deadline = deadline  # connect + TLS + greeting + STARTTLS + login; None once logged in
        self._tls_context = context
        self._window = time.monotonic()  # the start of the current progress period
        self._window_bytes = 0
        self.literal_max = MAX_LITERAL
        self.budget = MAX_RESPONSE_BYTES
        self._received = 0  # bytes received since the current command was sent
        self._responses = 0  # untagged responses kept since then
        self._reader: io.BufferedReader | None = None
        self._sock_timeout: float | None = None  # what the socket's timeout was last set to (None: not known)
        super().__init__(host, port, timeout)

    # -- time --------------------------------------------------------------------------------------------
    def _wait(self) -> float:
        """How long the next read or write may wait; raises when the deadline or the progress period has passed."""
        now = time.monotonic()
        wait = self.io_timeout
        if self.deadline is not None:
            if now >= self.deadline:
                raise socket.timeout("the connection deadline passed")
            wait = min(wait, self.deadline - now)
        left = self._window + self.io_timeout - now
        if left <= 0:
            if self._window_bytes:
                raise _Stalled(f"{self._window_bytes} bytes in {self.io_timeout:g} s")
            raise socket.timeout("timed out")
        return min(wait, left)

    def _progress(self) -> None:
        self._window = time.monotonic()
        self._window_bytes = 0

    def _bound_socket(self) -> None:
        """Give the socket's next operation at most what :meth:`_wait` allows; the timeout already set stays when it is
        not above that and not 10 % below (setting it costs system calls: this runs once per TLS record read)."""
        wait = self._wait()
        if self._sock_timeout is None or not 0.9 * wait <= self._sock_timeout <= wait:
            self.sock.settimeout(wait)
            self._sock_timeout = wait

    def recv_into(self, buffer: t.Any) -> int:
        while True:
            self._bound_socket()
            try:
                count = self.sock.recv_into(buffer)
                break
            except socket.timeout:
                self._sock_timeout = None
                continue  # _wait decides whether that was the end
        self._received += count
        if self._received > self.budget:
            raise ServerViolation(f"it sent more than {self.budget} bytes in answer to one command")
        self._window_bytes += count
        if self._window_bytes >= PROGRESS_BYTES:
            self._progress()
        return count

    def _handshake(self, sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
        """The TLS handshake, within the deadline however slowly the server answers."""
        tls = context.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        tls.setblocking(False)
        with selectors.DefaultSelector() as selector:
            while True:
                events = selectors.EVENT_READ
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLWantWriteError:
                    events = selectors.EVENT_WRITE
                selector.register(tls, events)
                selector.select(self._wait())
                selector.unregister(tls)
        tls.settimeout(self.io_timeout)
        return tls

    # -- imaplib's I/O (its private hooks: imapclient_compat.Transport) --------------------------------------
    def create_socket(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), self._wait())
        # Commands and their answers are small writes that wait for each other: without this, Nagle's algorithm holds
        # each one until the peer's delayed ACK (about 40 ms on Linux).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls_context is not None:
            try:
                return self._handshake(sock, self._tls_context)
            except BaseException:
                sock.close()
                raise
        return sock

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:  # 143: imaplib.IMAP4_PORT
        super().open(host, port, timeout)
        self._sock_timeout = None
        self._reader = io.BufferedReader(_Raw(self), _IO_CHUNK)

    def read(self, size: int) -> bytes:
        if size > self.literal_max:
            raise ServerViolation(f"it announced a literal of {size} bytes where at most {self.literal_max} were expected")
        return self._reader.read(size) if self._reader is not None else b""

    def readline(self) -> bytes:
        limit = MAX_LINE
        line = self._reader.readline(limit + 1) if self._reader is not None else b""
        if len(line) > limit:
            raise ServerViolation(f"it sent a line longer than {limit} bytes")
        if line.endswith(b"\n"):
            self._progress()  # a whole response line is progress, however short (Dovecot's "* OK Searched 42% ...")
        return line

    def send(self, data: bytes) -> None:  # type: ignore[override]  # imaplib's stub says Buffer: every caller sends bytes
        view = memoryview(data)
        self._progress()  # a command sent: its answer has a full period to start
        for start in range(0, len(view), _IO_CHUNK):
            self._bound_socket()
            self.sock.sendall(view[start:start + _IO_CHUNK])
            self._progress()

    def wrap_tls(self, context: ssl.SSLContext) -> None:
        """STARTTLS: a bounded handshake; whatever the server sent before TLS is dropped."""
        self.sock = self._handshake(self.sock, context)
        self._sock_timeout = None
        self._reader = io.BufferedReader(_Raw(self), _IO_CHUNK)

    def command_started(self) -> None:
        # A new command: its responses are counted from zero. What earlier commands left and nothing reads later
        # (imaplib pops only what a command asks for: the EXPUNGE lines of UID EXPUNGE, say) is dropped, so that what
        # is kept does not grow with the folder.
        for name in _NEVER_READ_LATER:
            self.untagged_responses.pop(name, None)
        self._responses = 0
        self._received = 0

    def response_kept(self) -> None:
        self._responses += 1
        if self._responses > MAX_RESPONSES:
            raise ServerViolation(f"it sent more than {MAX_RESPONSES} responses to one command")

    @contextlib.contextmanager
    def bodies(self, largest: int, total: int) -> t.Iterator[None]:
        """Allow message bodies: literals up to ``largest`` bytes, ``total`` bytes more for this command."""
        self.literal_max, self.budget = max(largest, MAX_LITERAL), MAX_RESPONSE_BYTES + total
        try:
            yield
        finally:
            self.literal_max, self.budget = MAX_LITERAL, MAX_RESPONSE_BYTES


def _client(ep: Endpoint, context: ssl.SSLContext | None, deadline: float) -> t.Any:
    """imapclient on a bounded :class:`_IMAP4`, connected (greeting read), INTERNALDATE kept with its own offset."""
    client = Client(ep.host, ep.port, ep.security == "ssl", context, ep.timeout,  # pylint: disable=possibly-used-before-assignment
                    lambda host, port, timeout, tls: _IMAP4(host, port, timeout, tls, deadline))
    client.normalise_times = False
    return client


def _ssl_context(ep: Endpoint) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=ep.ca_file) if ep.ca_file else ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise errors.SyncError(
            errors.TLS_FAILED,
            f"The {ep.side} CA file {ep.ca_file!r} cannot be used ({exc}); give a readable PEM file of CA certificates.",
            ep.side,
        ) from None
    if not ep.validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _server(ep: Endpoint) -> str:
    host = f"[{ep.host}]" if ":" in ep.host else ep.host
    return f"the {ep.side} server {host}:{ep.port}"


def classify(exc: BaseException, ep: Endpoint, during: str = "") -> errors.SyncError:
    """Turn a low-level exception into a SyncError with a kind and a sentence."""
    where = _server(ep)
    what = f" while {during}" if during else ""
    if isinstance(exc, errors.SyncError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return errors.SyncError(
            errors.TLS_FAILED,
            f"The TLS certificate of {where} could not be verified ({printable(exc.verify_message or exc, SERVER_TEXT_LIMIT)}); "
            "give its CA certificate in ca_file, or set validate_certs: false if you trust the network path.",
            ep.side,
        )
    if isinstance(exc, ssl.SSLError):
        return errors.SyncError(
            errors.TLS_FAILED,
            f"The TLS handshake with {where} failed ({printable(exc.reason or exc, SERVER_TEXT_LIMIT)}); check security and port "
            "(ssl is usually port 993, starttls port 143).",
            ep.side,
        )
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return errors.SyncError(
            errors.TIMEOUT,
            f"{capitalized(where)} did not answer in time{what}; check that the host and port are right and reachable.",
            ep.side,
        )
    if isinstance(exc, socket.gaierror):
        return errors.SyncError(
            errors.CONNECT_FAILED,
            f"The {ep.side} host name {ep.host!r} could not be resolved ({exc.strerror}); check the host name.",
            ep.side,
        )
    if isinstance(exc, imaplib.IMAP4.abort) or (isinstance(exc, OSError) and exc.errno in (
            errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN)) or isinstance(exc, EOFError):
        return errors.ConnectionLost(f"The connection to {where} was lost{what} ({printable(exc, SERVER_TEXT_LIMIT)}).", ep.side)
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        return errors.SyncError(
            errors.CONNECT_FAILED,
            f"Cannot connect to {where} ({reason}); check host, port and firewall, and that the server is running.",
            ep.side,
        )
    if isinstance(exc, ServerViolation):
        return errors.SyncError(
            errors.PROTOCOL_ERROR,
            f"{capitalized(where)} broke the IMAP protocol{what}: {exc}; the connection was closed "
            "(a genuine server does not do this: ask its administrator).",
            ep.side,
        )
    words = _server_words(exc)
    code = response_code(words)
    if code in _BUSY_CODES:
        return errors.ServerBusy(
            f"{capitalized(where)} refused {during or 'a command'} for now ({printable(words, SERVER_TEXT_LIMIT)})",
            _busy_advice(code), ep.side,
        )
    return errors.SyncError(errors.PROTOCOL_ERROR,
                            f"{capitalized(where)} refused a command{what}: {printable(words, SERVER_TEXT_LIMIT)}", ep.side)


def _server_words(exc: BaseException) -> str:
    """The text of an imaplib/imapclient error (imaplib keeps a server's response as bytes, sometimes)."""
    arg = exc.args[0] if len(exc.args) == 1 else str(exc)
    return arg.decode("utf-8", "replace") if isinstance(arg, (bytes, bytearray)) else str(arg)


def response_code(text: str) -> str | None:
    """The RFC 5530 response code (``AUTHENTICATIONFAILED``, ``LIMIT``, ...) a server put before its words, upper case."""
    match = _RESP_CODE_RE.search(text)
    return match.group(1).upper() if match else None


def _busy_advice(code: str | None) -> str:
    if code == "LIMIT":
        return ("close other sessions of this account (mail clients, other tasks) or raise the server's limit of "
                "connections per user (Dovecot: mail_max_userip_connections), then run again")
    return "run again when the server is available again, and ask its administrator if this persists"


def _login_refused(ep: Endpoint, words: str) -> errors.SyncError:
    """A refused login, classified by the server's response code (RFC 5530), keeping the server's words."""
    code = response_code(words)
    server = _server(ep)
    who = f"{ep.authzid or ep.user!r}" + (f" through master user {ep.user!r}" if ep.authzid else "")
    refused = f"{capitalized(server)} refused the login of {who} ({printable(words, SERVER_TEXT_LIMIT)})"
    if code in _BUSY_LOGIN_CODES:
        return errors.ServerBusy(f"{refused} for now", _busy_advice(code), ep.side)
    security = "remote_security" if ep.side == "remote" else "security"
    if code == "PRIVACYREQUIRED":
        advice = f"it accepts logins only over an encrypted connection: use {security}: starttls or ssl."
    elif code == "AUTHORIZATIONFAILED":
        advice = ("the credentials are valid but may not log in as that user: check that local_user exists on the local "
                  "server and that master_user is a master user there." if ep.authzid else
                  "the credentials are valid but the account may not log in over IMAP: ask the provider to allow it.")
    elif code == "EXPIRED":
        advice = ("the password or the account has expired: renew it on the server and update "
                  + ("master_password of the target." if ep.authzid else "remote_password."))
    else:
        advice = "check the user name and password" + (" (master_user and master_password of the target)." if ep.authzid else ".")
    return errors.SyncError(errors.AUTH_FAILED, f"{refused}; {advice}", ep.side)


def sasl_mechanism(ep: Endpoint, caps: t.Collection[bytes]) -> str:
    """The SASL mechanism for an OAuth2 token: OAUTHBEARER (RFC 7628) where the server announces it, else XOAUTH2;
    AUTH_FAILED with a sentence when it announces neither."""
    for mechanism in ("OAUTHBEARER", "XOAUTH2"):
        if b"AUTH=" + mechanism.encode() in caps:
            return mechanism
    offered = ", ".join(sorted(c.decode("ascii", "replace")[5:] for c in caps if c.upper().startswith(b"AUTH="))) or "none"
    raise errors.SyncError(
        errors.AUTH_FAILED,
        f"{capitalized(_server(ep))} offers neither OAUTHBEARER nor XOAUTH2 (its SASL mechanisms: "
        f"{printable(offered, 200)}), so it cannot take an OAuth2 token; check remote_host, remote_port and "
        "remote_security, or use remote_auth: password.",
        ep.side,
    )


def sasl_response(mechanism: str, ep: Endpoint, token: str) -> bytes:
    """The initial client response of ``mechanism`` for user ``ep.user`` (the mailbox) and bearer ``token``: XOAUTH2
    (``user=U^Aauth=Bearer T^A^A``) or OAUTHBEARER (RFC 7628 section 3.1: a GS2 header naming the user, host, port)."""
    if "\x01" in ep.user:
        raise errors.SyncError(errors.AUTH_FAILED, "remote_user contains a control character (\\x01) that SASL cannot carry; "
                               "give the mailbox's address.", ep.side)
    if mechanism == "XOAUTH2":
        return f"user={ep.user}\x01auth=Bearer {token}\x01\x01".encode("utf-8")
    authzid = ep.user.replace("=", "=3D").replace(",", "=2C")  # RFC 5801 saslname
    return f"n,a={authzid},\x01host={ep.host}\x01port={ep.port}\x01auth=Bearer {token}\x01\x01".encode("utf-8")


class _Bearer:  # pylint: disable=too-few-public-methods
    """imaplib's AUTHENTICATE callback for a bearer token: the initial response, then, to the server's error challenge
    (a JSON status, RFC 7628 section 3.2.2), the dummy response that lets the server say NO (RFC 7628: ^A; XOAUTH2:
    empty). ``status`` is the error's status, printable, when the server sent one."""

    def __init__(self, mechanism: str, first: bytes) -> None:
        self.mechanism = mechanism
        self.first: bytes | None = first
        self.status: str | None = None

    def __call__(self, challenge: bytes) -> bytes | None:
        if self.first is not None:
            first, self.first = self.first, None
            return first
        if self.status is None:
            try:
                detail = json.loads(challenge)
            except ValueError:
                detail = None
            status = detail.get("status") if isinstance(detail, dict) else None
            self.status = printable(status if status is not None else challenge, 100)
            return b"\x01" if self.mechanism == "OAUTHBEARER" else b""
        return None  # a third challenge: imaplib cancels the exchange ("*")


def _token_refused(ep: Endpoint, source: TokenSource, mechanism: str, words: str, status: str | None,
                   again: bool) -> errors.SyncError:
    """A refused OAuth2 token: the IMAP server's words (and its error status), what to check."""
    server = _server(ep)
    status_text = f"; status {status}" if status else ""
    renewed = ", and a new one too" if again else ""
    refused = (f"{capitalized(server)} refused the OAuth2 token ({mechanism}) from {source.describe} for "
               f"{ep.user!r}{renewed} ({printable(words, SERVER_TEXT_LIMIT)}{status_text})")
    if source.renewable:
        advice = ("the token endpoint issued it, so the server does not let that application into this mailbox: check "
                  "that remote_user is the mailbox's address and that the application may open it over IMAP (Microsoft "
                  "365: the IMAP.AccessAsApp permission and mailbox access for its service principal; Google: "
                  "domain-wide delegation of the scope to the service account's client id)")
    else:
        advice = (f"renew the token of {source.describe} (it may have expired or been revoked) and check that it was issued "
                  "for remote_user and for IMAP")
    return errors.SyncError(errors.AUTH_FAILED, f"{refused}; {advice}.", ep.side)


def _has_non_ascii(text: str) -> bool:
    return any(ord(ch) > 127 for ch in text)


_Found = t.TypeVar("_Found")


def _spans(low: int, uidnext: int, messages: int, window: int, read: t.Callable[[int, int], list[_Found]],
           largest: int | None = None) -> t.Iterator[list[_Found]]:
    """``read(first, last)`` over [low, uidnext) in spans that follow the folder's density (UIDNEXT / MESSAGES), so
    that a sparse UID space costs few commands and a dense one never gives much more than ``window`` at once; each
    span at most ``largest`` UIDs when given."""
    seen = 0
    span = window
    low = max(low, 1)  # UID 0 does not exist (and servers refuse it in a set)
    while low < uidnext:
        remaining = max(1, messages - seen)
        density_span = window * max(1, (uidnext - low) // remaining)
        span = max(window, min(span * 2, density_span)) if seen else max(window, density_span)
        if largest is not None:
            span = min(span, largest)
        high = min(low + span, uidnext) - 1
        found = read(low, high)
        seen += len(found)
        yield found
        if len(found) > 2 * window:
            span = max(window, span // 4)
        low = high + 1


class Connection:
    """One logged-in IMAP session (remote or local)."""

    def __init__(self, ep: Endpoint) -> None:
        if not HAS_IMAPCLIENT:
            raise errors.SyncError(
                errors.MISSING_LIBRARY,
                "The Python library imapclient is not installed for this Python; run with the engine's virtual "
                "environment, which the role mailops.imap.imapsync builds (tasks_from: venv).",
            )
        self.ep = ep
        self.client: t.Any = None
        self.selected: str | None = None
        self.selected_readonly = True
        self._created: tuple[str, dict[str, int]] | None = None  # a folder just created and its status (see create)
        self.login_caps: frozenset[bytes] = frozenset()  # what the server announced before the login (AUTH=...)
        self._connect()

    # -- connection and login -------------------------------------------------------------------
    def _connect(self) -> None:
        ep = self.ep
        deadline = time.monotonic() + ep.timeout
        context = _ssl_context(ep) if ep.security in ("ssl", "starttls") else None
        try:
            client = _client(ep, context, deadline)
        except Exception as exc:  # pylint: disable=broad-except
            raise self._late(classify(exc, ep, "connecting"), deadline) from None
        # imapclient turns imaplib's debug level up (to feed its logger): imaplib then builds a text copy of every
        # response, message bodies included, whether or not anything logs. That doubles memory and CPU.
        transport(client).debug = 0
        self.client = client
        try:
            if ep.security == "starttls":
                if not client.has_capability("STARTTLS"):
                    raise errors.SyncError(
                        errors.STARTTLS_UNSUPPORTED,
                        f"{capitalized(_server(ep))} does not offer STARTTLS; use security: ssl (port 993) "
                        "if it offers implicit TLS, or security: none only on a network you trust.",
                        ep.side,
                    )
                try:
                    client.starttls(context)
                except imaplib.IMAP4.error as exc:
                    raise errors.SyncError(errors.TLS_FAILED, f"{capitalized(_server(ep))} refused STARTTLS "
                                           f"({printable(exc, SERVER_TEXT_LIMIT)}).", ep.side) from None
            self._login()
        except errors.SyncError as exc:
            self.close()
            raise self._late(exc, deadline) from None
        except Exception as exc:  # pylint: disable=broad-except
            self.close()
            raise self._late(classify(exc, ep, "logging in"), deadline) from None
        transport(client).deadline = None

    def _late(self, exc: errors.SyncError, deadline: float) -> errors.SyncError:
        """``exc``, or the deadline's own error when the connection failed because it took too long (a token source's
        own failure is kept: it has its own time bounds)."""
        if time.monotonic() < deadline or exc.kind is errors.TOKEN_FAILED:
            return exc
        return errors.SyncError(
            errors.TIMEOUT,
            f"{capitalized(_server(self.ep))} did not complete connect, TLS, greeting and login within "
            f"{self.ep.timeout:g} s; check that the host and port are right and that the server is not overloaded.",
            self.ep.side,
        )

    def _login(self) -> None:
        ep = self.ep
        client = self.client
        caps = client.capabilities()
        self.login_caps = frozenset(caps)
        if ep.token is not None:
            self._login_token(ep.token, caps)
            self.caps = set(client.capabilities())
            return
        if b"LOGINDISABLED" in caps and b"AUTH=PLAIN" not in caps:
            raise errors.SyncError(
                errors.AUTH_FAILED,
                f"{capitalized(_server(ep))} refuses logins on this connection (LOGINDISABLED); use security: starttls or ssl.",
                ep.side,
            )
        # imaplib itself (not imapclient's wrappers): its error keeps the server's words, response code included.
        imap = transport(client)
        try:
            if b"AUTH=PLAIN" in caps:
                secret = f"{ep.authzid or ''}\0{ep.user}\0{ep.password}"
                imap.authenticate("PLAIN", lambda _challenge: secret)
            else:
                user = ep.login_user or ep.user
                if _has_non_ascii(ep.password) or _has_non_ascii(user):
                    raise errors.SyncError(
                        errors.AUTH_FAILED,
                        f"{capitalized(_server(ep))} does not offer AUTHENTICATE PLAIN, and IMAP LOGIN cannot carry "
                        "non-ASCII user names or passwords; enable the PLAIN mechanism on the server or use an ASCII password.",
                        ep.side,
                    )
                imap.login(user, ep.password)
        except imaplib.IMAP4.abort as exc:
            raise classify(exc, ep, "logging in") from None
        except imaplib.IMAP4.error as exc:
            raise _login_refused(ep, _server_words(exc)) from None
        self.caps = set(client.capabilities())

    def _login_token(self, source: TokenSource, caps: t.Collection[bytes]) -> None:
        """AUTHENTICATE with an OAuth2 token of ``source`` (OAUTHBEARER where announced, else XOAUTH2). A refused
        token of a grant is followed by a new one, once (it may have been revoked or have expired early)."""
        ep = self.ep
        mechanism = sasl_mechanism(ep, caps)
        imap = transport(self.client)
        refused, status = "", None
        for fresh in (False, True) if source.renewable else (False,):
            exchange = _Bearer(mechanism, sasl_response(mechanism, ep, source.token(fresh=fresh)))
            try:
                imap.authenticate(mechanism, exchange)
                return
            except imaplib.IMAP4.abort as exc:
                raise classify(exc, ep, "logging in") from None
            except imaplib.IMAP4.error as exc:
                refused, status = _server_words(exc), exchange.status
            if response_code(refused) in _BUSY_LOGIN_CODES:
                raise _login_refused(ep, refused)
        raise _token_refused(ep, source, mechanism, refused, status, again=source.renewable)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.logout()
        with contextlib.suppress(Exception):
            client.shutdown()

    def _drop(self) -> None:
        """Close without LOGOUT: the server broke the protocol, nothing more is read from it."""
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    @property
    def alive(self) -> bool:
        """Whether the connection can take commands (False once closed, for example after a protocol violation)."""
        return self.client is not None

    def max_message(self) -> int:
        """The largest message worth fetching for this (local) server: its APPENDLIMIT (RFC 7889), at most MAX_MESSAGE."""
        for cap in self.caps:
            name, _sep, value = cap.partition(b"=")
            if name.upper() == b"APPENDLIMIT" and value.isdigit():
                return min(int(value), MAX_MESSAGE)
        return MAX_MESSAGE

    def has(self, capability: str) -> bool:
        return capability.encode().upper() in self.caps

    @contextlib.contextmanager
    def guard(self, during: str) -> t.Iterator[None]:
        """Translate exceptions of one operation into SyncError / ConnectionLost."""
        try:
            yield
        except (errors.SyncError, AppendRefused):
            raise
        except ServerViolation as exc:
            self._drop()
            raise classify(exc, self.ep, during) from None
        except _Stalled as exc:
            # Dripping bytes: as silence, the connection is reconnected and the folder resumes.
            self._drop()
            raise errors.ConnectionLost(
                f"{capitalized(_server(self.ep))} stalled while {during}: it sent only {exc}, less than "
                f"{PROGRESS_BYTES} bytes; check the server's load and the network path.", self.ep.side, kind=errors.TIMEOUT) from None
        except ssl.SSLError as exc:
            # Past the handshake, a TLS error means the connection broke (EOF, reset mid-record).
            raise errors.ConnectionLost(f"The connection to {_server(self.ep)} was lost while {during} ({printable(exc, SERVER_TEXT_LIMIT)}).",
                                        self.ep.side) from None
        except (socket.timeout, TimeoutError):
            # A server silent mid-session: the connection is in an unknown state, reconnect and resume.
            self._drop()  # no LOGOUT: it would wait for a server that does not answer
            raise errors.ConnectionLost(
                f"{capitalized(_server(self.ep))} did not answer in time while {during}.", self.ep.side) from None
        except Exception as exc:  # pylint: disable=broad-except
            raise classify(exc, self.ep, during) from None

    # -- folders ------------------------------------------------------------------------------------
    def namespace(self) -> Namespace:
        """The personal namespace (prefix, separator) and the prefixes of other users' and shared namespaces.

        An empty prefix is kept: a server (Cyrus without altnamespace) may give the shared namespace the empty prefix,
        and then every name outside the personal prefix is shared (folders.is_personal). None as the second item: the
        server has no NAMESPACE, so nothing is known to be shared.
        """
        with self.guard("reading namespaces"):
            if self.has("NAMESPACE"):
                ns = self.client.namespace()
                personal = (ns.personal or (("", ""),))[0]
                others = [str(p or "") for group in (ns.other, ns.shared) for p, _sep in (group or ())]
                return (str(personal[0] or ""), personal[1] or ""), others
        return ("", ""), None

    def _status_items(self) -> list[str]:
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
        if self.has("CONDSTORE"):
            items.append("HIGHESTMODSEQ")
        return items

    def list_folders(self) -> tuple[list[tuple[tuple[bytes, ...], str, str]], dict[str, dict[str, int]]]:
        """Every folder as (flags, separator, name), special-use flags included where the server has them;
        and, where the server offers LIST-STATUS, the status of every folder from the same command."""
        statuses: dict[str, dict[str, int]] = {}
        with self.guard("listing folders"):
            if self.has("SPECIAL-USE") or self.has("LIST-EXTENDED"):
                returns = "SPECIAL-USE"
                if self.has("LIST-STATUS"):
                    returns += f" STATUS ({' '.join(self._status_items())})"
                listed, status_lines = list_returning(self.client, returns)
                statuses = self._statuses(status_lines)
            else:
                listed = self.client.list_folders()
        result = []
        for flags, sep, name in listed:
            sep_text = sep.decode() if isinstance(sep, bytes) else (sep or "")
            result.append((tuple(f.upper() if isinstance(f, bytes) else str(f).encode().upper() for f in flags), sep_text, name))
        return result, statuses

    def status(self, folder: str) -> dict[str, int]:
        """STATUS: MESSAGES, UIDNEXT, UIDVALIDITY (and HIGHESTMODSEQ with CONDSTORE). The status of a folder this
        connection has just created was read with its CREATE (:meth:`create`): that is the answer, once."""
        created, self._created = self._created, None
        if created is not None and created[0] == folder:
            return created[1]
        with self.guard(f"reading the status of '{printable(folder)}'"):
            raw = self.client.folder_status(folder, self._status_items())
            return {k.decode().upper(): int(v) for k, v in raw.items()}

    def select(self, folder: str, readonly: bool) -> dict[str, int]:
        with self.guard(f"opening folder '{printable(folder)}'"):
            info = self.client.select_folder(folder, readonly=readonly)
        self.selected, self.selected_readonly = folder, readonly
        out = {}
        for key in (b"EXISTS", b"UIDNEXT", b"UIDVALIDITY", b"HIGHESTMODSEQ"):
            if key in info:
                out[key.decode()] = int(info[key])
        return out

    def create(self, folder: str) -> None:
        """Create and subscribe a folder, reading its status in the same round trip (CREATE, SUBSCRIBE and STATUS
        pipelined; the status is the answer of the next :meth:`status` of the folder, which then costs no round
        trip). A folder that exists already counts as created: ``NO [ALREADYEXISTS]`` (the OK of an earlier CREATE
        was lost with its connection), or, from a server without RFC 5530 codes, any NO after which the folder is
        listed. A refused SUBSCRIBE is ignored; a STATUS the server did not answer for the folder is asked again by
        :meth:`status`."""
        self._created = None
        with self.guard(f"creating folder {folder!r}"):
            (typ, data), _subscribed, (status_typ, status_data) = create_subscribe_status(
                self.client, folder, self._status_items())
            if typ != "OK":
                words = _text(data)
                if response_code(words) != "ALREADYEXISTS" and not self._listed(folder):
                    raise imaplib.IMAP4.error(f"create failed: {words}")
            status = self._statuses(status_data).get(folder) if status_typ == "OK" else None
        if status is not None and {"MESSAGES", "UIDNEXT", "UIDVALIDITY"} <= status.keys():
            self._created = (folder, status)

    def _listed(self, folder: str) -> bool:
        return any(name == folder for _flags, _sep, name in self.client.list_folders("", folder))

    # -- messages -----------------------------------------------------------------------------------
    def search_uids(self, criteria: list[t.Any]) -> list[int]:
        with self.guard("searching"):
            return sorted(int(u) for u in self.client.search(criteria))

    def uids_from(self, first: int) -> list[int]:
        """UIDs >= first ("n:*" always names the last message, so filter)."""
        if first <= 1:
            return self.search_uids(["ALL"])
        return [u for u in self.search_uids(["UID", f"{first}:*"]) if u >= first]

    def uid_windows(self, low: int, uidnext: int, messages: int, criteria: list[t.Any] | None = None,
                    window: int = 2000) -> t.Iterator[list[int]]:
        """The UIDs in [low, uidnext) matching criteria, a bounded list at a time (``UID SEARCH ... UID a:b``).

        The span of each search follows the folder's density (UIDNEXT / MESSAGES), so a sparse UID space costs
        few searches and a dense one never returns much more than ``window`` UIDs at once.
        """
        def search(first: int, last: int) -> list[int]:
            return [u for u in self.search_uids(list(criteria or []) + ["UID", f"{first}:{last}"]) if first <= u <= last]

        for uids in _spans(low, uidnext, messages, window, search):
            yield from chunks(uids, window)

    def size_windows(self, low: int, uidnext: int, messages: int, window: int = 2000) -> t.Iterator[dict[int, int]]:
        """The messages in [low, uidnext) with their RFC822.SIZE, at most ``window`` at a time, ascending, a span of
        UIDs at a time (:meth:`sizes_between`; spans as in :meth:`uid_windows`, at most SIZE_SPAN UIDs each)."""
        for found in _spans(low, uidnext, messages, window, self.sizes_between, SIZE_SPAN):
            for start in range(0, len(found), window):
                yield dict(found[start:start + window])

    def sizes_between(self, first: int, last: int) -> list[tuple[int, int]]:
        """(UID, RFC822.SIZE) of the messages with UIDs from ``first`` to ``last``, ascending: one ``UID FETCH
        first:last (RFC822.SIZE)`` names the UIDs that exist and their sizes (a SEARCH and a FETCH otherwise)."""
        got: dict[int, dict[bytes, t.Any]] = {}
        with self.guard("fetching messages"):
            self._read_fetch(b"%d:%d" % (first, last), b"RFC822.SIZE", range(first, last + 1), got)
        return sorted((uid, data[b"RFC822.SIZE"]) for uid, data in got.items() if b"RFC822.SIZE" in data)

    def fetch(self, uids: t.Sequence[int], items: list[str], modifiers: list[str] | None = None,
              sizes: t.Mapping[int, int] | None = None) -> dict[int, dict[bytes, t.Any]]:
        """FETCH ``items``; with message bodies, ``sizes`` are their announced sizes (RFC822.SIZE): a body literal above
        MAX_MESSAGE, or a response that exceeds what was announced by more than MAX_MESSAGE, breaks the protocol."""
        out: dict[int, dict[bytes, t.Any]] = {}
        for part in chunks(sorted(uids)):
            with self.guard("fetching messages"):
                if sizes is None:
                    out.update(self._fetch_part(part, items, modifiers))
                    continue
                # A body may be larger than announced (some servers under-report RFC822.SIZE): any body up to the
                # largest message copied is read, and the command may exceed what was announced by one such body.
                announced = sum(sizes.get(uid, 0) for uid in part)
                with transport(self.client).bodies(MAX_MESSAGE, announced + 65536 * len(part) + MAX_MESSAGE):
                    out.update(self._fetch_part(part, items, modifiers))
        return out

    def _fetch_part(self, uids: list[int], items: list[str], modifiers: list[str] | None) -> dict[int, dict[bytes, t.Any]]:
        """One ``UID FETCH``: the engine's own items read by fetchparse.read_fetch (values as it gives them: INTERNALDATE
        the RFC 3501 string), any other through imapclient."""
        if modifiers or not all(item in _RAW_ITEMS for item in items):
            return t.cast(dict[int, dict[bytes, t.Any]], self.client.fetch(uids, items, modifiers))
        got: dict[int, dict[bytes, t.Any]] = {}
        self._read_fetch(uid_set(uids), " ".join(items).encode("ascii"), set(uids), got)
        return got

    def _read_fetch(self, uids: bytes, items: bytes, wanted: t.Container[int], out: dict[int, dict[bytes, t.Any]]) -> None:
        """``UID FETCH uids (items)``, its responses read by fetchparse.read_fetch into ``out`` (within a guard)."""
        imap, tag = start_command(self.client, b"UID FETCH " + uids + b" (" + items + b")")
        try:
            fetchparse.read_fetch(imap, tag, wanted, out)
        except fetchparse.Refused as exc:
            raise imaplib.IMAP4.error(f"fetch failed: {exc.words}") from None
        except fetchparse.Lost as exc:
            raise imaplib.IMAP4.abort(str(exc)) from None
        finally:
            end_command(imap, tag)

    def store(self, uids: t.Sequence[int], flags: t.Sequence[bytes], add: bool) -> None:
        flags = split_flags(flags)[0]
        if not flags:
            return
        for part in chunks(sorted(uids)):
            with self.guard("storing flags"):
                if add:
                    self.client.add_flags(part, list(flags), silent=True)
                else:
                    self.client.remove_flags(part, list(flags), silent=True)

    def filter_sieve(self, uids: t.Sequence[int]) -> str | None:
        """``UID FILTER SIEVE DELIVERY UID <set>`` on the selected folder (Dovecot's imap_filter_sieve): the user's
        Sieve script runs on exactly these messages. None on success, else the server's words."""
        for part in chunks(sorted(uids)):
            with self.guard("running the Sieve filter"):
                typ, data = uid_filter_sieve(self.client, uid_set(part).decode("ascii"))
            if typ != "OK":
                return _text(data)
        return None

    def uid_expunge(self, uids: t.Sequence[int]) -> None:
        for part in chunks(sorted(uids)):
            with self.guard("expunging messages"):
                self.client.uid_expunge(part)

    def expunge(self) -> None:
        """EXPUNGE the selected folder: every message marked \\Deleted there goes (for servers without UIDPLUS)."""
        with self.guard("expunging"):
            self.client.expunge()

    def append_many(self, folder: str, messages: list[tuple[bytes, tuple[bytes, ...], t.Any]]) -> list[int] | None:
        """APPEND (MULTIAPPEND when several and offered) of (body, flags, INTERNALDATE) each, the date as the engine's
        FETCH gives it (fetchparse.internaldate; anything else is left out), large bodies without copying them.

        Returns the local UIDs from APPENDUID, or None when the server gave none; raises AppendRefused when the server
        says NO (the engine records it as an ``append_refused`` error of the message).
        """
        if len(messages) > 1 and not self.has("MULTIAPPEND"):
            uids: list[int] = []
            for message in messages:
                got = self.append_many(folder, [message])
                if got is None:
                    return None
                uids.extend(got)
            return uids
        if self.has("LITERAL+"):
            stream = AppendStream(self, folder)
            stream.add(messages)
            return stream.end()
        with self.guard(f"appending to '{printable(folder)}'"):
            try:
                typ, data = raw_append(self.client, folder, _append_parts(messages))
            except Refused as exc:
                raise AppendRefused(_text(exc.words)) from None
        return _appended_uids(typ, data, len(messages))

    def append_stream(self, folder: str) -> AppendStream | None:
        """A MULTIAPPEND to ``folder`` kept open across batches (:class:`AppendStream`), when the server offers
        MULTIAPPEND and LITERAL+ (messages sent without waiting for the server); None otherwise."""
        if not (self.has("MULTIAPPEND") and self.has("LITERAL+")):
            return None
        return AppendStream(self, folder)

    @staticmethod
    def _statuses(lines: list[t.Any]) -> dict[str, dict[str, int]]:
        """Untagged STATUS responses (of LIST-STATUS, or of a STATUS command): folder name -> item -> value."""
        statuses: dict[str, dict[str, int]] = {}
        for line in lines:
            name, items = parse_response([line])[-2:]
            name = decode_utf7(name) if isinstance(name, bytes) else str(name)
            statuses[name] = {k.decode().upper(): int(v) for k, v in zip(items[::2], items[1::2])}
        return statuses


@flagsets.cached
def _flag_list(flags: tuple[bytes, ...]) -> bytes:
    """The flag list of an APPEND, `` (\\Seen $Label)``: the flags that pass :func:`split_flags`."""
    return b" (" + b" ".join(split_flags(flags)[0]) + b")"


class AppendRefused(Exception):
    """The server refused an APPEND (NO): too big, over quota, bad message..."""


def _append_parts(messages: t.Iterable[tuple[bytes, tuple[bytes, ...], t.Any]]) -> list[tuple[bytes, bytes]]:
    """(head, body) of each (body, flags, INTERNALDATE) to append: the flag list and the date when it is in the form
    fetchparse.internaldate passes on (anything else is left out)."""
    parts = []
    for body, flags, date in messages:
        head = _flag_list(tuple(flags))
        if (stamp := fetchparse.internaldate(date)) is not None:
            head += b' "' + stamp + b'"'
        parts.append((head, body))
    return parts


def _appended_uids(typ: str, data: t.Any, count: int) -> list[int] | None:
    """The local UIDs of the ``count`` messages of an APPEND the server answered ``typ data`` (APPENDUID), or None
    when it gave none or not one each; raises AppendRefused unless the answer is OK."""
    if typ != "OK":
        raise AppendRefused(_text(data))
    match = _APPENDUID_RE.search(b" ".join(d for d in data if isinstance(d, bytes)))
    if not match:
        return None
    uids = parse_uid_set(match.group(2))
    return uids if len(uids) == count else None


class AppendStream:
    """One MULTIAPPEND kept open while batches are fetched (apply.Applier._transfer): :meth:`add` sends a batch's
    messages at once, :meth:`end` ends the command, the server's one commit for all of them, and gives their local UIDs
    (as :meth:`Connection.append_many`). MULTIAPPEND is all or nothing: until :meth:`end` is answered, nothing of it is
    stored, and a connection that breaks meanwhile stores nothing of it. A failure while sending leaves the command
    unfinished: the connection is closed (nothing else can be sent on it)."""

    def __init__(self, conn: Connection, folder: str) -> None:
        self._conn = conn
        self._folder = folder
        self._command: Appending | None = None
        self.count = 0  # messages sent in the open command

    def add(self, messages: list[tuple[bytes, tuple[bytes, ...], t.Any]]) -> None:
        conn = self._conn
        try:
            with conn.guard(f"appending to '{printable(self._folder)}'"):
                if self._command is None:
                    self._command = Appending(conn.client, self._folder)
                self._command.add(_append_parts(messages))
        except BaseException:
            conn._drop()  # pylint: disable=protected-access  # mid-command: the connection is of no further use
            raise
        self.count += len(messages)

    def end(self) -> list[int] | None:
        """End the command (nothing sent: nothing to do); raises AppendRefused when the server says NO. The next
        :meth:`add` starts another command."""
        if self._command is None:
            return []
        (command, self._command), (count, self.count) = (self._command, None), (self.count, 0)
        with self._conn.guard(f"appending to '{printable(self._folder)}'"):
            try:
                typ, data = command.end()
            except Refused as exc:
                raise AppendRefused(_text(exc.words)) from None
        return _appended_uids(typ, data, count)


def _text(data: t.Any) -> str:
    """A server's response text, safe to show (:func:`text.printable`)."""
    return printable(_joined(data), 500)


def _joined(data: t.Any) -> str:
    if isinstance(data, (list, tuple)):
        return " ".join(_joined(d) for d in data if d)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


__all__ = ["Connection", "Endpoint", "AppendRefused", "ServerViolation", "split_flags", "insecure_notice", "HAS_IMAPCLIENT",
           "IMAPCLIENT_IMPORT_ERROR", "chunks", "uid_set", "parse_response"]
