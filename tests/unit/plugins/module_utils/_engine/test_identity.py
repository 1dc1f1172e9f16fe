# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Identity matching without state: multiplicities count (docs/spec.md "Identity")."""

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


def test_an_ambiguous_key_is_told_apart_by_content_and_twins_count():
    key = ("<a@x>", "d", 10)
    # Remote: look-alikes 1 and 2 (same key, different content), twins 3 and 4 of another key. Local: only the copy
    # of look-alike 2, and one twin.
    twin_key = ("<t@x>", "d", 20)
    remote = {1: key, 2: key, 3: twin_key, 4: twin_key}
    contents = {1: b"A", 2: b"B", 3: b"T", 4: b"T"}
    local = {7: key, 8: twin_key}
    assert identity.match(remote, local, contents, {7: b"B", 8: b"T"}) == {2: 7, 3: 8}
    # Without digests (no ambiguity to resolve), by key alone: the first remote message takes the local copy.
    assert identity.match(remote, local) == {1: 7, 3: 8}


def test_ambiguity_needs_a_local_candidate_and_a_repeated_key():
    pool = identity.IdentityPool()
    try:
        pool.add({7: ("<a@x>", "d", 10), 8: ("<b@x>", "d", 10), 9: ("<b@x>", "d", 10)})
        pool.add_remote({1: ("<a@x>", "d", 10), 2: ("<c@x>", "d", 10), 3: ("<c@x>", "d", 10)})
        assert not pool.ambiguous(("<a@x>", "d", 10))  # once on each side
        assert not pool.ambiguous(("<c@x>", "d", 10))  # twice on the remote, but no local candidate
        assert pool.ambiguous(("<b@x>", "d", 10))  # twice among the local candidates
        assert pool.unresolved() == {8: 10, 9: 10}
    finally:
        pool.close()
