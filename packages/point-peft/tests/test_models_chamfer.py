"""Chamfer distance against a brute-force double loop, its gradient, and its chunking."""

from __future__ import annotations

import pytest
import torch

from point_peft.models import chamfer_distances, chamfer_l2


def brute_force_chamfer_l2(first: torch.Tensor, second: torch.Tensor) -> float:
    """mean_i min_j |a_i - b_j|² + mean_j min_i |a_i - b_j|², over every set of the batch."""
    forward, backward = [], []
    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        for p in a:
            forward.append(min(sum((pi - qi) ** 2 for pi, qi in zip(p, q, strict=True)) for q in b))
        for q in b:
            backward.append(
                min(sum((pi - qi) ** 2 for pi, qi in zip(p, q, strict=True)) for p in a)
            )
    return sum(forward) / len(forward) + sum(backward) / len(backward)


@pytest.mark.parametrize(("n", "m"), [(7, 7), (5, 9), (12, 3)])
def test_matches_the_brute_force_double_loop(n, m):
    generator = torch.Generator().manual_seed(n * 100 + m)
    first = torch.randn(3, n, 3, generator=generator, dtype=torch.float64)
    second = torch.randn(3, m, 3, generator=generator, dtype=torch.float64)
    assert chamfer_l2(first, second).item() == pytest.approx(
        brute_force_chamfer_l2(first, second), rel=1e-12
    )


def test_per_point_distances_are_nearest_squared_distances():
    first = torch.tensor([[[0.0, 0, 0], [3, 0, 0]]])
    second = torch.tensor([[[1.0, 0, 0], [0, 2, 0], [3, 0, 0.5]]])
    distances = chamfer_distances(first, second)
    assert distances.first_to_second.tolist() == [[1.0, 0.25]]
    assert distances.second_to_first.tolist() == [[1.0, 4.0, 0.25]]


def test_identical_sets_have_zero_distance_whatever_the_order():
    points = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(0))
    shuffled = points[:, torch.randperm(10, generator=torch.Generator().manual_seed(1))]
    assert chamfer_l2(points, shuffled).item() == 0.0


def test_chunking_does_not_change_the_result():
    generator = torch.Generator().manual_seed(2)
    first = torch.randn(4, 33, 3, generator=generator)
    second = torch.randn(4, 17, 3, generator=generator)
    whole = chamfer_l2(first, second)
    for chunk_size in (1, 5, 16):
        assert chamfer_l2(first, second, chunk_size=chunk_size).item() == pytest.approx(
            whole.item(), rel=1e-6
        )


def test_gradcheck_in_float64(one_thread):
    generator = torch.Generator().manual_seed(3)
    first = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    second = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: chamfer_l2(a, b, chunk_size=2), (first, second))


def test_gradient_flows_to_the_nearest_point_only():
    first = torch.tensor([[[0.0, 0, 0]]], requires_grad=True)
    second = torch.tensor([[[1.0, 0, 0], [5.0, 0, 0]]], requires_grad=True)
    chamfer_l2(first, second).backward()
    # forward: (0 - 1)² to the nearest; backward: mean of (1 - 0)² and (5 - 0)², both to first
    assert first.grad.tolist() == [[[-2.0 + (-2.0 - 10.0) / 2, 0.0, 0.0]]]
    assert second.grad.tolist() == [[[2.0 + 1.0, 0.0, 0.0], [5.0, 0.0, 0.0]]]
