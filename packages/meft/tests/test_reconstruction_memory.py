"""Reconstruction error per layer, and activation memory that does not grow with depth."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from tiny_models import FAMILIES, text_batch, tiny_bert

from meft import MeftConfig, get_meft_model, reconstruction_errors
from peft_core import measure_activation_memory


def _errors(config: MeftConfig, num_layers: int = 2, autocast: bool = False) -> list[float]:
    model = get_meft_model(tiny_bert(num_layers=num_layers), config).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bf16 case warns by design
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**text_batch()).loss
        loss.backward()
    (errors,) = reconstruction_errors(model).values()
    return errors


@pytest.mark.parametrize("variant", ["meft1", "meft2"])
def test_reconstruction_error_below_1e_5_in_float32(variant):
    errors = _errors(MeftConfig(variant=variant, check_reconstruction=True))
    assert len(errors) == 2
    assert max(errors) < 1e-5


@pytest.mark.parametrize("variant", ["meft1", "meft2"])
def test_float64_streams_reconstruct_deeper_stacks(variant):
    errors = _errors(
        MeftConfig(variant=variant, stream_dtype="float64", check_reconstruction=True), num_layers=4
    )
    assert max(errors) < 1e-5


def test_float64_streams_rescue_meft3():
    # F and G still compute in float32: a rounding flip on a reconstructed input is amplified
    # 100x per layer below it, so the bound is looser than MEFT1/2's, but far from float32's.
    wide = _errors(
        MeftConfig(variant="meft3", stream_dtype="float64", check_reconstruction=True), num_layers=4
    )
    narrow = _errors(MeftConfig(variant="meft3", check_reconstruction=True), num_layers=4)
    assert max(wide) < 1e-2
    assert narrow[0] > 100 * wide[0]


def test_meft3_in_float32_loses_two_digits_per_layer():
    # Documented behaviour, measured: 1/(λβ) = 100 amplification per layer going down.
    errors = _errors(MeftConfig(variant="meft3", check_reconstruction=True), num_layers=3)
    assert errors[0] > 10 * errors[1] > 100 * errors[2]


def _bf16_errors(config: MeftConfig, num_layers: int = 4) -> list[float]:
    model = get_meft_model(tiny_bert(num_layers=num_layers), config).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**text_batch(batch=4, length=16)).loss
    loss.backward()
    (errors,) = reconstruction_errors(model).values()
    return errors


def test_bf16_autocast_is_replayed_so_reconstruction_stays_near_float32():
    # Forward ran F and G under bf16 autocast; backward re-enters the same autocast state, so the
    # recomputed outputs match bit for bit and only the float32 coupling rounding remains.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bf16 = _bf16_errors(MeftConfig(check_reconstruction=True))
        fp32 = _errors(MeftConfig(check_reconstruction=True), num_layers=4)
    assert len(bf16) == 4
    assert max(bf16) < 1e-2
    assert max(bf16) < 100 * max(fp32)


def test_recompute_outside_autocast_would_be_caught(monkeypatch):
    import contextlib

    from meft import reversible

    # The reference's bug: recomputing in float32 what forward computed in bf16.
    monkeypatch.setattr(reversible.AutocastState, "__call__", lambda self: contextlib.nullcontext())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        broken = _bf16_errors(MeftConfig(check_reconstruction=True))
    assert max(broken) > 1e-2


def test_errors_past_the_tolerance_warn():
    config = MeftConfig(variant="meft3", check_reconstruction=True, reconstruction_tolerance=1e-3)
    with pytest.warns(UserWarning, match="reconstructed with relative error"):
        _bf16_errors(config)


def test_the_debug_mode_is_off_by_default():
    model = get_meft_model(tiny_bert(), MeftConfig()).train()
    model(**text_batch()).loss.backward()
    assert reconstruction_errors(model) == {"bert.encoder.layer": None}


def test_the_last_backwards_errors_are_kept_until_the_next_backward():
    model = get_meft_model(tiny_bert(), MeftConfig(check_reconstruction=True)).train()
    batch = text_batch()
    model(**batch).loss.backward()
    (errors,) = reconstruction_errors(model).values()
    assert errors is not None
    assert len(errors) == 2
    with torch.no_grad():  # e.g. an evaluation step
        model.eval()(**batch)
    model.train()(**batch)  # a forward whose backward has not run yet
    assert reconstruction_errors(model) == {"bert.encoder.layer": errors}
    torch.manual_seed(5)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter))
    model(**batch).loss.backward()
    (replaced,) = reconstruction_errors(model).values()
    assert len(replaced) == 2
    assert replaced != errors


def _activation_bytes(num_layers: int, num_reversible: int | None, dropout: float = 0.0) -> int:
    model = get_meft_model(
        tiny_bert(num_layers=num_layers, dropout=dropout),
        MeftConfig(num_reversible_layers=num_reversible),
    )
    model.train()
    batch = text_batch(batch=4, length=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return measure_activation_memory(lambda: model(**batch).loss, model)


def test_activation_memory_is_independent_of_depth():
    shallow, deep = _activation_bytes(2, None), _activation_bytes(8, None)
    vanilla_shallow, vanilla_deep = _activation_bytes(2, 0), _activation_bytes(8, 0)
    assert abs(deep - shallow) / shallow < 0.10
    assert vanilla_deep / vanilla_shallow > 3.0  # the per-layer activations dominate vanilla
    assert deep < vanilla_deep / 3


def test_with_dropout_only_the_rng_states_grow_with_depth():
    # Dropout replay keeps one CPU generator state (5,056 bytes) per sub-function that drew
    # random numbers: 2 per layer. Everything else stays flat.
    state_bytes = torch.get_rng_state().numel()
    shallow, deep = _activation_bytes(2, None, dropout=0.1), _activation_bytes(8, None, dropout=0.1)
    assert deep - shallow == 6 * 2 * state_bytes


def test_unstable_configuration_warns_at_conversion():
    with pytest.warns(UserWarning, match="amplifies float32 rounding"):
        get_meft_model(tiny_bert(num_layers=6), MeftConfig(variant="meft3"))


def _bottom_reconstruction_error(dtype: torch.dtype, stream_dtype: str) -> float:
    """MEFT3 on a 2-layer BERT in ``dtype``: the relative error of layer 0's reconstructed input
    after one training step (the README quotes these three measurements)."""
    config = MeftConfig("meft3", stream_dtype=stream_dtype, check_reconstruction=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # conversion's prediction and check_reconstruction's report
        model = get_meft_model(tiny_bert(num_layers=2).to(dtype), config)
        torch.manual_seed(1)
        batch = {"input_ids": torch.randint(5, 100, (4, 16)), "labels": torch.tensor([0, 1, 0, 1])}
        model.train()(**batch).loss.backward()
    return reconstruction_errors(model)["bert.encoder.layer"][0]


def test_bf16_layers_with_float32_streams_warn_at_conversion_and_do_reconstruct_badly():
    # In bfloat16 the recompute's rounding is what grows: the bottom input comes back far off
    # (measured 1.22), against 2.8e-4 for float32 layers and 5e-15 for float64 streams.
    assert _bottom_reconstruction_error(torch.bfloat16, "float32") > 0.5
    assert _bottom_reconstruction_error(torch.float32, "float32") < 1e-3
    assert _bottom_reconstruction_error(torch.bfloat16, "float64") < 1e-12
    with pytest.warns(UserWarning, match="amplifies the bfloat16 layers' rounding"):
        get_meft_model(tiny_bert(num_layers=2).to(torch.bfloat16), MeftConfig("meft3"))
    for quiet in (  # float32 layers, or float64 streams: converted without a warning
        (tiny_bert(num_layers=2), MeftConfig("meft3")),
        (tiny_bert(num_layers=2).to(torch.bfloat16), MeftConfig("meft3", stream_dtype="float64")),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            get_meft_model(*quiet)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("variant", ["meft1", "meft2", "meft3"])
@pytest.mark.parametrize("init", ["normal", "zero_up"])
def test_starting_point_is_approximately_preserved(family, variant, init):
    """Outputs of the converted model at init vs the original: measured, and bounded.

    The PLM-carrying stream at init is h_n plus a 0.1-scaled stale stream, and the final output is
    the mean of two streams, so the hidden states move; the bound is on the final hidden state.
    """
    build, make_batch, hidden_states = FAMILIES[family]
    original = build().eval()
    batch = {k: v for k, v in make_batch().items() if k != "labels"}
    with torch.no_grad():
        reference = hidden_states(original, batch)
        torch.manual_seed(0)
        converted = get_meft_model(
            copy.deepcopy(original), MeftConfig(variant=variant, adapter_init=init)
        ).eval()
        hidden = hidden_states(converted, batch)
    relative = ((hidden - reference).norm() / reference.norm()).item()
    assert relative < STARTING_POINT_BOUND.get(family, STARTING_POINT_BOUND["*"])[variant]


# Relative deviation of the final hidden state at init, measured on the tiny random models
# (2 layers; MEFT1 / MEFT2 / MEFT3 with "normal" init; "zero_up" is never higher):
#   BERT, RoBERTa, BART (post-LN)    0.100 / 0.100 / 0.110   (the 0.1-scaled stale stream)
#   HF ViT, timm ViT (pre-LN, final LN)  0.050 / 0.050 / 0.052, 0.078 / 0.078 / 0.084
#   OPT post-LN (no final LN; the 0.02-scale embedding is the stale stream)  0.009 / 0.009 / 0.100
#   pre-LN decoders: OPT 0.269 / 0.269 / 0.266; Llama, Mistral 0.283 / 0.283 / 0.185 (zero_up
#   0.228 / 0.228 / 0.109); Qwen2 0.312 / 0.312 / 0.189. A pre-LN block returns its whole residual
#   stream, so the stale stream's share is carried forward layer after layer instead of being
#   normalised away, and the final output mixes the streams of the last two layers. (Measured once
#   on the real SmolLM2-135M, 30 layers: 0.78 / 0.78 / 1.20, top-1 next-token agreement with the
#   original 29% / 29% / 0%: on deep pre-LN decoders the start is not preserved.)
_PRE_LN_DECODER = {"meft1": 0.6, "meft2": 0.6, "meft3": 0.35}
STARTING_POINT_BOUND = {
    "*": {"meft1": 0.6, "meft2": 0.6, "meft3": 0.2},
    "opt": _PRE_LN_DECODER,
    "llama": _PRE_LN_DECODER,
    "mistral-cls": _PRE_LN_DECODER,
    "qwen2": _PRE_LN_DECODER,
}
