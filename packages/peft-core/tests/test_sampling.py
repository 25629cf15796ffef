"""Deterministic, resumable, sharded batch order."""

from __future__ import annotations

import torch

from peft_core.trainer.sampling import EpochBatchSampler


def test_ranks_partition_each_global_batch():
    one = list(EpochBatchSampler(20, 4, seed=3, world_size=1))
    two = [list(EpochBatchSampler(20, 2, seed=3, rank=r, world_size=2)) for r in range(2)]
    for step, batch in enumerate(one):
        assert two[0][step] + two[1][step] == batch


def test_order_ignores_the_global_rng_and_changes_with_epoch():
    torch.manual_seed(0)
    first = list(EpochBatchSampler(10, 3, seed=1, epoch=0))
    torch.manual_seed(123)
    again = list(EpochBatchSampler(10, 3, seed=1, epoch=0))
    other_epoch = list(EpochBatchSampler(10, 3, seed=1, epoch=1))
    assert first == again
    assert first != other_epoch
    assert sorted(i for b in first for i in b) == list(range(10))


def test_start_batch_skips_consumed_batches():
    full = list(EpochBatchSampler(10, 3, seed=1))
    resumed = EpochBatchSampler(10, 3, seed=1, start_batch=2)
    assert list(resumed) == full[2:]
    assert len(resumed) == len(full) - 2


def test_short_last_batch_kept_only_if_every_rank_gets_an_example():
    assert [len(b) for b in EpochBatchSampler(10, 4)] == [4, 4, 2]
    assert [len(b) for b in EpochBatchSampler(10, 4, drop_last=True)] == [4, 4]
    # world 4, batch 2: global batch 8, last global batch holds 2 < 4 ranks -> dropped
    assert len(EpochBatchSampler(10, 2, rank=3, world_size=4)) == 1
    # world 2: last global batch of 2 gives one example to each rank
    assert [len(b) for b in EpochBatchSampler(10, 4, rank=1, world_size=2)] == [4, 1]
