"""``save_inputs_every``: exact layer inputs kept in forward bound how far rounding compounds."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from tiny_models import text_batch, tiny_bert

from meft import MeftConfig, get_meft_model, reconstruction_errors
from peft_core import ConfigError, measure_activation_memory


def _step(base, config: MeftConfig, batch) -> tuple[dict[str, torch.Tensor], list[float] | None]:
    """Gradients of one training step, and the debug mode's per-layer errors when it is on."""
    torch.manual_seed(11)  # adapters draw their init from the global RNG
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # conversion's prediction and the debug mode's report
        model = get_meft_model(copy.deepcopy(base), config).train()
        torch.manual_seed(3)  # the same dropout masks for every run
        model(**batch).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    errors = reconstruction_errors(model)
    return grads, (next(iter(errors.values())) if errors else None)


def _worst_relative_difference(a, b) -> float:
    return max(((a[n] - b[n]).norm() / a[n].norm().clamp_min(1e-12)).item() for n in a)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_saved_inputs_bound_the_gradient_error_of_a_deep_meft3_stack(dropout):
    # MEFT3 with float32 streams amplifies rounding 100x per layer: over 6 layers the bottom
    # adapters' gradients are lost. Saving every k-th layer's inputs caps the compounding at
    # k - 1 inverses; saving every input leaves only the recompute's float32 rounding.
    base, batch = tiny_bert(num_layers=6, dropout=dropout), text_batch(batch=4, length=12)
    vanilla, _ = _step(base, MeftConfig("meft3", num_reversible_layers=0), batch)
    error = {
        every: _worst_relative_difference(
            vanilla, _step(base, MeftConfig("meft3", save_inputs_every=every), batch)[0]
        )
        for every in (None, 3, 2, 1)
    }
    # Measured (dropout off / on): 2.3 / 1.9 unsaved, 8.9e-4 / 4.1e-4 every 3rd, 9.5e-6 / 3.4e-6
    # every 2nd, 6.8e-6 / 8.5e-7 every one.
    assert error[None] > 1e-1
    assert error[None] > 100 * error[3] > 0
    assert error[2] < 5e-5
    assert error[1] < 2e-5


def test_saved_layers_reconstruct_exactly_and_the_others_as_before():
    base, batch = tiny_bert(num_layers=6), text_batch(batch=4, length=12)
    config = dict(variant="meft3", check_reconstruction=True)
    _, unsaved = _step(base, MeftConfig(**config), batch)
    _, saved = _step(base, MeftConfig(save_inputs_every=3, **config), batch)
    assert saved[0] == saved[3] == 0.0
    assert all(error > 0 for index, error in enumerate(unsaved))
    # Above the top saved layer nothing changes: the same inverses from the same outputs.
    assert saved[4:] == unsaved[4:]
    assert saved[1] < unsaved[1] / 100  # restarted from layer 3's exact inputs


def _activation_bytes(config: MeftConfig, num_layers: int = 8) -> int:
    batch = text_batch(batch=4, length=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float32 streams over 8 layers: predicted unstable
        model = get_meft_model(tiny_bert(num_layers=num_layers), config).train()
        return measure_activation_memory(lambda: model(**batch).loss, model)


def test_each_saved_layer_costs_one_stream_pair():
    # tiny_bert's hidden size is 32: a stream of batch 4 x 16 positions is 4*16*32 float32 values.
    stream = 4 * 16 * 32 * 4
    unsaved = _activation_bytes(MeftConfig())
    for every, saved_layers in ((8, [0]), (4, [0, 4]), (2, [0, 2, 4, 6]), (1, list(range(8)))):
        extra = _activation_bytes(MeftConfig(save_inputs_every=every)) - unsaved
        # Layer 0's two streams are one tensor, the stack's input; every other layer's are two.
        assert extra == stream * (1 + 2 * (len(saved_layers) - 1)), every
    assert _activation_bytes(MeftConfig(save_inputs_every=1)) < _activation_bytes(
        MeftConfig(num_reversible_layers=0)
    )


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "4"])
def test_save_inputs_every_must_be_a_positive_integer(value):
    with pytest.raises(ConfigError, match=r"save_inputs_every must be None or an integer >= 1"):
        MeftConfig(save_inputs_every=value)


def test_the_conversion_warning_names_a_safe_save_inputs_every():
    # 30 MEFT2 layers with float64 streams (the real SmolLM2's depth): 10x per layer from 1e-16
    # predicts 1e14. Saving every 10th layer's inputs keeps the prediction under 1e-6.
    config = MeftConfig("meft2", stream_dtype="float64")
    with pytest.warns(
        UserWarning, match=r"save_inputs_every=10 \(keeps the inputs of 3 layers"
    ) as caught:
        get_meft_model(tiny_bert(num_layers=30), config)
    assert "stream_dtype='float64'" not in str(caught[0].message)  # already float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_meft_model(
            tiny_bert(num_layers=30),
            MeftConfig("meft2", stream_dtype="float64", save_inputs_every=10),
        )
    # With float32 streams: float64 streams and every 10th layer, or float32 and every 2nd.
    with pytest.warns(UserWarning, match="amplifies float32 rounding") as caught:
        get_meft_model(tiny_bert(num_layers=30), MeftConfig("meft2"))
    message = str(caught[0].message)
    assert "stream_dtype='float64' with save_inputs_every=10 (keeps the inputs of 3" in message
    assert (
        "save_inputs_every=2 (keeps the inputs of 15 layers; below 1e-6 if each layer amplifies "
        "by 1/(λβ) only, which real bottom layers can exceed: measure it) with float32 streams"
        in message
    )
    # Layer 0 is always saved, so on a 3-layer MEFT3 stack every k >= 3 saves layer 0 alone and
    # the worst input goes through two inverses (100x each): 6e-4 predicted, no warning.
    for every in (3, 4, 100):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            get_meft_model(tiny_bert(num_layers=3), MeftConfig("meft3", save_inputs_every=every))
