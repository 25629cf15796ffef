"""Farthest point sampling (FPS) in plain PyTorch: batched, deterministic, CPU and GPU.

The classic iterative algorithm: keep, for every point, its squared distance to the nearest point
chosen so far; the next point is the one where that distance is largest. The whole batch advances
one step at a time as a (batch, num_points) tensor, so a step costs a fixed handful of kernels
whatever the batch size, and no step allocates memory or synchronises with the device.

Start rule (``start=``):

- ``"first"`` (default): every cloud starts at index 0, like ``pointnet2_ops.furthest_point_sample``
  that Point-MAE and Point-PEFT use. Unlike ``pointnet2_ops``, no point is ever skipped: that kernel
  silently ignores points with ``|p|² <= 1e-3`` (points near the origin can never be chosen there).
- ``"farthest_from_centroid"``: every cloud starts at the point farthest from its centroid, which
  does not depend on the order the points are stored in (lowest index on ties).

Ties are broken by the lowest index, and a point is never chosen twice: once chosen, its distance is
set to -1, so clouds with duplicate points still yield ``num_samples`` distinct indices (the
duplicates are taken, lowest index first, once every distinct location is exhausted).
"""

from __future__ import annotations

from typing import Literal

import torch

from point_peft.ops._checks import check_count, check_points, working_dtype

StartRule = Literal["first", "farthest_from_centroid"]
START_RULES: tuple[str, ...] = ("first", "farthest_from_centroid")


def farthest_point_sample(
    xyz: torch.Tensor, num_samples: int, *, start: StartRule = "first"
) -> torch.Tensor:
    """Indices (batch, num_samples) of ``num_samples`` farthest-point-sampled points per cloud.

    Args:
        xyz: (batch, num_points, 3) finite coordinates, any floating dtype (half precision is
            computed in float32).
        num_samples: how many points to choose per cloud, ``1 <= num_samples <= num_points``.
        start: the start rule, ``"first"`` (index 0) or ``"farthest_from_centroid"``; see the
            module docstring.

    Returns:
        int64 indices on ``xyz``'s device, in the order they were chosen; all distinct per cloud.

    Example:
        >>> line = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [10, 0, 0]]])
        >>> farthest_point_sample(line, 3)
        tensor([[0, 3, 2]])
        >>> farthest_point_sample(line, 3, start="farthest_from_centroid")
        tensor([[3, 0, 2]])
    """
    check_points("xyz", xyz)
    num_samples = check_count(
        "num_samples", num_samples, at_most=xyz.shape[1], what="points per cloud in xyz"
    )
    if start not in START_RULES:
        raise ValueError(f"start must be one of {START_RULES}, got {start!r}")
    with torch.no_grad():
        points = xyz.detach().to(working_dtype(xyz))
        return _sample(points, num_samples, _start_indices(points, start))


def _start_indices(points: torch.Tensor, start: str) -> torch.Tensor:
    if start == "first":
        return torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    centroid = points.mean(dim=1, keepdim=True)
    return (points - centroid).square().sum(dim=-1).argmax(dim=1)  # argmax: first maximum


def _sample(points: torch.Tensor, num_samples: int, first: torch.Tensor) -> torch.Tensor:
    batch, num_points, _ = points.shape
    device = points.device
    # One contiguous row per coordinate: the three subtractions then stream through memory, which
    # measured ~1.5x faster on CPU than reducing over a trailing dimension of size 3.
    planes = points.transpose(1, 2).contiguous()
    xs, ys, zs = planes.unbind(1)
    nearest = torch.full((batch, num_points), float("inf"), dtype=points.dtype, device=device)
    squared = torch.empty_like(nearest)
    scratch = torch.empty_like(nearest)
    center = torch.empty(batch, 3, 1, dtype=points.dtype, device=device)
    cx, cy, cz = center.unbind(1)
    # Step-major, so that each step's indices are one contiguous row that argmax writes into. Every
    # per-step view of it is made once, up front: at small sizes the loop costs what it dispatches.
    chosen = torch.empty(num_samples, batch, dtype=torch.long, device=device)
    chosen[0] = first
    rows = chosen.unbind(0)
    scatter_indices = chosen.unsqueeze(2).unbind(0)
    gather_indices = chosen.view(num_samples, batch, 1, 1).expand(-1, -1, 3, 1).unbind(0)
    for step in range(num_samples):
        torch.gather(planes, 2, gather_indices[step], out=center)
        # Exact differences, not |p|² - 2p·c + |c|²: the expansion cancels catastrophically for
        # nearby points and would change which point wins a close race.
        torch.sub(xs, cx, out=squared).mul_(squared)
        torch.sub(ys, cy, out=scratch)
        squared.addcmul_(scratch, scratch)
        torch.sub(zs, cz, out=scratch)
        squared.addcmul_(scratch, scratch)
        torch.minimum(nearest, squared, out=nearest)
        nearest.scatter_(1, scatter_indices[step], -1.0)  # never choose a point twice
        if step + 1 < num_samples:
            torch.argmax(nearest, dim=1, out=rows[step + 1])  # first maximum: lowest index
    return chosen.t().contiguous()
