# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine.text import printable


@pytest.mark.parametrize("raw, shown", [
    ("Archive/2019", "Archive/2019"),
    ("Ünïcødé 日本 ✉", "Ünïcødé 日本 ✉"),
    ("x\n2026-11-30 status success", "x\\n2026-11-30 status success"),
    ("\x1b]0;pwned\x07\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J"),
    ("a\rb\tc\x00d\x7fe\x9bf", "a\\rb\\tc\\x00d\\x7fe\\x9bf"),
    ("evil\u202etxt.exe\u2028", "evil\\u202etxt.exe\\u2028"),
    ("back\\slash\\n", "back\\\\slash\\\\n"),
    (b"bytes \xff\n", "bytes \ufffd\\n"),
])
def test_printable_escapes_what_could_forge_lines_or_drive_a_terminal(raw, shown):
    assert printable(raw) == shown
    assert "\n" not in printable(raw) and "\x1b" not in printable(raw)


def test_printable_limit():
    assert printable("a" * 10, limit=6) == "aaa..."
    assert printable("abc", limit=6) == "abc"
