"""Every bad argument is refused with an error that names it (one row per case)."""

from __future__ import annotations

import pytest
import torch

from point_peft.ops import (
    farthest_point_sample,
    group,
    index_points,
    interpolate_inverse_distance,
    knn,
)

CLOUD = torch.rand(2, 8, 3)
OTHER = torch.rand(2, 5, 3)
FEATURES = torch.rand(2, 5, 4)


def with_value(value: float) -> torch.Tensor:
    cloud = CLOUD.clone()
    cloud[1, 3, 2] = value
    return cloud


CASES = {
    # farthest_point_sample
    "fps rank": (lambda: farthest_point_sample(CLOUD[0], 2), ValueError, r"xyz must have shape \(batch, num_points, 3\), got \(8, 3\)"),
    "fps last dim": (lambda: farthest_point_sample(torch.rand(2, 8, 2), 2), ValueError, r"xyz must have shape"),
    "fps integer dtype": (lambda: farthest_point_sample(CLOUD.long(), 2), TypeError, r"xyz must be a floating-point tensor, got dtype torch.int64"),
    "fps not a tensor": (lambda: farthest_point_sample(CLOUD.tolist(), 2), TypeError, r"xyz must be a torch.Tensor, got list"),
    "fps nan": (lambda: farthest_point_sample(with_value(float("nan")), 2), ValueError, r"xyz contains NaN or infinite"),
    "fps inf": (lambda: farthest_point_sample(with_value(float("-inf")), 2), ValueError, r"xyz contains NaN or infinite"),
    "fps too many": (lambda: farthest_point_sample(CLOUD, 9), ValueError, r"num_samples=9 exceeds the 8 points per cloud in xyz"),
    "fps zero": (lambda: farthest_point_sample(CLOUD, 0), ValueError, r"num_samples must be >= 1, got 0"),
    "fps float count": (lambda: farthest_point_sample(CLOUD, 2.0), TypeError, r"num_samples must be an integer, got float"),
    "fps bool count": (lambda: farthest_point_sample(CLOUD, True), TypeError, r"num_samples must be an integer"),
    "fps start": (lambda: farthest_point_sample(CLOUD, 2, start="random"), ValueError, r"start must be one of \('first', 'farthest_from_centroid'\), got 'random'"),
    # knn
    "knn k too large": (lambda: knn(CLOUD, OTHER, 6), ValueError, r"k=6 exceeds the 5 points per cloud in ref"),
    "knn k zero": (lambda: knn(CLOUD, OTHER, 0), ValueError, r"k must be >= 1, got 0"),
    "knn batch": (lambda: knn(CLOUD, OTHER[:1], 2), ValueError, r"query has batch size 2 but ref has 1"),
    "knn device": (lambda: knn(CLOUD, OTHER.to("meta"), 2), ValueError, r"query is on cpu but ref is on meta"),
    "knn query nan": (lambda: knn(with_value(float("nan")), OTHER, 2), ValueError, r"query contains NaN"),
    "knn ref shape": (lambda: knn(CLOUD, FEATURES, 2), ValueError, r"ref must have shape \(batch, num_points, 3\), got \(2, 5, 4\)"),
    "knn chunk": (lambda: knn(CLOUD, OTHER, 2, chunk_size=0), ValueError, r"chunk_size must be >= 1"),
    # group
    "group too many groups": (lambda: group(CLOUD, 9, 2), ValueError, r"num_groups=9 exceeds the 8 points"),
    "group too large": (lambda: group(CLOUD, 2, 9), ValueError, r"group_size=9 exceeds the 8 points"),
    "group size zero": (lambda: group(CLOUD, 2, 0), ValueError, r"group_size must be >= 1"),
    "group integer dtype": (lambda: group(CLOUD.int(), 2, 2), TypeError, r"xyz must be a floating-point"),
    "group nan": (lambda: group(with_value(float("nan")), 2, 2), ValueError, r"xyz contains NaN"),
    # interpolate_inverse_distance
    "interp features shape": (lambda: interpolate_inverse_distance(CLOUD, OTHER, FEATURES[:, :4]), ValueError, r"ref_features must have shape \(batch, N, C\) = \(2, 5\) \+ \(C,\) to match ref_xyz, got \(2, 4, 4\)"),
    "interp features rank": (lambda: interpolate_inverse_distance(CLOUD, OTHER, FEATURES[0]), ValueError, r"ref_features must have shape"),
    "interp features dtype": (lambda: interpolate_inverse_distance(CLOUD, OTHER, FEATURES.long()), TypeError, r"ref_features must be floating-point"),
    "interp features type": (lambda: interpolate_inverse_distance(CLOUD, OTHER, None), TypeError, r"ref_features must be a torch.Tensor"),
    "interp features device": (lambda: interpolate_inverse_distance(CLOUD, OTHER, FEATURES.to("meta")), ValueError, r"ref_xyz is on cpu but ref_features is on meta"),
    "interp batch": (lambda: interpolate_inverse_distance(CLOUD[:1], OTHER, FEATURES), ValueError, r"query_xyz has batch size 1 but ref_xyz has 2"),
    "interp ref nan": (lambda: interpolate_inverse_distance(CLOUD, with_value(float("nan")), torch.rand(2, 8, 4)), ValueError, r"ref_xyz contains NaN"),
    "interp query inf": (lambda: interpolate_inverse_distance(with_value(float("inf")), OTHER, FEATURES), ValueError, r"query_xyz contains NaN or infinite"),
    "interp k too large": (lambda: interpolate_inverse_distance(CLOUD, OTHER, FEATURES, k=6), ValueError, r"k=6 exceeds the 5 points per cloud in ref_xyz"),
    "interp k zero": (lambda: interpolate_inverse_distance(CLOUD, OTHER, FEATURES, k=0), ValueError, r"k must be >= 1"),
    "interp power": (lambda: interpolate_inverse_distance(CLOUD, OTHER, FEATURES, power=0), ValueError, r"power must be > 0, got 0"),
    "interp eps": (lambda: interpolate_inverse_distance(CLOUD, OTHER, FEATURES, eps=0.0), ValueError, r"eps must be > 0, got 0.0"),
    "interp no refs": (lambda: interpolate_inverse_distance(CLOUD, OTHER[:, :0], FEATURES[:, :0]), ValueError, r"ref_xyz must hold at least one point"),
    # index_points
    "index values rank": (lambda: index_points(CLOUD[0], torch.zeros(2, 1, dtype=torch.long)), ValueError, r"values must have shape \(batch, N, C\)"),
    "index batch": (lambda: index_points(CLOUD, torch.zeros(3, 1, dtype=torch.long)), ValueError, r"indices must have shape \(batch, \.\.\.\) with batch 2, got \(3, 1\)"),
}  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), CASES.values(), ids=CASES.keys())
def test_bad_arguments_are_refused_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call()
