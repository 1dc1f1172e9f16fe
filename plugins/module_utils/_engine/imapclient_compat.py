# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every use of the private internals of imapclient (4.1.0) and of imaplib beneath it, in one module: an upgrade of
either breaks here, and only here. imap.py uses none of them.

Entry points, each covered by tests (tests/unit/plugins/module_utils/_engine/test_imapclient_compat.py against an
in-process IMAP responder; tests/integration/test_engine.py and test_inbox.py against Dovecot):

- :class:`Transport`: imaplib's IMAP4 whose private hooks (``_create_socket``, ``_new_tag``, ``_append_untagged``,
  ``starttls``'s body, ``_MAXLINE``) call public-named methods that imap._IMAP4 overrides;
- :class:`Client`: imapclient's IMAPClient on a given transport (``_create_IMAP4``, ``_timeout``);
- :func:`transport`: the imaplib connection under a client (``_imap``);
- :func:`list_returning`, :func:`create_subscribe_status`, :func:`uid_filter_sieve`, :func:`append`: the commands
  imapclient has no public method for (LIST ... RETURN, CREATE + SUBSCRIBE + STATUS pipelined keeping the server's
  words, UID FILTER SIEVE, a MULTIAPPEND that streams literals);
- :func:`start_command`, :func:`end_command`: a command whose responses the engine reads itself (fetchparse.py).
"""

from __future__ import annotations

import importlib.util
import imaplib
import os
import re
import socket
import ssl
import sys
import types
import typing as t

# The distribution's metadata directory beside the imapclient package: imapclient-4.1.0.dist-info.
_DIST_INFO = re.compile(r"imapclient-(\d+)\.(\d+)\.(\d+)\.dist-info", re.IGNORECASE)


def _version_without_metadata() -> types.ModuleType | None:
    """imapclient/version.py reads its own version through importlib.metadata, which costs a run's process about 20 ms
    of imports; nothing of this collection reads that version. Before imapclient is first imported, its version module
    is given here the version named by the dist-info directory installed beside the package (the same version
    importlib.metadata reads); where there is no such directory, imapclient's own module is imported as usual. The module
    given, if any."""
    if "imapclient" in sys.modules or "imapclient.version" in sys.modules:
        return None
    try:
        spec = importlib.util.find_spec("imapclient")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    site = os.path.dirname(os.path.dirname(spec.origin))
    try:
        found = [m for m in (_DIST_INFO.fullmatch(name) for name in os.listdir(site)) if m]
    except OSError:
        return None
    if len(found) != 1:
        return None  # none, or several installs side by side: let importlib.metadata decide
    major, minor, micro = (int(part) for part in found[0].groups())
    module = types.ModuleType("imapclient.version", "imapclient's version, from its dist-info directory name.")
    module.version = f"{major}.{minor}.{micro}"  # type: ignore[attr-defined]
    module.version_info = (major, minor, micro, "final")  # type: ignore[attr-defined]
    sys.modules["imapclient.version"] = module
    return module


def _import_imapclient() -> t.Any:
    """imapclient (None when it cannot be imported: imap.py reports the missing library), with the version module of
    :func:`_version_without_metadata`; if imapclient wants more of that module than it gives, imapclient's own."""
    given = _version_without_metadata()
    for attempt in (given, None):
        try:
            return importlib.import_module("imapclient")
        except ImportError:
            if attempt is None or sys.modules.get("imapclient.version") is not attempt:
                return None
            for name in [name for name in sys.modules if name == "imapclient" or name.startswith("imapclient.")]:
                del sys.modules[name]
    return None  # pragma: no cover - the loop returns


imapclient: t.Any = _import_imapclient()

# A message body up to this size is written together with its APPEND head (LITERAL+).
_JOIN_BELOW = 16384

MAX_LINE: int = imaplib._MAXLINE  # type: ignore[attr-defined]  # pylint: disable=protected-access


class Transport(imaplib.IMAP4):
    """imaplib's IMAP4 with its private hooks turned into methods a subclass overrides: :meth:`create_socket`,
    :meth:`command_started`, :meth:`response_kept`, :meth:`wrap_tls`."""

    def create_socket(self) -> socket.socket:
        """The connected socket (TLS already on for implicit TLS)."""
        raise NotImplementedError

    def command_started(self) -> None:
        """A new command's tag was just taken."""

    def response_kept(self) -> None:
        """An untagged response is about to be kept for the current command."""

    def wrap_tls(self, context: ssl.SSLContext) -> None:
        """Put TLS on the connection after the server's OK to STARTTLS."""
        raise NotImplementedError

    # -- imaplib's private hooks ---------------------------------------------------------------------------
    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return self.create_socket()

    def _new_tag(self) -> bytes:
        tag: bytes = super()._new_tag()  # type: ignore[misc]  # pylint: disable=protected-access
        self.command_started()
        return tag

    def _append_untagged(self, typ: str, dat: t.Any) -> None:
        self.response_kept()
        super()._append_untagged(typ, dat)  # type: ignore[misc]  # pylint: disable=protected-access

    def starttls(self, ssl_context: t.Any = None) -> t.Any:
        """imaplib's STARTTLS, with TLS put on by :meth:`wrap_tls`; whatever the server sent before TLS is dropped."""
        if self._tls_established:  # type: ignore[has-type]
            raise self.abort("TLS session already established")
        typ, dat = self._simple_command("STARTTLS")
        if typ != "OK":
            raise self.error("Couldn't establish TLS session")
        self.wrap_tls(ssl_context or ssl.create_default_context())
        self._tls_established = True
        self._get_capabilities()
        return self._untagged_response(typ, dat, "STARTTLS")


TransportFactory = t.Callable[[str, int, float, t.Optional[ssl.SSLContext]], Transport]

if imapclient is not None:
    class Client(imapclient.IMAPClient):  # type: ignore[misc]
        """imapclient's IMAPClient on the transport ``factory(host, port, read timeout, TLS context or None)`` makes."""

        def __init__(self, host: str, port: int, use_ssl: bool, context: ssl.SSLContext | None, timeout: float,
                     factory: TransportFactory) -> None:
            self._factory = factory
            super().__init__(host, port=port, ssl=use_ssl, ssl_context=context, timeout=timeout)

        def _create_IMAP4(self) -> Transport:  # pylint: disable=invalid-name
            return self._factory(self.host, self.port, self._timeout.read, self.ssl_context if self.ssl else None)
else:  # pragma: no cover - imap.py reports the missing library before any client is made
    Client = None  # type: ignore[misc,assignment]  # pylint: disable=invalid-name


def transport(client: t.Any) -> t.Any:
    """The imaplib connection (a :class:`Transport`) under an imapclient client."""
    return client._imap  # pylint: disable=protected-access


def list_returning(client: t.Any, returns: str) -> tuple[list[t.Any], list[t.Any]]:
    """``LIST "" "*" RETURN (returns)``: the folders as imapclient's list_folders gives them, and the raw STATUS
    responses that came with them (RETURN STATUS)."""
    imap = transport(client)
    imap.untagged_responses.pop("STATUS", None)
    typ, data = imap._simple_command("LIST", '""', '"*"', "RETURN", f"({returns})")  # pylint: disable=protected-access
    client._checkok("list", typ, data)  # pylint: disable=protected-access
    status_lines = [d for d in imap.untagged_responses.pop("STATUS", []) if d]
    typ, data = imap._untagged_response(typ, data, "LIST")  # pylint: disable=protected-access
    return client._proc_folder_list(data), status_lines  # pylint: disable=protected-access


def uid_filter_sieve(client: t.Any, uids: str) -> tuple[str, list[t.Any]]:
    """``UID FILTER SIEVE DELIVERY UID <uids>`` on the selected folder: the server's answer (FILTERED responses dropped)."""
    imap = transport(client)
    typ, data = imap._simple_command("UID", "FILTER", "SIEVE", "DELIVERY", "UID", uids)  # pylint: disable=protected-access
    imap.untagged_responses.pop("FILTERED", None)
    return typ, data


def start_command(client: t.Any, command: bytes) -> tuple[t.Any, bytes]:
    """Send ``command`` (without tag and CRLF) under a new tag: the transport, whose responses the caller reads up to
    the tagged completion, and the tag, for :func:`end_command` afterwards."""
    imap = transport(client)
    for typ in ("OK", "NO", "BAD"):  # as imaplib's _command: these untagged responses belong to one command
        imap.untagged_responses.pop(typ, None)
    tag: bytes = imap._new_tag()  # pylint: disable=protected-access
    imap.send(tag + b" " + command + b"\r\n")
    return imap, tag


def end_command(imap: t.Any, tag: bytes) -> None:
    """The command sent with ``tag`` is complete (its responses read by the caller): imaplib forgets it."""
    imap.tagged_commands.pop(tag, None)


class Refused(Exception):
    """The server said NO to an APPEND; ``words`` is what it said."""

    def __init__(self, words: t.Any) -> None:
        super().__init__(words)
        self.words = words


class Appending:
    """One APPEND command under LITERAL+, sent a part at a time: :meth:`add` sends messages (each ``(head, body)``, the
    head the flags and date part; one write per message, a small body joined to its head, a larger one written on its
    own, never copied), :meth:`end` ends the command and reads the server's tagged answer. Several messages make it a
    MULTIAPPEND: one commit for the server, however many :meth:`add` calls it took."""

    def __init__(self, client: t.Any, folder: str) -> None:
        self.imap = transport(client)
        self.tag: bytes = self.imap._new_tag()  # pylint: disable=protected-access
        self.opening = self.tag + b" APPEND " + client._normalise_folder(folder)  # pylint: disable=protected-access

    def add(self, messages: t.Iterable[tuple[bytes, bytes]]) -> None:
        """Send ``messages``, all of them (the caller may wait before the next ones)."""
        imap, pending, self.opening = self.imap, self.opening, b""
        for head, body in messages:
            pending += head + b" {" + str(len(body)).encode() + b"+}\r\n"
            if len(body) <= _JOIN_BELOW:
                pending += body
            else:
                imap.send(pending)
                imap.send(body)
                pending = b""
            if len(pending) >= _JOIN_BELOW:
                imap.send(pending)
                pending = b""
        if pending:
            imap.send(pending)

    def end(self) -> tuple[str, list[t.Any]]:
        """End the command: the server's tagged answer; raises :class:`Refused` when it says NO."""
        opening, self.opening = self.opening, b""
        self.imap.send(opening + b"\r\n")
        return _appended(self.imap, self.tag)


def append(client: t.Any, folder: str, messages: t.Sequence[tuple[bytes, bytes]]) -> tuple[str, list[t.Any]]:
    """One APPEND of several messages (MULTIAPPEND), each ``(head, body)`` with ``head`` the flags and date part, the
    bodies sent as synchronizing literals (each after the server's go-ahead; :class:`Appending` for LITERAL+). The
    server's tagged answer; raises :class:`Refused` when it says NO (before a literal, or at the end)."""
    imap = transport(client)
    tag = imap._new_tag()  # pylint: disable=protected-access
    pending = tag + b" APPEND " + client._normalise_folder(folder)  # pylint: disable=protected-access
    for head, body in messages:
        imap.send(pending + head + b" {" + str(len(body)).encode() + b"}\r\n")
        while imap._get_response():  # pylint: disable=protected-access
            if imap.tagged_commands.get(tag):
                _typ, data = imap.tagged_commands.pop(tag)
                raise Refused(data)
        imap.send(body)
        pending = b""
    imap.send(pending + b"\r\n")
    return _appended(imap, tag)


def _appended(imap: t.Any, tag: bytes) -> tuple[str, list[t.Any]]:
    """The tagged answer to the APPEND sent with ``tag``; raises :class:`Refused` when it is NO."""
    try:
        return imap._command_complete("APPEND", tag)  # type: ignore[no-any-return]  # pylint: disable=protected-access
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        raise Refused(str(exc)) from None


def create_subscribe_status(client: t.Any, folder: str, items: t.Sequence[str]) -> list[tuple[str, list[t.Any]]]:
    """CREATE, SUBSCRIBE and ``STATUS folder (items)`` sent together and answered in one round trip (the server runs
    them in order, RFC 3501 5.5): the three answers, a NO or BAD returned, not raised; every answer is read before this
    returns. STATUS's answer when OK holds the untagged STATUS responses instead of the tagged text."""
    imap = transport(client)
    name = client._normalise_folder(folder)  # pylint: disable=protected-access
    imap.untagged_responses.pop("STATUS", None)
    sent = [("CREATE", imap._command("CREATE", name)), ("SUBSCRIBE", imap._command("SUBSCRIBE", name)),  # pylint: disable=protected-access
            ("STATUS", imap._command("STATUS", name, f"({' '.join(items)})"))]  # pylint: disable=protected-access
    answers: list[tuple[str, list[t.Any]]] = []
    for command, tag in sent:
        try:
            answers.append(imap._command_complete(command, tag))  # pylint: disable=protected-access
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:  # BAD: imaplib raises it
            answers.append(("BAD", [str(exc)]))
    if answers[2][0] == "OK":
        answers[2] = ("OK", [d for d in imap.untagged_responses.pop("STATUS", []) if d])
    return answers
