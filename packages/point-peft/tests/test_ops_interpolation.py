"""Inverse-distance interpolation: equals a plain loop, reproduces features at the reference points,
keeps constants constant, and is differentiable everywhere (coincident points included)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from point_peft.ops import interpolate_inverse_distance


def brute_force(query, ref, features, k, power, eps):
    out = torch.zeros(query.shape[0], query.shape[1], features.shape[-1], dtype=features.dtype)
    for b in range(query.shape[0]):
        for i in range(query.shape[1]):
            distances = [float(torch.dist(query[b, i], ref[b, j])) for j in range(ref.shape[1])]
            nearest = sorted(range(len(distances)), key=distances.__getitem__)[
                : k or len(distances)
            ]
            weights = {j: 1.0 / (distances[j] ** power + eps) for j in nearest}
            total = sum(weights.values())
            for j, weight in weights.items():
                out[b, i] += weight / total * features[b, j]
    return out


def random_setting(seed, batch=2, num_query=7, num_ref=9, channels=4, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    query = torch.rand(batch, num_query, 3, generator=generator, dtype=dtype)
    ref = torch.rand(batch, num_ref, 3, generator=generator, dtype=dtype)
    features = torch.randn(batch, num_ref, channels, generator=generator, dtype=dtype)
    return query, ref, features


@pytest.mark.parametrize(
    ("k", "power", "eps"),
    [(None, 2, 1e-8), (3, 2, 1e-8), (None, 1, 1e-3), (1, 2, 1e-8), (4, 1.5, 1e-6)],
)
def test_equals_a_plain_loop(k, power, eps):
    query, ref, features = random_setting(0)
    result = interpolate_inverse_distance(query, ref, features, k=k, power=power, eps=eps)
    torch.testing.assert_close(result, brute_force(query, ref, features, k, power, eps))


@pytest.mark.parametrize("k", [None, 3])
def test_reproduces_the_features_at_the_reference_points(k):
    _, ref, features = random_setting(1)
    result = interpolate_inverse_distance(ref, ref, features, k=k, eps=1e-30)
    torch.testing.assert_close(result, features, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    num_query=st.integers(1, 12),
    num_ref=st.integers(1, 12),
    power=st.sampled_from([1.0, 2.0, 3.0]),
    data=st.data(),
)
def test_constants_stay_constant(seed, num_query, num_ref, power, data):
    query, ref, _ = random_setting(seed, num_query=num_query, num_ref=num_ref, dtype=torch.float32)
    k = data.draw(st.none() | st.integers(1, num_ref))
    features = torch.full((2, num_ref, 3), 0.37)
    result = interpolate_inverse_distance(query, ref, features, k=k, power=power)
    torch.testing.assert_close(result, torch.full((2, num_query, 3), 0.37))


def test_point_peft_propagation_sizes_weigh_all_anchors():
    tokens, anchors, features = random_setting(2, batch=4, num_query=128, num_ref=64, channels=384)
    result = interpolate_inverse_distance(tokens, anchors, features)
    assert result.shape == (4, 128, 384)
    squared = (tokens[:, :, None] - anchors[:, None]).square().sum(-1)
    weights = 1 / (squared + 1e-8)
    torch.testing.assert_close(result, (weights / weights.sum(-1, keepdim=True)) @ features)


@pytest.mark.parametrize(("k", "power"), [(None, 2), (None, 1), (3, 2), (3, 1)])
def test_gradients_are_finite_at_coincident_points(k, power):
    query, ref, features = random_setting(3)
    query = torch.cat([query, ref[:, :2]], dim=1).requires_grad_(True)  # two queries sit on refs
    ref.requires_grad_(True)
    features.requires_grad_(True)
    interpolate_inverse_distance(query, ref, features, k=k, power=power).sum().backward()
    for tensor in (query, ref, features):
        assert bool(torch.isfinite(tensor.grad).all())


@pytest.mark.parametrize("k", [None, 2])
def test_gradcheck(k):
    query, ref, features = random_setting(4, num_query=3, num_ref=5, channels=2)
    inputs = tuple(t.requires_grad_(True) for t in (query, ref, features))
    assert torch.autograd.gradcheck(
        lambda q, r, f: interpolate_inverse_distance(q, r, f, k=k, eps=1e-3), inputs
    )


def test_output_follows_the_feature_dtype():
    query, ref, features = random_setting(5, dtype=torch.float32)
    result = interpolate_inverse_distance(query, ref, features.bfloat16())
    assert result.dtype == torch.bfloat16
