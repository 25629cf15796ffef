"""Matched-density thresholding: exact quantiles on hand-made activations, hooks that zero |a| ≤ τ.

The hand-made model feeds given tensors straight through its "activation" modules, so the values
the calibration sees are known exactly; a tiny BERT checks the whole path with measure_density.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deft import DensityMonitor, measure_density
from deft.thresholding import (
    ThresholdHandle,
    apply_threshold,
    calibrate_threshold,
    threshold_for_density,
)

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


class _Passthrough(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Identity(), nn.Identity(), nn.Identity()


class Echo(nn.Module):
    """``forward(values [L, B, T, F])``: layer l's activation is exactly values[l]."""

    def __init__(self, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Passthrough() for _ in range(num_layers))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, values: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return [
            layer.fc2(layer.act(layer.fc1(v))) for layer, v in zip(self.layers, values, strict=True)
        ]


def _distinct_values(*shape: int, seed: int = 0) -> torch.Tensor:
    """Values with pairwise distinct magnitudes (no ties at τ), random signs."""
    count = torch.Size(shape).numel()
    generator = torch.Generator().manual_seed(seed)
    magnitudes = (torch.randperm(count, generator=generator).float() + 1) / count
    signs = torch.randint(0, 2, (count,), generator=generator) * 2 - 1
    return (magnitudes * signs).view(shape)


@pytest.mark.parametrize("count", [1, 7, 100, 1001])
@pytest.mark.parametrize("target", [0.0, 0.013, 0.25, 0.5, 0.9, 1.0])
def test_threshold_keeps_the_target_fraction_to_one_element(count, target):
    values = _distinct_values(count)
    tau = threshold_for_density(values.abs(), target)
    kept = int((values.abs() > tau).sum())
    assert kept == round(target * count)
    assert abs(kept - target * count) <= 1


def test_threshold_with_ties_and_natural_zeros():
    values = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 3.0])
    assert threshold_for_density(values, 0.3) == 1.0  # 3 values above 1
    assert threshold_for_density(values, 0.2) == 2.0  # ties at 2: only 1 value above, fewer kept
    assert threshold_for_density(values, 0.6) == 0.0  # only 40 % are non-zero: τ = 0 keeps them
    with pytest.raises(ValueError, match="fraction in"):
        threshold_for_density(values, 30)


def test_calibration_uses_real_tokens_only():
    values = _distinct_values(2, 2, 4, 10)  # [L, B, T, F]
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    padded = values.clone()
    padded[:, mask == 0] = 1e3  # huge padding activations would move τ if they were counted
    taus = calibrate_threshold(Echo(), [{"values": padded, "attention_mask": mask}], 0.3)
    assert list(taus) == ["layers.0.act", "layers.1.act"]
    for layer, name in enumerate(taus):
        real = values[layer][mask.bool()].abs().flatten()  # 5 tokens × 10 features
        expected = real.sort(descending=True).values[round(0.3 * real.numel())]
        assert taus[name] == pytest.approx(float(expected))
        assert int((real > taus[name]).sum()) == 15


def test_calibration_pools_batches_and_a_global_tau_pools_layers():
    batches = [{"values": values} for values in _distinct_values(3, 2, 2, 3, 8).unbind()]
    taus = calibrate_threshold(Echo(), batches, 0.1)
    pooled = [torch.cat([b["values"][layer].abs().flatten() for b in batches]) for layer in (0, 1)]
    for layer, name in enumerate(taus):
        assert int((pooled[layer] > taus[name]).sum()) == round(0.1 * pooled[layer].numel())
    shared = calibrate_threshold(Echo(), batches, 0.1, per_layer=False)
    assert len(set(shared.values())) == 1
    everything = torch.cat(pooled)
    assert int((everything > shared["layers.0.act"]).sum()) == round(0.1 * everything.numel())


def test_sampling_above_the_cap_estimates_the_quantile_reproducibly():
    batches = [{"values": values} for values in _distinct_values(4, 1, 4, 50, 100).unbind()]
    exact = calibrate_threshold(Echo(1), batches, 0.2)["layers.0.act"]
    sampled = calibrate_threshold(Echo(1), batches, 0.2, max_values_per_layer=5000, seed=3)
    again = calibrate_threshold(Echo(1), batches, 0.2, max_values_per_layer=5000, seed=3)
    assert sampled == again
    everything = torch.cat([b["values"].abs().flatten() for b in batches])
    kept = float((everything > sampled["layers.0.act"]).float().mean())
    assert kept == pytest.approx(0.2, abs=0.02)  # binomial sd for 5000 samples: 0.006
    assert sampled["layers.0.act"] != exact


def test_apply_threshold_zeroes_at_and_below_tau_and_removes_cleanly():
    model = Echo()
    values = torch.tensor([[[[0.1, -0.1, 0.2, -0.3]]], [[[0.5, 0.05, -0.6, 0.0]]]])
    handle = apply_threshold(model, {"layers.0.act": 0.1, "layers.1.act": 0.5})
    assert isinstance(handle, ThresholdHandle)
    out = model(values)
    assert out[0].flatten().tolist() == pytest.approx([0.0, 0.0, 0.2, -0.3])
    assert out[1].flatten().tolist() == pytest.approx([0.0, 0.0, -0.6, 0.0])
    handle.remove()
    assert torch.equal(torch.stack(model(values)), values)
    assert all(not layer.act._forward_hooks for layer in model.layers)


def test_monitor_registered_before_sees_the_thresholded_activation():
    model = Echo(1)
    values = torch.tensor([[[[0.1, 0.9]]]])
    with DensityMonitor(model) as monitor, apply_threshold(model, 0.5):
        model(values)
        assert monitor.activations["layers.0.act"].flatten().tolist() == [0.0, pytest.approx(0.9)]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="not a percentage"):
        calibrate_threshold(Echo(), [{"values": torch.ones(2, 1, 1, 2)}], 30)
    with pytest.raises(ValueError, match="got no batches"):
        calibrate_threshold(Echo(), [], 0.3)
    with pytest.raises(ValueError, match=r"missing \['layers.1.act'\]"):
        apply_threshold(Echo(), {"layers.0.act": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        apply_threshold(Echo(), -0.1)


# -- a real transformer ------------------------------------------------------------------------


def _bert():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=3,
        intermediate_size=64,
        num_attention_heads=2,
        vocab_size=100,
    )  # fmt: skip  (GELU: no exact zeros of its own, the threshold makes all of them)
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def _text_batches():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 100, (4, 8, 10), generator=generator)
    mask = torch.ones(4, 8, 10, dtype=torch.long)
    mask[:, :, 7:] = 0  # every sample has 7 real tokens: pooled and per-sample densities agree
    return [{"input_ids": i, "attention_mask": m} for i, m in zip(ids, mask, strict=True)]


@pytest.mark.parametrize("target", [0.1, 0.35])
def test_measured_density_after_thresholding_is_the_target(target):
    model = _bert()
    batches = _text_batches()
    taus = calibrate_threshold(model, batches, target)
    with apply_threshold(model, taus):
        report = measure_density(model, batches)
    assert report.masked == pytest.approx([100 * target] * 3, abs=0.05)  # 1 element ≈ 0.003 %
    # one pass over the dense model (CATS/TEAL): layer 0 exact, later layers only close
    one_pass = calibrate_threshold(model, batches, target, sequential=False)
    assert one_pass[report.layers[0]] == taus[report.layers[0]]
    with apply_threshold(model, one_pass):
        drifted = measure_density(model, batches)
    assert drifted.masked[0] == pytest.approx(100 * target, abs=0.05)
    assert drifted.masked == pytest.approx([100 * target] * 3, abs=5)


def test_removing_the_hooks_restores_the_outputs_exactly():
    model = _bert()
    batch = _text_batches()[0]
    with torch.no_grad():
        before = model(**batch).last_hidden_state
        with apply_threshold(model, calibrate_threshold(model, [batch], 0.2)):
            during = model(**batch).last_hidden_state
        after = model(**batch).last_hidden_state
    assert not torch.allclose(during, before, atol=1e-3)
    assert torch.equal(after, before)


def test_gradients_flow_through_the_kept_activations():
    model = _bert()
    batch = _text_batches()[0]
    with apply_threshold(model, 0.05), DensityMonitor(model) as monitor:
        model(**batch).last_hidden_state.sum().backward()
        assert all((a.abs() > 0.05).eq(a != 0).all() for a in monitor.activations.values())
    assert model.encoder.layer[0].intermediate.dense.weight.grad.abs().sum() > 0


def test_product_mode_thresholds_the_input_of_the_down_projection():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=100,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaModel(config).eval()
    batches = _text_batches()[:2]
    taus = calibrate_threshold(model, batches, 0.25, gated="product")
    assert all(name.endswith("down_proj:input") for name in taus)
    with apply_threshold(model, taus, gated="product"):
        report = measure_density(model, batches, monitor=DensityMonitor(model, gated="product"))
    assert report.masked == pytest.approx([25.0, 25.0], abs=0.05)
