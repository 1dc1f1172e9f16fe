# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The caches of what the engine works out from a set of flags: computed once per small set, never kept for large
ones, at most FLAG_SETS sets, whatever a server sends."""

from __future__ import annotations

from ansible_collections.mailops.imap.plugins.module_utils._engine import flagsets


def _counting():
    calls = []

    @flagsets.cached
    def joined(flags):
        calls.append(flags)
        return b" ".join(sorted(flags))

    return joined, calls


def test_a_small_set_is_worked_out_once():
    joined, calls = _counting()
    for _round in range(5):
        assert joined(frozenset({b"\\Seen", b"$Label"})) == b"$Label \\Seen"
        assert joined((b"\\Seen",)) == b"\\Seen"
    assert len(calls) == 2


def test_large_sets_and_what_cannot_be_a_key_are_worked_out_every_time():
    joined, calls = _counting()
    many = tuple(b"$k%d" % number for number in range(flagsets.SMALL_SET + 1))
    long_flag = (b"$" + b"k" * flagsets.MAX_FLAG_BYTES,)
    for _round in range(3):
        joined(many)
        joined(long_flag)
        joined([b"\\Seen"])  # a list
    assert len(calls) == 9
    assert flagsets.cached(len)((b"\\Seen", 7)) == 2  # a number among the flags (imapclient's reading of an atom)


def test_no_more_than_flag_sets_sets_are_kept():
    joined, calls = _counting()
    sets = [(b"$k%d" % number,) for number in range(flagsets.FLAG_SETS + 10)]
    for flags in sets:
        joined(flags)
    joined(sets[0])  # the oldest was let go
    joined(sets[-1])  # the newest is kept
    assert len(calls) == len(sets) + 1
