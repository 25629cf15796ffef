"""Point-MAE grouping: FPS centres, each centre's k nearest points, coordinates relative to it."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from point_peft.ops import farthest_point_sample, group, index_points, knn


def random_cloud(seed: int, batch: int, num_points: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, num_points, 3, generator=generator, dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    batch=st.integers(1, 3),
    num_points=st.integers(1, 40),
    data=st.data(),
)
def test_neighbourhoods_plus_centres_are_the_original_points(seed, batch, num_points, data):
    xyz = random_cloud(seed, batch, num_points)
    num_groups = data.draw(st.integers(1, num_points))
    group_size = data.draw(st.integers(1, num_points))
    centers, neighborhoods, indices = group(xyz, num_groups, group_size)
    assert centers.shape == (batch, num_groups, 3)
    assert neighborhoods.shape == (batch, num_groups, group_size, 3)
    assert indices.shape == (batch, num_groups, group_size)
    assert int(indices.min()) >= 0
    assert int(indices.max()) < num_points
    torch.testing.assert_close(neighborhoods + centers.unsqueeze(2), index_points(xyz, indices))


def test_is_fps_centres_then_knn_among_all_points():
    xyz = random_cloud(0, 3, 256)
    centers, _, indices = group(xyz, 16, 8)
    center_indices = farthest_point_sample(xyz, 16)
    assert torch.equal(centers, index_points(xyz, center_indices))
    assert torch.equal(indices, knn(centers, xyz, 8).indices)
    # each centre is an input point, so it is its own nearest neighbour and leads its patch
    assert torch.equal(indices[..., 0], center_indices)


def test_start_rule_is_passed_to_fps():
    xyz = random_cloud(1, 2, 64)
    centers = group(xyz, 4, 4, start="farthest_from_centroid").centers
    expected = farthest_point_sample(xyz, 4, start="farthest_from_centroid")
    assert torch.equal(centers, index_points(xyz, expected))


def test_point_mae_sizes():
    xyz = torch.rand(2, 2048, 3, generator=torch.Generator().manual_seed(2))
    neighborhoods = group(xyz, 128, 32).neighborhoods
    assert neighborhoods.shape == (2, 128, 32, 3)
    assert bool((neighborhoods[:, :, 0] == 0).all())  # the centre, relative to itself


def test_neighbourhoods_carry_gradients_to_the_points():
    xyz = random_cloud(3, 1, 20).requires_grad_(True)
    _, neighborhoods, _ = group(xyz, 4, 5)
    neighborhoods.sum().backward()
    assert xyz.grad is not None
