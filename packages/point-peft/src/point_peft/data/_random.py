"""Random draws that honour an optional ``torch.Generator`` wherever the data lives.

A generator lives on one device and can only fill tensors there, so numbers are drawn on the
generator's device and then moved to the data; without a generator they are drawn on the data's
device from torch's global random state (which ``DataLoader`` reseeds in every worker).
"""

from __future__ import annotations

import numpy as np
import torch


def _source_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def uniform(
    shape: tuple[int, ...],
    low: float,
    high: float,
    *,
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """U(low, high) samples of ``shape`` on ``device``."""
    draws = torch.rand(
        shape, generator=generator, device=_source_device(generator, device), dtype=dtype
    )
    return (low + (high - low) * draws).to(device)


def normal(
    shape: tuple[int, ...],
    std: float,
    *,
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """N(0, std²) samples of ``shape`` on ``device``."""
    draws = torch.randn(
        shape, generator=generator, device=_source_device(generator, device), dtype=dtype
    )
    return (std * draws).to(device)


def random_indices(
    high: int,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Uniform integers in [0, high) of ``shape`` on ``device``."""
    draws = torch.randint(
        high, shape, generator=generator, device=_source_device(generator, device)
    )
    return draws.to(device)


def permutations(
    batch: int, length: int, *, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """(batch, length) rows, each an independent uniform permutation of range(length)."""
    scores = uniform((batch, length), 0.0, 1.0, generator=generator, device=device)
    return scores.argsort(dim=1)


def keyed_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of non-negative integers (for example seed, split, index).

    numpy's ``SeedSequence`` hashes the tuple, so nearby tuples ((0, 1) and (1, 0), or consecutive
    indices) give unrelated streams, and item ``i`` gets the same stream in any worker, in any order.
    """
    for key in keys:
        if not isinstance(key, (int, np.integer)) or isinstance(key, bool) or key < 0:
            raise ValueError(f"seeds must be non-negative integers, got {key!r}")
    high, low = np.random.SeedSequence([int(key) for key in keys]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed((int(high) << 32) | int(low))
