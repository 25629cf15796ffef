"""The sparse down projection and gated MLP against brute-force sums, for every strategy.

Besides equality with a float64 loop, the tests put NaN into the weight rows of inactive neurons:
a dense product would spread it (NaN · 0 = NaN) into every output, so a finite result proves
those rows were never read.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deft.sparse import (
    STRATEGIES,
    sparse_down_projection,
    sparse_gated_mlp,
    threshold_activation,
)

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def assert_close(actual, expected, rtol=1.3e-6, atol=1e-5):
    # torch.testing.assert_close costs seconds on its first call (lazy imports); this is enough.
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    difference = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), f"max |difference| {difference}"


def _sparse_activation(shape, density, seed=0):
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(*shape, generator=generator)
    keep = torch.rand(*shape, generator=generator) < density
    return values * keep


def _brute_force_down(a, weight_t, bias=None, threshold=0.0):
    """y[n] = b + Σ_{i: |a[n,i]| > τ} a[n,i] · weight_t[i]: one neuron at a time, in float64."""
    rows = a.reshape(-1, a.shape[-1])
    # τ as a's dtype sees it: |a| ≤ τ is decided in that dtype (0.1 in fp32 is not 0.1 in fp64)
    threshold = torch.tensor(threshold, dtype=a.dtype).item()
    out = torch.zeros(rows.shape[0], weight_t.shape[1], dtype=torch.float64)
    for n, row in enumerate(rows):
        for i, value in enumerate(row.tolist()):
            if value != 0 and abs(value) > threshold:
                out[n] += value * weight_t[i].double()
        if bias is not None:
            out[n] += bias.double()
    return out.reshape(*a.shape[:-1], weight_t.shape[1])


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("shape", [(12,), (1, 12), (5, 12), (2, 3, 12)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
def test_down_projection_equals_the_sum_over_active_neurons(strategy, shape, density):
    a = _sparse_activation(shape, density)
    weight_t = torch.randn(12, 7)
    bias = torch.randn(7)
    out = sparse_down_projection(a, weight_t, bias, strategy=strategy)
    assert out.shape == (*shape[:-1], 7)
    assert_close(out, _brute_force_down(a, weight_t, bias).float())
    no_bias = sparse_down_projection(a, weight_t, strategy=strategy)
    assert_close(no_bias, _brute_force_down(a, weight_t).float())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_threshold_counts_small_magnitudes_as_zero(strategy):
    a = torch.tensor([[0.05, -0.2, 0.1, -0.1, 3.0], [0.0, 0.11, -0.09, 0.0, 0.0]])
    weight_t = torch.arange(15.0).view(5, 3)
    out = sparse_down_projection(a, weight_t, threshold=0.1, strategy=strategy)
    # kept: row 0 → -0.2·w1 + 3·w4; row 1 → 0.11·w1
    expected = torch.stack([-0.2 * weight_t[1] + 3.0 * weight_t[4], 0.11 * weight_t[1]])
    assert_close(out, expected)
    assert_close(out, _brute_force_down(a, weight_t, threshold=0.1).float())


def test_threshold_activation_zeroes_at_and_below_tau_and_leaves_nan_alone_at_zero():
    a = torch.tensor([0.1, -0.1, 0.1001, float("nan"), 0.0])
    assert (
        threshold_activation(a, 0.0) is a
    )  # τ = 0: untouched, NaN propagates as in the dense model
    thresholded = threshold_activation(a, 0.1)
    assert thresholded[:3].tolist() == pytest.approx([0.0, 0.0, 0.1001])
    assert thresholded[4] == 0


@pytest.mark.parametrize("strategy", ["gather", "rows", "auto"])
@pytest.mark.parametrize("tokens", [1, 6])
def test_rows_of_inactive_neurons_are_never_read(strategy, tokens):
    a = torch.zeros(tokens, 10)
    a[:, [1, 4]] = torch.randn(tokens, 2)  # every token uses neurons 1 and 4 only: 20 % active
    weight_t = torch.randn(10, 3)
    poisoned = weight_t.clone()
    poisoned[[0, 2, 3, 5, 6, 7, 8, 9]] = float("nan")
    out = sparse_down_projection(a, poisoned, strategy=strategy)
    assert torch.isfinite(out).all()
    assert_close(out, a @ weight_t)
    # the dense path reads every row (NaN · 0 = NaN): the check above can fail
    assert torch.isnan(sparse_down_projection(a, poisoned, strategy="dense")).all()


@pytest.mark.parametrize("tokens", [1, 6])
def test_auto_uses_the_dense_matmul_above_dense_above(tokens):
    a = torch.zeros(tokens, 10)
    a[:, [1, 4, 7]] = 1.0  # 30 % active
    poisoned = torch.randn(10, 3)
    poisoned[0] = float("nan")
    assert torch.isfinite(sparse_down_projection(a, poisoned, dense_above=0.35)).all()
    assert torch.isnan(sparse_down_projection(a, poisoned, dense_above=0.25)).all()


def _brute_force_gated(x, gate_w, up_w, down_t, act, gate_b, up_b, down_b, threshold):
    x, gate_w, up_w, down_t = x.double(), gate_w.double(), up_w.double(), down_t.double()
    gate = act(x @ gate_w.T + (0 if gate_b is None else gate_b.double()))
    gate = torch.where(gate.abs() > threshold, gate, torch.zeros_like(gate))
    up = x @ up_w.T + (0 if up_b is None else up_b.double())
    return (gate * up) @ down_t + (0 if down_b is None else down_b.double())


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(("act", "threshold"), [(torch.relu, 0.0), (torch.nn.functional.silu, 0.2)])
@pytest.mark.parametrize("shape", [(1, 6), (7, 6), (2, 3, 6)])
def test_gated_mlp_equals_dense_computation(strategy, bias, act, threshold, shape):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=generator)
    gate_w, up_w = torch.randn(16, 6, generator=generator), torch.randn(16, 6, generator=generator)
    down_t = torch.randn(16, 5, generator=generator)
    biases = [torch.randn(n, generator=generator) if bias else None for n in (16, 16, 5)]
    out = sparse_gated_mlp(
        x, gate_w, up_w, down_t, act,
        gate_bias=biases[0], up_bias=biases[1], down_bias=biases[2],
        threshold=threshold, strategy=strategy,
    )  # fmt: skip
    expected = _brute_force_gated(x, gate_w, up_w, down_t, act, *biases, threshold)
    assert out.shape == (*shape[:-1], 5)
    assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", ["gather", "rows", "auto"])
def test_gated_mlp_reads_up_and_down_rows_of_active_gates_only(strategy):
    x = torch.randn(4, 6)
    gate_w = torch.randn(10, 6)
    gate_w[[0, 2, 3, 5, 6, 8, 9]] = 0.0  # relu(0) = 0: only neurons 1, 4, 7 can be active
    up_w, down_t = torch.randn(10, 6), torch.randn(10, 3)
    inactive = [0, 2, 3, 5, 6, 8, 9]
    up_poisoned, down_poisoned = up_w.clone(), down_t.clone()
    up_poisoned[inactive] = float("nan")
    down_poisoned[inactive] = float("nan")
    out = sparse_gated_mlp(x, gate_w, up_poisoned, down_poisoned, torch.relu, strategy=strategy)
    assert torch.isfinite(out).all()
    expected = (torch.relu(x @ gate_w.T) * (x @ up_w.T)) @ down_t
    assert_close(out, expected)


def test_no_active_neuron_gives_the_bias():
    out = sparse_down_projection(torch.zeros(3, 8), torch.randn(8, 2), torch.tensor([1.0, -2.0]))
    assert out.tolist() == [[1.0, -2.0]] * 3
    gated = sparse_gated_mlp(
        torch.randn(1, 4), -torch.ones(8, 4).abs(), torch.randn(8, 4), torch.randn(8, 2),
        lambda t: torch.relu(t - 100),
    )  # fmt: skip
    assert gated.tolist() == [[0.0, 0.0]]


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="strategy must be one of"):
        sparse_down_projection(torch.zeros(1, 4), torch.zeros(4, 2), strategy="csr")
    with pytest.raises(ValueError, match="dense_above"):
        sparse_down_projection(torch.zeros(1, 4), torch.zeros(4, 2), dense_above=1.5)
    with pytest.raises(ValueError, match="4 features but weight_t has 5 rows"):
        sparse_down_projection(torch.zeros(1, 4), torch.zeros(5, 2))


@settings(max_examples=25, deadline=None)
@given(
    tokens=st.integers(1, 9),
    features=st.integers(1, 24),
    out_features=st.integers(1, 5),
    density=st.floats(0.0, 1.0),
    threshold=st.sampled_from([0.0, 0.3]),
    strategy=st.sampled_from(STRATEGIES),
    seed=st.integers(0, 2**16),
)
def test_property_every_strategy_matches_brute_force(
    tokens, features, out_features, density, threshold, strategy, seed
):
    a = _sparse_activation((tokens, features), density, seed)
    weight_t = torch.randn(features, out_features, generator=torch.Generator().manual_seed(seed))
    out = sparse_down_projection(a, weight_t, threshold=threshold, strategy=strategy)
    expected = _brute_force_down(a, weight_t, threshold=threshold)
    assert torch.allclose(out.double(), expected, rtol=1e-5, atol=1e-5 * math.sqrt(features))
