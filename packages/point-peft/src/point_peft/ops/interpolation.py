"""Inverse-distance-weighted feature interpolation between point sets (feature propagation)."""

from __future__ import annotations

import torch

from point_peft.ops._checks import check_count, check_points, check_same_batch, working_dtype
from point_peft.ops.indexing import index_points
from point_peft.ops.neighbors import knn, squared_distances


def interpolate_inverse_distance(
    query_xyz: torch.Tensor,
    ref_xyz: torch.Tensor,
    ref_features: torch.Tensor,
    *,
    k: int | None = None,
    power: float = 2.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Features at the query points: the weighted mean of reference features, weights ``1/(d^power + eps)``.

    ``d`` is the Euclidean distance between a query point and a reference point, and the weights of
    each query point are normalised to sum to one, so a constant feature stays constant.

    - ``k=None`` weighs all reference points: Point-PEFT's GA-Adapter propagation (all 64 anchors,
      ``power=2``, ``eps=1e-8``). Memory and time O(batch · M · N).
    - ``k=3`` weighs the 3 nearest reference points only: PointNet++'s feature propagation.

    At a query point that coincides with a reference point, that point's weight ``1/eps`` dominates,
    so the reference features are reproduced (exactly in the limit of tiny ``eps``).
    Differentiable with respect to the features and both sets of coordinates.

    Args:
        query_xyz: (batch, M, 3) finite coordinates of the points that receive features.
        ref_xyz: (batch, N, 3) finite coordinates of the points that carry features.
        ref_features: (batch, N, C) features of the reference points.
        k: weigh only the ``k`` nearest reference points (``1 <= k <= N``), or all when ``None``.
        power: exponent of the distance, ``> 0`` (2: inverse squared distance).
        eps: added to ``d^power`` so coincident points get a finite weight, ``> 0``.

    Returns:
        (batch, M, C) in ``ref_features``' dtype (the weights are cast to it before the sum).

    Example:
        >>> ref = torch.tensor([[[0.0, 0, 0], [2, 0, 0]]])
        >>> features = torch.tensor([[[1.0], [5.0]]])
        >>> interpolate_inverse_distance(torch.tensor([[[1.0, 0, 0], [2, 0, 0]]]), ref, features)
        tensor([[[3.],
                 [5.]]])
    """
    _check_arguments(query_xyz, ref_xyz, ref_features, power, eps)
    dtype = working_dtype(query_xyz, ref_xyz)
    query_xyz, ref_xyz = query_xyz.to(dtype), ref_xyz.to(dtype)
    if k is None:
        weights = _normalised_weights(squared_distances(query_xyz, ref_xyz), power, eps)
        return torch.bmm(weights.to(ref_features.dtype), ref_features)
    k = check_count("k", k, at_most=ref_xyz.shape[1], what="points per cloud in ref_xyz")
    distances, indices = knn(query_xyz, ref_xyz, k)
    weights = _normalised_weights(distances, power, eps).to(ref_features.dtype)
    return (weights.unsqueeze(-1) * index_points(ref_features, indices)).sum(dim=2)


def _normalised_weights(squared: torch.Tensor, power: float, eps: float) -> torch.Tensor:
    if power == 2:
        scaled = squared  # no square root: exact, and no infinite gradient at distance 0
    else:
        # d^p = (d²)^(p/2); the floor keeps the gradient finite at coincident points (pow'(0) = inf)
        scaled = squared.clamp_min(torch.finfo(squared.dtype).tiny).pow(power / 2)
    weights = 1.0 / (scaled + eps)
    return weights / weights.sum(dim=-1, keepdim=True)


def _check_arguments(
    query_xyz: torch.Tensor, ref_xyz: torch.Tensor, ref_features: object, power: float, eps: float
) -> None:
    check_points("query_xyz", query_xyz)
    check_points("ref_xyz", ref_xyz)
    check_same_batch("query_xyz", query_xyz, "ref_xyz", ref_xyz)
    if not isinstance(ref_features, torch.Tensor):
        raise TypeError(f"ref_features must be a torch.Tensor, got {type(ref_features).__name__}")
    if ref_features.dim() != 3 or ref_features.shape[:2] != ref_xyz.shape[:2]:
        raise ValueError(
            f"ref_features must have shape (batch, N, C) = {tuple(ref_xyz.shape[:2])} + (C,) to "
            f"match ref_xyz, got {tuple(ref_features.shape)}"
        )
    if not ref_features.is_floating_point():
        raise TypeError(f"ref_features must be floating-point, got dtype {ref_features.dtype}")
    check_same_batch("ref_xyz", ref_xyz, "ref_features", ref_features)
    if ref_xyz.shape[1] < 1:
        raise ValueError("ref_xyz must hold at least one point per cloud")
    if not power > 0:
        raise ValueError(f"power must be > 0, got {power}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
