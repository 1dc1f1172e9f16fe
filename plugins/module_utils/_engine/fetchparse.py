# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fast reader of the responses to the engine's own ``UID FETCH`` commands (sizes; bodies, flags and INTERNALDATE;
flags), reading lines and literals straight from the bounded transport (imap._IMAP4) instead of imapclient's
per-message parser.

Every byte comes through the transport's ``readline`` and ``read``, so every bound of imap._IMAP4 holds as for any
other command: the line length, the literal size (message bodies only inside its ``bodies`` allowance), the bytes
per command and the progress timeouts; :func:`read_fetch` counts each untagged response against the responses per
command (``response_kept``). What it passes on is checked: a UID or a size is digits within bounds, INTERNALDATE is
the RFC 3501 date-time form (:func:`internaldate`, it goes back into an APPEND command), a response for a UID that
was not asked for is dropped. Flags are passed on as the server sent them, for imap.split_flags to judge.
"""

from __future__ import annotations

import re
import typing as t

MAX_UID = 4294967295  # RFC 3501: nz-number, 32 bits
_DIGITS = 10

# One token of a FETCH response's text: ( ) "quoted" or an atom (BODY[], \Seen, 123, NIL).
_TOKEN = re.compile(rb' *(?:(\()|(\))|"((?:[^"\\\r\n]|\\["\\])*)"|([^ ()"\r\n\x00]+))')
_LITERAL_AT_END = re.compile(rb"\{(\d{1,10})\}\r?\n\Z")
_FETCH_START = re.compile(rb"\* (\d{1,10}) FETCH \(")
_QUOTED_ESCAPE = re.compile(rb"\\([\"\\])")

# RFC 3501 date-time, without its quotes: "01-Jan-2024 10:00:00 +0000" (date-day-fixed may be " 1"; one digit accepted).
_DATE = re.compile(rb"( \d|\d{1,2})-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)",
                   re.IGNORECASE)
# The same form as it is sent back (internaldate's answer): two-digit day, the month as written here, every field within
# its range; a date in this form is passed on as it is, without taking it apart (twice per message copied).
_CANONICAL_DATE = re.compile(rb"(?:0[1-9]|[12]\d|3[01])-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(?!0000)\d{4} "
                             rb"(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60) [+-](?:[01]\d|2[0-3])[0-5]\d")
_MAX_DEPTH = 8  # parenthesized lists nested in one response

# The whole of the responses Dovecot sends to the engine's FETCHes of bodies and of sizes, in its order, read with one
# match (a date in the canonical form needs no further check); :data:`_COMMON_ITEM` reads the other orders.
_FLAG_ATOMS = rb'((?:[^ ()"\r\n\x00{]+(?: [^ ()"\r\n\x00{]+)*)?)'
_USUAL_BODY = re.compile(rb"UID (\d{1,10}) FLAGS \(" + _FLAG_ATOMS + rb'\) INTERNALDATE "(' + _CANONICAL_DATE.pattern
                         + rb')" BODY\[\]\Z')
_USUAL_SIZE = re.compile(rb"UID (\d{1,10}) RFC822\.SIZE (\d{1,10})\Z")
# One attribute of the common FETCH response (:func:`_common`): a number, a list of flag atoms, a quoted string without
# escapes, or BODY[] with its literal last. Anything else (more spaces, NIL, escapes, other attributes, nested lists) is
# left to the general reader (:func:`_parse`), which accepts it or says why not.
_COMMON_ITEM = re.compile(rb"(UID|RFC822\.SIZE) (\d{1,10})|(FLAGS) \(" + _FLAG_ATOMS + rb"\)"
                          rb'|(INTERNALDATE) "([^"\\\r\n]*)"|(BODY\[\])\Z', re.IGNORECASE)


class ServerViolation(Exception):
    """A server sent what no well-behaved server sends (a literal or a response list beyond the bounds, a response
    that cannot be read)."""


class Reader(t.Protocol):
    """The transport as the reader uses it (imap._IMAP4)."""

    def readline(self) -> bytes:
        """One line, CRLF included, at most the line bound."""

    def read(self, size: int) -> bytes:
        """A literal of ``size`` bytes (refused above the literal bound)."""

    def response_kept(self) -> None:
        """One more untagged response for the current command (refused beyond the bound)."""


class Refused(Exception):
    """The server answered the FETCH with NO or BAD; ``words`` is its text."""

    def __init__(self, words: str) -> None:
        super().__init__(words)
        self.words = words


class Lost(Exception):
    """The connection ended (EOF or BYE) before the FETCH completed."""


def internaldate(raw: t.Any) -> bytes | None:
    """``raw`` as an RFC 3501 date-time (the form APPEND takes, without quotes): itself when it is one, re-formatted when
    it is one but for a one-digit or space-padded day or the month's case, None when it is anything else."""
    if isinstance(raw, bytes) and _CANONICAL_DATE.fullmatch(raw):
        return raw
    if not isinstance(raw, (bytes, bytearray)):
        return None
    match = _DATE.fullmatch(raw)
    if match is None:
        return None
    day, month, year, hour, minute, second, sign, zone_h, zone_m = match.groups()
    if not (1 <= int(day) <= 31 and int(year) >= 1 and int(hour) <= 23 and int(minute) <= 59 and int(second) <= 60
            and int(zone_h) <= 23 and int(zone_m) <= 59):
        return None
    canonical = b"%02d-%s-%s %s:%s:%s %s%s%s" % (int(day), month.capitalize(), year, hour, minute, second, sign, zone_h, zone_m)
    return bytes(raw) if raw == canonical else canonical


def number(raw: t.Any, largest: int, what: str) -> int:
    """An atom that must be a number from 0 to ``largest`` (a UID, a size)."""
    if not isinstance(raw, bytes) or not raw.isdigit() or len(raw) > _DIGITS or int(raw) > largest:
        raise ServerViolation(f"it sent {what} that is not a number within bounds")
    return int(raw)


class _String:
    """A string of a response (quoted or literal), told apart from an atom."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value


def _read_response(reader: Reader, first: bytes) -> tuple[list[bytes], list[bytes]]:
    """The text parts of a response whose first line is ``first`` and the literals between them (``texts[i]`` is followed
    by ``literals[i]``), each read through the bounded transport."""
    texts: list[bytes] = []
    literals: list[bytes] = []
    line = first
    while True:
        if not line.endswith(b"\n"):
            raise Lost("the connection ended in the middle of a response")
        match = _LITERAL_AT_END.search(line)
        if match is None:
            texts.append(line.rstrip(b"\r\n"))
            return texts, literals
        size = int(match.group(1))
        texts.append(line[:match.start()].rstrip(b" "))
        literal = reader.read(size)
        if len(literal) != size:
            raise Lost("the connection ended in the middle of a literal")
        literals.append(literal)
        line = reader.readline()


def _parse(texts: list[bytes], literals: list[bytes], start: int) -> list[t.Any]:
    """The parenthesized list that starts at ``texts[0][start]`` (just after its "("), as nested lists of atoms (bytes),
    strings (:class:`_String`) and lists."""
    stack: list[list[t.Any]] = [[]]
    part = 0
    text = texts[0]
    pos = start
    while True:
        if pos >= len(text):
            if part >= len(literals):
                raise ServerViolation("it sent a FETCH response that ends before its list closes")
            stack[-1].append(_String(literals[part]))
            part += 1
            text, pos = texts[part], 0
            continue
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ServerViolation("it sent a FETCH response that cannot be read")
        pos = match.end()
        opening, _closing, quoted, atom = match.groups()
        if atom is not None:
            stack[-1].append(atom)
        elif quoted is not None:
            stack[-1].append(_String(_QUOTED_ESCAPE.sub(rb"\1", quoted) if b"\\" in quoted else quoted))
        elif opening is not None:
            if len(stack) >= _MAX_DEPTH:
                raise ServerViolation("it sent a FETCH response nested too deep")
            stack.append([])
        else:  # ")"
            done = stack.pop()
            if not stack:
                if text[pos:].strip(b" ") or part != len(literals):
                    raise ServerViolation("it sent a FETCH response with data after its list")
                return done
            stack[-1].append(done)


def _common(texts: list[bytes], literals: list[bytes], start: int) -> dict[bytes, t.Any] | None:
    """The attributes of a response in the form servers send to the engine's own FETCHes (``UID 7 FLAGS (\\Seen)
    INTERNALDATE "..." BODY[] {n}`` then ``)``; ``UID 7 RFC822.SIZE n)``), read with one match per attribute: what
    :func:`_attributes` of :func:`_parse` gives for the same response. None for any other form, which the general
    reader then reads (or refuses): this path accepts less than that one, never more."""
    text = texts[0]
    if literals:
        if len(literals) != 1 or texts[1] != b")":
            return None
        end = len(text)
    elif text.endswith(b")"):
        end = len(text) - 1
    else:
        return None
    usual = (_USUAL_BODY if literals else _USUAL_SIZE).match(text, start, end)
    if usual is not None:
        uid = int(usual.group(1))
        if literals:
            if uid <= MAX_UID:
                flag_atoms = usual.group(2)
                return {b"UID": uid, b"FLAGS": tuple(flag_atoms.split(b" ")) if flag_atoms else (),
                        b"INTERNALDATE": usual.group(3), b"BODY[]": literals[0]}
        elif uid <= MAX_UID and (size := int(usual.group(2))) <= MAX_UID:
            return {b"UID": uid, b"RFC822.SIZE": size}
        return None
    out: dict[bytes, t.Any] = {}
    pos = start
    match = _COMMON_ITEM
    while True:
        item = match.match(text, pos, end)
        if item is None:
            return None
        number_name, digits, flags, flag_atoms, date_name, date, body = item.groups()
        if number_name is not None:
            value = int(digits)
            if value > MAX_UID:
                return None
            out[number_name.upper()] = value
        elif flags is not None:
            out[b"FLAGS"] = tuple(flag_atoms.split(b" ")) if flag_atoms else ()
        elif date_name is not None:
            stamp = internaldate(date)
            if stamp is not None:
                out[b"INTERNALDATE"] = stamp
        elif body is not None:
            if not literals:
                return None
            out[b"BODY[]"] = literals[0]
            return out
        pos = item.end()
        if pos == end:
            return None if literals else out
        if text[pos] != 0x20:  # one space between attributes
            return None
        pos += 1


def _attributes(items: list[t.Any]) -> dict[bytes, t.Any]:
    """A message's FETCH attributes, checked: UID and RFC822.SIZE numbers, FLAGS a tuple of bytes, INTERNALDATE an RFC
    3501 date-time (or absent), BODY[] bytes (or absent). Attributes not asked for by the engine are ignored."""
    if len(items) % 2:
        raise ServerViolation("it sent a FETCH response with an attribute without value")
    out: dict[bytes, t.Any] = {}
    for i in range(0, len(items), 2):
        name, value = items[i], items[i + 1]
        if not isinstance(name, bytes):
            raise ServerViolation("it sent a FETCH response with a list where an attribute name belongs")
        name = name.upper()
        if name == b"UID":
            out[b"UID"] = number(value, MAX_UID, "a UID")
        elif name == b"RFC822.SIZE":
            out[b"RFC822.SIZE"] = number(value, MAX_UID, "a message size")
        elif name == b"FLAGS":
            if not isinstance(value, list) or any(isinstance(flag, list) for flag in value):
                raise ServerViolation("it sent FLAGS that are not a list of flags")
            out[b"FLAGS"] = tuple(flag.value if isinstance(flag, _String) else flag for flag in value)
        elif name == b"INTERNALDATE":
            date = internaldate(value.value) if isinstance(value, _String) else None
            if date is not None:
                out[b"INTERNALDATE"] = date
        elif name == b"BODY[]":
            if isinstance(value, _String):
                out[b"BODY[]"] = value.value
            elif value != b"NIL":
                raise ServerViolation("it sent a message body that is not a string")
    return out


def read_fetch(reader: Reader, tag: bytes, wanted: t.Container[int], out: dict[int, dict[bytes, t.Any]]) -> None:
    """Read the responses to the ``UID FETCH`` sent with ``tag`` up to its completion, into ``out`` (UID -> attribute ->
    value, as :func:`_attributes` gives them) for the UIDs in ``wanted``; a response for another UID, or without a UID
    (an unsolicited flag update), and every other untagged response are dropped, each counted.

    Raises :class:`Refused` on NO or BAD, :class:`Lost` on EOF or BYE, ServerViolation on what cannot be read.
    """
    tagged = tag + b" "
    while True:
        line = reader.readline()
        if line.startswith(b"* "):
            reader.response_kept()
            start = _FETCH_START.match(line)
            if start is None:
                texts, _literals = _read_response(reader, line)  # any other response, literals included, is dropped
                if texts[0][2:5].upper() == b"BYE":
                    raise Lost(texts[0][2:].decode("utf-8", "replace"))
                continue
            texts, literals = _read_response(reader, line)
            attributes = _common(texts, literals, start.end())
            if attributes is None:
                attributes = _attributes(_parse(texts, literals, start.end()))
            uid = attributes.get(b"UID")
            if uid is not None and uid in wanted:
                known = out.get(uid)
                if known is None:
                    out[uid] = attributes
                else:
                    known.update(attributes)
        elif line.startswith(tagged):
            status, _sp, words = line[len(tagged):].rstrip(b"\r\n").partition(b" ")
            if status.upper() == b"OK":
                return
            if status.upper() in (b"NO", b"BAD"):
                raise Refused(words.decode("utf-8", "replace"))
            raise ServerViolation("it completed a FETCH with neither OK, NO nor BAD")
        elif not line.endswith(b"\n"):
            raise Lost("the connection ended before the FETCH completed")
        else:
            raise ServerViolation("it sent a line that is neither a response nor the FETCH's completion")
