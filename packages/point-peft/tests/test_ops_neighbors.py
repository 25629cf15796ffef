"""kNN: equals a sort of the full distance matrix, chunking changes nothing, distances are exact."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from point_peft.ops import index_points, knn, neighbors, squared_distances


def brute_force_knn(query: torch.Tensor, ref: torch.Tensor, k: int):
    squared = (query[:, :, None, :] - ref[:, None, :, :]).square().sum(-1)
    order = squared.argsort(dim=-1, stable=True)[..., :k]
    return squared.gather(-1, order), order


def random_pair(seed: int, batch: int, num_query: int, num_ref: int, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    query = torch.rand(batch, num_query, 3, generator=generator, dtype=dtype)
    ref = torch.rand(batch, num_ref, 3, generator=generator, dtype=dtype)
    return query, ref


pairs = st.builds(
    random_pair,
    seed=st.integers(0, 2**31),
    batch=st.integers(1, 3),
    num_query=st.integers(1, 20),
    num_ref=st.integers(1, 40),
)


@settings(max_examples=60, deadline=None)
@given(pair=pairs, data=st.data())
def test_equals_the_brute_force_sort(pair, data):
    query, ref = pair
    k = data.draw(st.integers(1, ref.shape[1]))
    distances, indices = knn(query, ref, k)
    expected_distances, expected_indices = brute_force_knn(query, ref, k)
    assert indices.dtype == torch.long
    assert indices.shape == distances.shape == (query.shape[0], query.shape[1], k)
    assert torch.equal(indices, expected_indices)
    torch.testing.assert_close(distances, expected_distances)


@settings(max_examples=40, deadline=None)
@given(pair=pairs, data=st.data())
def test_chunking_changes_nothing(pair, data):
    query, ref = pair
    k = data.draw(st.integers(1, ref.shape[1]))
    chunk_size = data.draw(st.integers(1, query.shape[1] + 2))
    whole = knn(query, ref, k, chunk_size=query.shape[1])
    chunked = knn(query, ref, k, chunk_size=chunk_size)
    assert torch.equal(whole.indices, chunked.indices)
    assert torch.equal(whole.distances, chunked.distances)


@settings(max_examples=30, deadline=None)
@given(pair=pairs, data=st.data())
def test_relabelling_points_relabels_the_result(pair, data):
    query, ref = pair
    k = data.draw(st.integers(1, ref.shape[1]))
    generator = torch.Generator().manual_seed(ref.shape[1])
    ref_order = torch.randperm(ref.shape[1], generator=generator)
    query_order = torch.randperm(query.shape[1], generator=generator)
    original = knn(query, ref, k)
    relabelled = knn(query[:, query_order], ref[:, ref_order], k)
    assert torch.equal(ref_order[relabelled.indices], original.indices[:, query_order])
    torch.testing.assert_close(relabelled.distances, original.distances[:, query_order])


@pytest.mark.parametrize("seed", range(4))
def test_the_exact_ranking_used_off_cpu_equals_the_brute_force_sort(seed, monkeypatch):
    monkeypatch.setattr(neighbors, "_matmul_is_full_precision", lambda ref: False)
    query, ref = random_pair(seed, 3, 50, 300, dtype=torch.float32)
    ref = torch.cat([ref, ref[:, :40]], dim=1)  # duplicates: exact ties
    distances, indices = knn(query, ref, 16, chunk_size=7)
    expected_distances, expected_indices = brute_force_knn(query, ref, 16)
    assert torch.equal(distances, expected_distances)
    assert torch.equal(index_points(ref, indices), index_points(ref, expected_indices))


def test_autocast_does_not_reach_the_search():
    query, ref = random_pair(9, 2, 64, 512, dtype=torch.float32)
    expected = knn(query, ref, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = knn(query, ref, 16)
    assert torch.equal(result.indices, expected.indices)
    assert torch.equal(result.distances, expected.distances)


def test_reduced_precision_matmuls_are_not_used_for_ranking():
    matmul = getattr(torch.backends.mkldnn, "matmul", None)  # absent before torch 2.9
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("this torch has no per-backend matmul precision")
    query, ref = random_pair(10, 2, 64, 512, dtype=torch.float32)
    _, expected = brute_force_knn(query, ref, 16)
    before = matmul.fp32_precision  # a dynamic attribute: monkeypatch cannot restore it
    matmul.fp32_precision = "bf16"
    try:
        assert not neighbors._matmul_is_full_precision(ref)
        indices = knn(query, ref, 16).indices
    finally:
        matmul.fp32_precision = before
    assert torch.equal(indices, expected)


def test_float32_distances_match_float64_and_are_sorted():
    query, ref = random_pair(0, 4, 128, 2048, dtype=torch.float32)
    distances, indices = knn(query, ref, 32)
    expected, _ = brute_force_knn(query.double(), ref.double(), 32)
    torch.testing.assert_close(distances.double(), expected, atol=1e-6, rtol=1e-5)
    assert bool((distances[..., 1:] >= distances[..., :-1]).all())
    exact = (index_points(ref, indices) - query.unsqueeze(2)).square().sum(-1)
    assert torch.equal(distances, exact)


def test_far_from_the_origin_is_still_accurate():
    # |r|² - 2q·r in float32 would lose the neighbour order at an offset of 1000 without centring.
    query, ref = random_pair(1, 2, 64, 512, dtype=torch.float32)
    distances, _ = knn(query + 1000, ref + 1000, 8)
    expected, _ = brute_force_knn(query.double(), ref.double(), 8)
    torch.testing.assert_close(distances.double(), expected, atol=1e-3, rtol=1e-3)


def test_duplicates_give_the_brute_force_distances():
    query, ref = random_pair(2, 2, 16, 10)
    ref = torch.cat([ref, ref, ref[:, :3]], dim=1)  # every point twice or three times
    distances, indices = knn(query, ref, 7)
    expected, _ = brute_force_knn(query, ref, 7)
    torch.testing.assert_close(distances, expected)
    assert torch.equal(
        index_points(ref, indices), index_points(ref, brute_force_knn(query, ref, 7)[1])
    )


def test_a_cloud_is_its_own_nearest_neighbour_at_distance_zero():
    cloud, _ = random_pair(3, 2, 100, 1, dtype=torch.float32)
    distances, indices = knn(cloud, cloud, 1)
    assert torch.equal(indices[..., 0], torch.arange(100).expand(2, 100))
    assert bool((distances == 0).all())


def test_half_precision_input_is_searched_in_float32():
    query, ref = random_pair(4, 1, 10, 30, dtype=torch.float32)
    distances, indices = knn(query.half(), ref.half(), 4)
    assert distances.dtype == torch.float32
    assert torch.equal(indices, knn(query.half().float(), ref.half().float(), 4).indices)


def test_no_query_points():
    query, ref = random_pair(5, 2, 0, 30)
    distances, indices = knn(query, ref, 4)
    assert distances.shape == indices.shape == (2, 0, 4)


def test_distances_are_differentiable():
    query, ref = random_pair(6, 2, 5, 12)
    query.requires_grad_(True)
    ref.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q, r: knn(q, r, 3).distances, (query, ref))


def test_squared_distances_are_exact_and_differentiable():
    query, ref = random_pair(7, 2, 6, 9)
    expected = (query[:, :, None] - ref[:, None]).square().sum(-1)
    torch.testing.assert_close(squared_distances(query, ref), expected)
    assert bool((squared_distances(ref, ref).diagonal(dim1=1, dim2=2) == 0).all())
    query.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: squared_distances(q, ref), (query,))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    query, ref = random_pair(8, 4, 256, 2048)
    on_gpu = knn(query.cuda(), ref.cuda(), 32)
    on_cpu = knn(query, ref, 32)
    assert torch.equal(on_gpu.indices.cpu(), on_cpu.indices)
    torch.testing.assert_close(on_gpu.distances.cpu(), on_cpu.distances)
