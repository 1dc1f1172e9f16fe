# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text that came from a server, made safe to print or log.

A remote server chooses folder names, response texts and message headers. Written as they are, a line feed
forges a log line and an escape sequence drives the terminal that shows the log. :func:`printable` is the one
rule: control characters (C0, DEL, C1), line and paragraph separators and the bidirectional overrides that
reorder what a reader sees become visible escapes (``\\n``, ``\\x1b``, ``\\u202e``); a backslash becomes
``\\\\`` so that an escape is never ambiguous. Everything else (any other Unicode) is kept as it is.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls; U+2028/U+2029 (line breaks to some readers); bidi embeddings, overrides and
# isolates (U+202A-U+202E, U+2066-U+2069), which reorder text on screen ("Trojan Source").
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, limit: int | None = None) -> str:
    """``text`` (bytes are decoded as UTF-8 with replacement) on one line, safe for a log or a terminal.

    With ``limit``, a longer result is cut to ``limit`` characters ending in ``...``.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    elif not isinstance(text, str):
        text = str(text)
    safe = _UNSAFE.sub(_escape, text)
    if limit is not None and len(safe) > limit:
        safe = safe[:max(0, limit - 3)] + "..."
    return safe


def capitalized(text: str) -> str:
    """``text`` with its first letter upper case, as the start of a sentence ("the remote server h:993 ...")."""
    return text[:1].upper() + text[1:]
