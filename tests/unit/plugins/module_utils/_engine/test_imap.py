# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""UID sets and chunks: imapclient 4 wants lists of ints, never range strings; commands stay bounded. Flags a server
sends are IMAP atoms or dropped."""

from __future__ import annotations

from ansible_collections.mailops.imap.plugins.module_utils._engine import imap


def test_chunks_are_lists_of_ints_bounded():
    parts = list(imap.chunks(list(range(1, 2502)), 1000))
    assert [len(p) for p in parts] == [1000, 1000, 501]
    assert all(isinstance(p, list) and all(isinstance(u, int) for u in p) for p in parts)


def test_uid_set_round_trip():
    uids = [9, 1, 2, 3, 5, 7, 8]
    assert imap.uid_set(uids) == b"1:3,5,7:9"
    assert imap.parse_uid_set(b"1:3,5,9:7") == [1, 2, 3, 5, 7, 8, 9]


def test_split_flags_keeps_rfc3501_flags_and_drops_everything_else():
    raw = (b"\\Seen", b"\\Flagged", b"$Label1", b"NonJunk", b"x)\r\nZ1 DELETE \"Victim\"\r\nZ2 NOOP (x", b"a b", b"(x",
           b"\\", b"", b"caf\xc3\xa9", b"with\x1bescape", b"quo\"te", b"br]acket", b"pct%", b"star*", b"back\\slash", "Str")
    valid, dropped = imap.split_flags(raw)
    assert valid == (b"\\Seen", b"\\Flagged", b"$Label1", b"NonJunk", b"Str")
    assert len(dropped) == len(raw) - len(valid)
    assert imap.split_flags(None) == ((), ())
    longest = b"$" + b"k" * 255  # a keyword of 256 bytes is kept; a longer one is dropped (flagsets.MAX_FLAG_BYTES)
    assert imap.split_flags((longest, longest + b"k")) == ((longest,), (longest + b"k",))


def test_the_largest_message_is_the_local_appendlimit_at_most_the_engines_limit():
    conn = imap.Connection.__new__(imap.Connection)  # capabilities only: no server needed
    for caps, largest in (({b"IMAP4REV1", b"APPENDLIMIT=1000"}, 1000), ({b"APPENDLIMIT"}, imap.MAX_MESSAGE),
                          ({b"APPENDLIMIT=99999999999"}, imap.MAX_MESSAGE), (set(), imap.MAX_MESSAGE)):
        conn.caps = caps
        assert conn.max_message() == largest


def test_each_command_counts_its_own_responses_and_drops_what_nothing_reads():
    """UID EXPUNGE leaves one EXPUNGE line per message (imaplib keeps them until a SELECT): a folder of more than
    MAX_RESPONSES deleted messages must not break the bound of a later command, nor grow what is kept."""
    conn = imap._IMAP4.__new__(imap._IMAP4)  # the bookkeeping only, no socket
    conn.tagpre, conn.tagnum, conn.tagged_commands, conn._encoding, conn.debug = b"T", 0, {}, "ascii", 0
    conn.untagged_responses = {"EXPUNGE": [b"1"] * (imap.MAX_RESPONSES + 5), "EXISTS": [b"9"], "FETCH": [b"kept"]}
    conn._responses = conn._received = 0
    for _command in range(3):
        conn._new_tag()
        for _line in range(10):
            conn._append_untagged("EXPUNGE", b"1")
    assert conn._responses == 10
    assert conn.untagged_responses["EXPUNGE"] == [b"1"] * 10 and "EXISTS" not in conn.untagged_responses
    assert conn.untagged_responses["FETCH"] == [b"kept"]
