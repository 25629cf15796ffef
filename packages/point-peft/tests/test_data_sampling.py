"""Point-count normalisation, unit-sphere normalisation, rotations and keyed random streams, each
against a direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from point_peft.data import normalize_to_unit_sphere, resample_points, rotation_about_axis
from point_peft.data._random import keyed_generator
from point_peft.data.geometry import rotate_points
from point_peft.ops import farthest_point_sample


def cloud(num_points: int = 40, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(num_points, channels, generator=torch.Generator().manual_seed(seed))


def pc_normalize_numpy(points: np.ndarray) -> np.ndarray:
    """The official loaders' normalisation, written out in numpy."""
    centred = points - points.mean(axis=0)
    return centred / np.sqrt((centred**2).sum(axis=1)).max()


def test_normalize_matches_the_official_formula_and_keeps_normals():
    points = cloud(channels=6) * 3 + 5
    result = normalize_to_unit_sphere(points)
    expected = pc_normalize_numpy(points[:, :3].double().numpy())
    assert np.allclose(result[:, :3].double().numpy(), expected, atol=1e-6)
    assert torch.equal(result[:, 3:], points[:, 3:])
    assert float(result[:, :3].norm(dim=1).max()) == pytest.approx(1.0)


def test_normalize_by_a_reference_cloud_uses_its_centroid_and_radius():
    whole = cloud(seed=3) * 2 + 1
    part = whole[:7]
    result = normalize_to_unit_sphere(part, reference=whole)
    assert torch.allclose(result, normalize_to_unit_sphere(whole)[:7])
    assert not torch.allclose(result, normalize_to_unit_sphere(part), atol=1e-3)
    with pytest.raises(ValueError, match="reference must have the batch shape"):
        normalize_to_unit_sphere(part[None], reference=whole)
    with pytest.raises(ValueError, match="reference must have shape"):
        normalize_to_unit_sphere(part, reference=whole[:, :2])


def test_normalize_batched_equals_one_by_one_and_degenerate_clouds_are_centred_only():
    batch = torch.stack([cloud(seed=s) * (s + 1) for s in range(3)])
    together = normalize_to_unit_sphere(batch)
    for b in range(3):
        assert torch.allclose(together[b], normalize_to_unit_sphere(batch[b]))
    same = torch.full((5, 3), 2.0)
    assert torch.equal(normalize_to_unit_sphere(same), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="channels>=3"):
        normalize_to_unit_sphere(torch.zeros(4, 2))


@pytest.mark.parametrize(("axis", "turns"), [("x", (1, 2)), ("y", (2, 0)), ("z", (0, 1))])
def test_rotations_are_right_handed_and_orthonormal(axis, turns):
    matrices = rotation_about_axis(torch.linspace(-3, 3, 7, dtype=torch.float64), axis)
    identity = torch.eye(3, dtype=torch.float64).expand(7, 3, 3)
    assert torch.allclose(matrices @ matrices.mT, identity)
    assert torch.allclose(torch.linalg.det(matrices), torch.ones(7, dtype=torch.float64))
    quarter = rotation_about_axis(torch.tensor(math.pi / 2, dtype=torch.float64), axis)
    source, target = turns  # a quarter turn takes the first axis onto the second
    unit = torch.zeros(3, dtype=torch.float64)
    unit[source] = 1
    expected = torch.zeros(3, dtype=torch.float64)
    expected[target] = 1
    assert torch.allclose(quarter @ unit, expected, atol=1e-12)


def test_rotate_points_equals_the_matrix_product_for_one_matrix_and_for_a_batch():
    points = torch.randn(4, 30, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    matrices = rotation_about_axis(torch.tensor([0.3, 1.0, -2.0, 3.0], dtype=torch.float64), "x")
    assert torch.allclose(rotate_points(points, matrices), points @ matrices.mT)
    assert torch.allclose(rotate_points(points[0], matrices[1]), points[0] @ matrices[1].T)


def test_fps_resampling_takes_the_farthest_point_sample():
    points = cloud(channels=6)
    result = resample_points(points, 10, "fps")
    indices = farthest_point_sample(points[None, :, :3], 10)[0]
    assert torch.equal(result, points[indices])  # all channels follow their point


def test_first_and_random_resampling():
    points = cloud()
    assert torch.equal(resample_points(points, 7, "first"), points[:7])
    a = resample_points(points, 7, "random", generator=torch.Generator().manual_seed(1))
    b = resample_points(points, 7, "random", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    rows = {tuple(row.tolist()) for row in a}
    assert len(rows) == 7
    assert rows <= {tuple(row.tolist()) for row in points}


def test_batched_resampling_and_unchanged_when_the_count_already_fits():
    batch = torch.stack([cloud(seed=s) for s in range(3)])
    together = resample_points(batch, 5, "fps")
    for b in range(3):
        assert torch.equal(together[b], resample_points(batch[b], 5, "fps"))
    first = batch[0]
    assert resample_points(first, 40) is first


def test_duplicates_only_on_request():
    points = cloud(num_points=5)
    with pytest.raises(ValueError, match="allow_duplicates=True"):
        resample_points(points, 8)
    padded = resample_points(points, 8, allow_duplicates=True, generator=torch.Generator())
    assert torch.equal(padded[:5], points)
    assert all(any(torch.equal(row, original) for original in points) for row in padded[5:])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_points": 0}, "num_points must be a positive integer"),
        ({"num_points": 3, "method": "grid"}, "method must be one of"),
    ],
)
def test_bad_resampling_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resample_points(cloud(), **kwargs)


def test_keyed_generators_depend_on_every_key_and_only_on_the_keys():
    def draw(*keys):
        return torch.rand(4, generator=keyed_generator(*keys))

    assert torch.equal(draw(0, 1, 2), draw(0, 1, 2))
    assert not torch.equal(draw(0, 1, 2), draw(0, 2, 1))
    assert not torch.equal(draw(0, 1), draw(1, 0))
    assert not torch.equal(draw(0, 1, 2), draw(0, 1, 3))
    with pytest.raises(ValueError, match="non-negative"):
        keyed_generator(0, -1)
