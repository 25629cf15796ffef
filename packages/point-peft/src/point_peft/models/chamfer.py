"""Chamfer distance between batches of point sets, chunked, in plain PyTorch.

Point-MAE's reconstruction loss is the official ``ChamferDistanceL2`` (a CUDA extension there):
``mean_i min_j |a_i - b_j|² + mean_j min_i |a_i - b_j|²``, the means taken over every point of
every set in the batch. Here each direction is a 1-nearest-neighbour search by
:func:`point_peft.ops.knn`, which ranks candidates block by block without autograd and then
recomputes only the winning distances with autograd: the memory held for backward is
O(points), never O(points²), and the gradient is that of the minimum (it flows to the nearest
point only), as in the CUDA kernel.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from point_peft.ops import knn


class ChamferDistances(NamedTuple):
    """Squared distance of every point to the nearest point of the other set."""

    first_to_second: torch.Tensor  # (batch, N) for first (batch, N, 3)
    second_to_first: torch.Tensor  # (batch, M) for second (batch, M, 3)


def chamfer_distances(
    first: torch.Tensor, second: torch.Tensor, *, chunk_size: int | None = None
) -> ChamferDistances:
    """Nearest squared distances both ways between ``first`` (batch, N, 3) and ``second`` (batch, M, 3).

    ``chunk_size`` bounds the (batch, chunk_size, other size) block of candidate distances (see
    :func:`point_peft.ops.knn`). Differentiable with respect to both sets.

    Example:
        >>> a = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
        >>> b = torch.tensor([[[0.0, 0, 2]]])
        >>> chamfer_distances(a, b)
        ChamferDistances(first_to_second=tensor([[4., 5.]]), second_to_first=tensor([[4.]]))
    """
    forward = knn(first, second, 1, chunk_size=chunk_size).distances[..., 0]
    backward = knn(second, first, 1, chunk_size=chunk_size).distances[..., 0]
    return ChamferDistances(forward, backward)


def chamfer_l2(
    first: torch.Tensor, second: torch.Tensor, *, chunk_size: int | None = None
) -> torch.Tensor:
    """Point-MAE's Chamfer-L2 loss: mean nearest squared distance first→second plus second→first.

    Example:
        >>> a = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
        >>> b = torch.tensor([[[0.0, 0, 2]]])
        >>> chamfer_l2(a, b)  # (4 + 5) / 2 + 4 / 1
        tensor(8.5000)
    """
    distances = chamfer_distances(first, second, chunk_size=chunk_size)
    return distances.first_to_second.mean() + distances.second_to_first.mean()
