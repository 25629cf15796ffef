"""Random draws inside a dataset's ``__getitem__`` (augmentation) seeded per example and epoch.

Left to themselves, such draws come from whichever process loads the example: the main process's
global RNGs with ``num_workers=0``, a worker's own with more. A resumed run restarts its workers
mid-epoch with fresh RNG streams, so the augmentations after a resume differ from an uninterrupted
run's; and numpy's global RNG is not even reseeded per worker, so workers repeat each other's
draws. Seeding Python's, numpy's and torch's global RNGs from ``(seed, epoch, example index)``
before each example, and restoring them afterwards, makes an example's draws a function of those
three alone: the same with any ``num_workers``, any number of processes, and after a resume. The
restore leaves the main process's RNG streams (dropout) untouched by data loading.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from peft_core.trainer.checkpointing import capture_rng_state, restore_rng_state


def example_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for one example in one epoch (neighbouring keys give unrelated
    streams, unlike ``seed + index``)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


@contextmanager
def preserved_global_rngs() -> Iterator[None]:
    """Restore every global RNG a checkpoint captures when the block ends."""
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)


def seed_global_rngs(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the legacy global RNG is what augmentation code draws from
    # the CPU generator only: dataset code draws on the CPU, and torch.manual_seed would also
    # reseed every CUDA device
    torch.default_generator.manual_seed(seed)


class ExampleSeededDataset(Dataset):
    """``dataset`` whose examples are loaded under RNGs seeded by :func:`example_seed`.

    Non-negative integer seeds only: ``seed`` is the run's seed, ``epoch`` the epoch being loaded.
    """

    def __init__(self, dataset: Dataset, *, seed: int, epoch: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        # DataLoader fetches a whole batch through this method: one save and restore per batch.
        items = []
        with preserved_global_rngs():
            for index in indices:
                seed_global_rngs(example_seed(self.seed, self.epoch, int(index)))
                items.append(self.dataset[index])
        return items
