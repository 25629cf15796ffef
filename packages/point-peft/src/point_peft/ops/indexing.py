"""Batched gathers: pick rows of a per-cloud tensor by per-cloud indices."""

from __future__ import annotations

import torch


def index_points(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``values[b, indices[b, ...]]`` for every cloud ``b``: (batch, N, C), (batch, ...) -> (batch, ..., C).

    A single ``gather`` (no Python loop over the batch, no ``.tolist()``), differentiable with
    respect to ``values``.

    Example:
        >>> values = torch.arange(12.0).reshape(2, 3, 2)
        >>> index_points(values, torch.tensor([[2, 0], [1, 1]]))
        tensor([[[4., 5.],
                 [0., 1.]],
        <BLANKLINE>
                [[8., 9.],
                 [8., 9.]]])
    """
    if values.dim() != 3:
        raise ValueError(f"values must have shape (batch, N, C), got {tuple(values.shape)}")
    if indices.dim() < 1 or indices.shape[0] != values.shape[0]:
        raise ValueError(
            f"indices must have shape (batch, ...) with batch {values.shape[0]}, "
            f"got {tuple(indices.shape)}"
        )
    flat = indices.reshape(indices.shape[0], -1, 1).expand(-1, -1, values.shape[-1])
    return values.gather(1, flat).reshape(*indices.shape, values.shape[-1])
