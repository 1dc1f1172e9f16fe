# Copyright (c) 2026 mailops.imap contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The batches a transfer fetches and appends: every message once, in order, each batch within the byte and count
bounds; with the ramp, small at the start."""

from __future__ import annotations

import random

import pytest

from ansible_collections.mailops.imap.plugins.module_utils._engine import apply


@pytest.mark.parametrize("ramp", [False, True])
def test_batches_keep_every_message_once_in_order_within_the_bounds(ramp):
    rng = random.Random(7)
    uids = list(range(1, 5001))
    sizes = {uid: rng.choice((2000, 5000, 300_000, 5 * 1024 * 1024)) for uid in uids}
    cut = apply.batches(uids, sizes, ramp=ramp)
    assert [uid for batch in cut for uid in batch] == uids
    for batch in cut:
        assert len(batch) <= apply.BATCH_COUNT
        assert len(batch) == 1 or sum(sizes[uid] for uid in batch) <= apply.BATCH_BYTES


def test_the_ramp_starts_small():
    uids = list(range(1, 6001))
    cut = apply.batches(uids, dict.fromkeys(uids, 3000), ramp=True)
    counts = [len(batch) for batch in cut]
    assert counts[:5] == [16, 32, 64, 128, 256]
    assert counts[5:] == [512, 1000, 1000, 1000, 1000, 992]
    assert apply.batches(uids, dict.fromkeys(uids, 3000)) == [uids[i:i + 1000] for i in range(0, 6000, 1000)]
    assert apply.batches([9], {9: 12_000_000}, ramp=True) == [[9]]  # a message above every bound: a batch of its own


def test_a_small_transfer_is_one_batch_even_with_the_ramp():
    uids = list(range(1, 21))
    assert apply.batches(uids, dict.fromkeys(uids, 3000), ramp=True) == [uids]  # 60 KB: one MULTIAPPEND
    few_large = list(range(1, 7))  # a +1 % re-run's folder: a few messages, one of them large
    sizes = {**dict.fromkeys(few_large, 3000), 6: 400_000}
    assert apply.batches(few_large, sizes, ramp=True) == [few_large]
    more = list(range(1, 101))
    assert len(apply.batches(more, dict.fromkeys(more, 3000), ramp=True)) > 1  # 300 KB: the ramp starts small
    large = list(range(1, 61))  # 60 messages of 20 KB: progress and a stop after the first few, not after all
    assert apply.batches(large, dict.fromkeys(large, 20_000), ramp=True)[0] == large[:apply.FIRST_BATCH_BYTES // 20_000]
