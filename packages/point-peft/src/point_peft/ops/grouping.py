"""Point-MAE's patch grouping: FPS centres, then each centre's k nearest points."""

from __future__ import annotations

from typing import NamedTuple

import torch

from point_peft.ops._checks import check_count, check_points
from point_peft.ops.indexing import index_points
from point_peft.ops.neighbors import knn
from point_peft.ops.sampling import StartRule, farthest_point_sample


class Groups(NamedTuple):
    """Result of :func:`group`."""

    centers: torch.Tensor  # (batch, num_groups, 3)
    neighborhoods: torch.Tensor  # (batch, num_groups, group_size, 3), relative to their centre
    indices: torch.Tensor  # (batch, num_groups, group_size) int64 indices into the input points


def group(
    xyz: torch.Tensor, num_groups: int, group_size: int, *, start: StartRule = "first"
) -> Groups:
    """Split every cloud into ``num_groups`` local patches of ``group_size`` points (Point-MAE's Group).

    Centres are chosen by :func:`~point_peft.ops.farthest_point_sample` (``start`` is its start
    rule); each patch is its centre's ``group_size`` nearest input points by :func:`~point_peft.ops.knn`,
    nearest first, so the centre itself (distance 0) leads its patch. Patches may overlap, and
    ``neighborhoods + centers[:, :, None]`` gives back the input points ``xyz[b, indices[b]]``.
    Differentiable with respect to ``xyz`` through the coordinates (the choice of points is not).

    Example:
        >>> xyz = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [5, 0, 0], [5.2, 0, 0]]])
        >>> centers, neighborhoods, indices = group(xyz, num_groups=2, group_size=2)
        >>> indices
        tensor([[[0, 1],
                 [3, 2]]])
        >>> neighborhoods[0, 1]
        tensor([[ 0.0000,  0.0000,  0.0000],
                [-0.2000,  0.0000,  0.0000]])
    """
    check_points("xyz", xyz)
    num_points = xyz.shape[1]
    check_count("num_groups", num_groups, at_most=num_points, what="points per cloud in xyz")
    check_count("group_size", group_size, at_most=num_points, what="points per cloud in xyz")
    center_indices = farthest_point_sample(xyz, num_groups, start=start)
    centers = index_points(xyz, center_indices)
    indices = knn(centers, xyz, group_size).indices
    neighborhoods = index_points(xyz, indices) - centers.unsqueeze(2)
    return Groups(centers, neighborhoods, indices)
