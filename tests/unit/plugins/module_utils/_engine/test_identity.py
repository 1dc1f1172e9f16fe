# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Identity matching without state: multiplicities count (SPEC "Identity")."""

from __future__ import annotations

from ansible_collections.mailops.imap.plugins.module_utils._engine import identity


def test_header_fields_unfold_and_first_wins():
    raw = b"Message-ID:\r\n <abc@x>\r\nDate: Mon, 1 Jan 2024\r\n  10:00:00 +0000\r\nMessage-ID: <other@x>\r\n"
    fields = identity.header_fields(raw)
    assert fields["message-id"] == "<abc@x>"
    assert fields["date"] == "Mon, 1 Jan 2024 10:00:00 +0000"
    assert identity.message_id(b"Subject: none\r\n") is None


def test_match_counts_multiplicities():
    same = ("<a@x>", "d", 10)
    remote = {1: same, 2: same, 3: ("<b@x>", "d", 10), 4: same}
    local = {7: same, 9: same, 11: ("<c@x>", "d", 10)}
    pairs = identity.match(remote, local)
    assert pairs == {1: 7, 2: 9}  # two of the three copies are present, the third is not
    assert set(pairs.values()) == {7, 9}


def test_match_distinguishes_date_and_size():
    remote = {1: ("<a@x>", "d1", 10), 2: ("<a@x>", "d1", 11), 3: ("<a@x>", "d2", 10)}
    assert identity.match(remote, {5: ("<a@x>", "d1", 11)}) == {2: 5}
