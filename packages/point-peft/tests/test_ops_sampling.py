"""Farthest point sampling: equals an obviously-correct reference, has its defining property,
follows the documented start and tie rules, and never picks a point twice."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from point_peft.ops import farthest_point_sample


def reference_fps(points: torch.Tensor, count: int, start: int) -> list[int]:
    """One cloud, straight from the definition: the next point is the unchosen one whose distance to
    its nearest chosen point is largest, lowest index on ties."""
    squared = (points[:, None, :] - points[None, :, :]).square().sum(-1).tolist()
    chosen = [start]
    while len(chosen) < count:
        best, best_index = -1.0, -1
        for i in range(len(points)):
            if i in chosen:
                continue
            nearest = min(squared[i][c] for c in chosen)
            if nearest > best:
                best, best_index = nearest, i
        chosen.append(best_index)
    return chosen


def make_cloud(seed: int, batch: int, num_points: int, kind: str) -> torch.Tensor:
    """float64 clouds; "lattice" and "duplicates" are full of exact distance ties."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return torch.rand(batch, num_points, 3, generator=generator, dtype=torch.float64)
    if kind == "lattice":
        return torch.randint(0, 3, (batch, num_points, 3), generator=generator).double()
    distinct = torch.rand(
        batch, max(1, num_points // 3), 3, generator=generator, dtype=torch.float64
    )
    pick = torch.randint(0, distinct.shape[1], (batch, num_points), generator=generator)
    return torch.gather(distinct, 1, pick.unsqueeze(-1).expand(-1, -1, 3))


clouds = st.builds(
    make_cloud,
    seed=st.integers(0, 2**31),
    batch=st.integers(1, 3),
    num_points=st.integers(1, 24),
    kind=st.sampled_from(["uniform", "lattice", "duplicates"]),
)


@settings(max_examples=80, deadline=None)
@given(cloud=clouds, data=st.data())
def test_equals_the_reference_including_ties_and_duplicates(cloud, data):
    count = data.draw(st.integers(1, cloud.shape[1]))
    result = farthest_point_sample(cloud, count)
    assert result.dtype == torch.long
    assert result.shape == (cloud.shape[0], count)
    for b in range(cloud.shape[0]):
        assert result[b].tolist() == reference_fps(cloud[b], count, start=0)


@settings(max_examples=40, deadline=None)
@given(cloud=clouds, data=st.data())
def test_farthest_from_centroid_start_equals_the_reference(cloud, data):
    count = data.draw(st.integers(1, cloud.shape[1]))
    result = farthest_point_sample(cloud, count, start="farthest_from_centroid")
    for b in range(cloud.shape[0]):
        from_centroid = (cloud[b] - cloud[b].mean(0)).square().sum(-1)
        start = int(torch.nonzero(from_centroid == from_centroid.max())[0])  # lowest index
        assert result[b].tolist() == reference_fps(cloud[b], count, start=start)


def test_each_next_point_maximises_the_distance_to_the_chosen_set():
    cloud = torch.rand(4, 500, 3, generator=torch.Generator().manual_seed(1))
    chosen = farthest_point_sample(cloud, 64)
    exact = cloud.double()
    for b in range(4):
        nearest = (exact[b] - exact[b, chosen[b, 0]]).square().sum(-1)
        for index in chosen[b, 1:].tolist():
            assert nearest[index] >= nearest.max() - 1e-6
            nearest = torch.minimum(nearest, (exact[b] - exact[b, index]).square().sum(-1))


def test_indices_are_distinct_even_when_all_points_coincide():
    cloud = torch.ones(2, 7, 3)
    assert farthest_point_sample(cloud, 7).tolist() == [list(range(7))] * 2


@settings(max_examples=30, deadline=None)
@given(cloud=clouds, data=st.data())
def test_indices_are_distinct_and_in_range(cloud, data):
    count = data.draw(st.integers(1, cloud.shape[1]))
    result = farthest_point_sample(cloud.float(), count)
    assert int(result.min()) >= 0
    assert int(result.max()) < cloud.shape[1]
    for row in result.tolist():
        assert len(set(row)) == count


def test_points_near_the_origin_are_not_skipped():
    # pointnet2_ops ignores points with |p|² <= 1e-3, so it would answer [0, 2]; the origin is farthest.
    cloud = torch.tensor([[[1.0, 0, 0], [0.0, 0, 0], [0.9, 0, 0]]])
    assert farthest_point_sample(cloud, 2).tolist() == [[0, 1]]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), num_points=st.integers(3, 30), data=st.data())
def test_relabelling_the_points_relabels_the_samples(seed, num_points, data):
    # Random points have no ties (two points always do: both are equally far from their centroid),
    # so the sample sequence does not depend on how the points are numbered.
    cloud = make_cloud(seed, 2, num_points, "uniform")
    count = data.draw(st.integers(1, num_points))
    permutation = torch.randperm(num_points, generator=torch.Generator().manual_seed(seed))
    rule = "farthest_from_centroid"
    original = farthest_point_sample(cloud, count, start=rule)
    relabelled = farthest_point_sample(cloud[:, permutation], count, start=rule)
    assert torch.equal(permutation[relabelled], original)


def test_batched_equals_one_cloud_at_a_time():
    cloud = torch.rand(5, 300, 3, generator=torch.Generator().manual_seed(2))
    batched = farthest_point_sample(cloud, 40)
    for b in range(5):
        assert torch.equal(batched[b : b + 1], farthest_point_sample(cloud[b : b + 1], 40))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_sampled_in_float32(dtype):
    cloud = torch.rand(2, 200, 3, generator=torch.Generator().manual_seed(3)).to(dtype)
    result = farthest_point_sample(cloud, 32)
    assert torch.equal(result, farthest_point_sample(cloud.float(), 32))


def test_does_not_track_gradients_or_change_its_input():
    cloud = torch.rand(1, 50, 3, requires_grad=True)
    before = cloud.detach().clone()
    result = farthest_point_sample(cloud, 10)
    assert not result.requires_grad
    assert torch.equal(cloud.detach(), before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("start", ["first", "farthest_from_centroid"])
def test_cuda_matches_cpu(start):
    cloud = torch.rand(8, 1024, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    on_gpu = farthest_point_sample(cloud.cuda(), 128, start=start)
    assert on_gpu.device.type == "cuda"
    assert torch.equal(on_gpu.cpu(), farthest_point_sample(cloud, 128, start=start))
