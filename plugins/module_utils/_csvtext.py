# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The text of an accounts CSV file: UTF-8, or a sentence naming the line and column of the first byte that is not.

Standard library only and no import of the collection: the migrate action plugin imports it, and
playbooks/files/migrate_accounts_csv.py (run by the controller's Python outside Ansible) loads it by its path, so
that both readers of an accounts CSV share this one rule.
"""

from __future__ import annotations

import codecs


class NotUtf8(ValueError):
    """The file is not UTF-8 text; the message is a sentence naming the place and the fix (never a cell's value)."""


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` decoded as UTF-8 (a leading byte order mark dropped); :class:`NotUtf8` naming ``source``, the line and
    the column (in characters, from 1) of the first byte that is not UTF-8 otherwise."""
    body = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        line_start = body.rfind(b"\n", 0, exc.start) + 1
        column = len(body[line_start:exc.start].decode("utf-8")) + 1
        raise NotUtf8(f"{source} line {line}, column {column}: byte 0x{body[exc.start]:02X} is not UTF-8 text; save the "
                      "file as UTF-8 (in a spreadsheet: CSV UTF-8).") from None
