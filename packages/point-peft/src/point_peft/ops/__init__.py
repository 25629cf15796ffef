"""Point-cloud ops in plain PyTorch, on CPU and GPU, with no compiled extensions.

They replace the CUDA-only ``pointnet2_ops`` (FPS) and ``KNN_CUDA`` that Point-MAE and Point-PEFT
need, and check their arguments (shapes, dtypes, NaN/inf, counts) with errors that name the culprit.

Example:
    >>> import torch
    >>> from point_peft.ops import group
    >>> xyz = torch.rand(2, 1024, 3, generator=torch.Generator().manual_seed(0))
    >>> centers, neighborhoods, indices = group(xyz, num_groups=64, group_size=32)
    >>> tuple(centers.shape), tuple(neighborhoods.shape), tuple(indices.shape)
    ((2, 64, 3), (2, 64, 32, 3), (2, 64, 32))
"""

from __future__ import annotations

from point_peft.ops.grouping import Groups, group
from point_peft.ops.indexing import index_points
from point_peft.ops.interpolation import interpolate_inverse_distance
from point_peft.ops.neighbors import Neighbors, knn, squared_distances
from point_peft.ops.sampling import START_RULES, farthest_point_sample

__all__ = [
    "START_RULES",
    "Groups",
    "Neighbors",
    "farthest_point_sample",
    "group",
    "index_points",
    "interpolate_inverse_distance",
    "knn",
    "squared_distances",
]
