"""Which examples each process sees, in which order: deterministic, resumable, sharded."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for one epoch of one process.

    The order depends only on ``(seed, epoch)``, never on the global RNG, so a resumed run sees
    exactly the batches an uninterrupted one would. Each *global* batch holds
    ``batch_size * world_size`` examples; process ``rank`` takes its contiguous slice, so N processes
    with batch b train on the same examples per step as one process with batch N·b. ``start_batch``
    skips the batches a resumed run has already consumed.
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        if num_examples < 1:
            raise ValueError("the dataset is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_examples))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.num_examples, generator=generator).tolist()

    def global_batches(self) -> list[list[int]]:
        order = self._order()
        size = self.batch_size * self.world_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        # A short last batch is kept only if every process gets at least one example from it;
        # otherwise some process would have nothing to step on and DDP would hang.
        if (
            batches
            and len(batches[-1]) < size
            and (self.drop_last or len(batches[-1]) < self.world_size)
        ):
            batches.pop()
        return batches

    def __len__(self) -> int:
        return max(0, len(self.global_batches()) - self.start_batch)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.start_batch :]:
            yield _split(batch, self.world_size)[self.rank]


def _split(batch: list[int], parts: int) -> list[list[int]]:
    """Contiguous, as-equal-as-possible slices (sizes differ by at most one)."""
    base, extra = divmod(len(batch), parts)
    slices, start = [], 0
    for part in range(parts):
        stop = start + base + (1 if part < extra else 0)
        slices.append(batch[start:stop])
        start = stop
    return slices
