"""sparsify / densify on tiny random models of every family: same outputs, same modules back.

ReLU activations give many exact zeros, so the sparse paths really skip neurons. Add a family:
one entry in FAMILIES.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from deft import DensityMonitor, find_targets
from deft.discovery import MLP_LAYOUTS
from deft.sparse import (
    RULES,
    SparseGatedMLP,
    SparseLinear,
    densify,
    sparse_modules,
    sparsify,
)
from deft.thresholding import apply_threshold, calibrate_threshold

transformers = pytest.importorskip("transformers")

IDS = torch.tensor([[5, 6, 7, 8, 9, 3], [10, 11, 12, 13, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
SMALL = dict(num_attention_heads=2, vocab_size=100)


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@dataclass
class Family:
    build: Callable[[], nn.Module]
    inputs: Callable[[int], dict]  # number of samples → keyword arguments
    replaced: type  # the sparse module type each MLP gets
    layers: int


def _text(samples: int) -> dict:
    return {"input_ids": IDS[:samples], "attention_mask": MASK[:samples]}


def _one_token(samples: int) -> dict:
    return {"input_ids": IDS[:samples, :1]}


def _seq2seq(samples: int) -> dict:
    return {**_text(samples), "decoder_input_ids": IDS[:samples, :3]}


def _image(samples: int) -> dict:
    return {"pixel_values": torch.randn(samples, 3, 16, 16, generator=torch.Generator().manual_seed(1))}  # fmt: skip


def _bert():
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, intermediate_size=64, hidden_act="relu", **SMALL
    )
    return transformers.BertModel(config)


def _opt():
    config = transformers.OPTConfig(
        hidden_size=32, ffn_dim=64, num_hidden_layers=2, word_embed_proj_dim=32, **SMALL
    )  # OPT's activation is ReLU
    return transformers.OPTModel(config)


def _llama(**extra):
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_key_value_heads=2,
        hidden_act="relu", **SMALL, **extra,
    )  # fmt: skip
    return transformers.LlamaModel(config)


def _vit():
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=16, patch_size=4, hidden_act="relu",
    )  # fmt: skip
    return transformers.ViTModel(config)


def _t5(**extra):
    def build():
        config = transformers.T5Config(
            d_model=32,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=1,
            num_heads=2,
            d_kv=16,
            vocab_size=100,
            **extra,
        )  # fmt: skip  (T5's activation is ReLU)
        return transformers.T5Model(config)

    return build


def _gpt2():
    config = transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=2, vocab_size=100, activation_function="relu"
    )
    return transformers.GPT2Model(config)


def _phi3():
    config = transformers.Phi3Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_key_value_heads=2,
        pad_token_id=0, hidden_act="relu", **SMALL,
    )  # fmt: skip
    return transformers.Phi3Model(config)


FAMILIES = {
    "bert": Family(_bert, _text, SparseLinear, 2),
    "opt": Family(_opt, _text, SparseLinear, 2),
    "llama": Family(_llama, _text, SparseGatedMLP, 2),
    "vit": Family(_vit, _image, SparseLinear, 2),
    "t5": Family(_t5(), _seq2seq, SparseLinear, 3),
    "flan-t5 gated": Family(_t5(feed_forward_proj="gated-relu"), _seq2seq, SparseGatedMLP, 3),
    "gpt2 (Conv1D)": Family(_gpt2, _text, SparseLinear, 2),
    "phi-3 (fused gate_up)": Family(_phi3, _text, SparseGatedMLP, 2),
}


@functools.cache
def _built(family: str) -> nn.Module:
    torch.manual_seed(0)
    return FAMILIES[family].build().eval()


def _build(family: str) -> nn.Module:
    return copy.deepcopy(_built(family))  # tests change the model in place


def _output(model: nn.Module, inputs: dict) -> torch.Tensor:
    out = model(**inputs)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def assert_close(actual, expected, atol=1e-5):
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=1e-5, atol=atol), (actual - expected).abs().max()


def _snapshot(model: nn.Module) -> dict:
    return {
        "modules": dict(model.named_modules()),
        "parameters": {name: p for name, p in model.named_parameters()},
        "values": {name: t.clone() for name, t in model.state_dict().items()},
    }


@pytest.mark.parametrize("strategy", ["gather", "rows"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_sparse_outputs_equal_dense_for_a_padded_batch(family, strategy):
    case = FAMILIES[family]
    model = _build(family)
    inputs = case.inputs(2)
    with torch.no_grad():
        dense = _output(model, inputs)
        sparsify(model, strategy=strategy)
        sparse = _output(model, inputs)
    converted = sparse_modules(model)
    assert len(converted) == case.layers
    assert all(type(module) is case.replaced for module in converted.values())
    assert_close(sparse, dense)


@pytest.mark.parametrize("family", ["bert", "opt", "llama", "t5", "flan-t5 gated"])
def test_sparse_outputs_equal_dense_for_one_token(family):
    model = _build(family)
    inputs = _one_token(1)
    if family.startswith(("t5", "flan")):
        inputs["decoder_input_ids"] = IDS[:1, :1]
    with torch.inference_mode():
        dense = _output(model, inputs)
        sparse = _output(sparsify(model, strategy="gather"), inputs)
    assert_close(sparse, dense)


def test_relu_activations_really_have_zeros_to_skip():
    # Otherwise the equalities above would hold trivially through the dense fallback.
    model = _build("llama")
    with torch.no_grad(), DensityMonitor(model) as monitor:
        model(**_text(2))
        fractions = [float((a == 0).float().mean()) for a in monitor.activations.values()]
    assert all(0.3 < fraction < 0.7 for fraction in fractions), fractions


def test_greedy_decoding_with_a_cache_is_unchanged():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_key_value_heads=2,
        hidden_act="relu", pad_token_id=0, **SMALL,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    prompt = IDS[:1, :4]
    options = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    dense = model.generate(prompt, **options)
    sparsify(model, strategy="gather")
    assert torch.equal(model.generate(prompt, **options), dense)


@pytest.mark.parametrize("family", ["bert", "llama", "vit", "flan-t5 gated"])
def test_threshold_equals_a_dense_model_thresholded_by_hooks(family):
    case = FAMILIES[family]
    model = _build(family)
    inputs = case.inputs(2)
    taus = calibrate_threshold(model, [inputs], target_density=0.2)
    assert all(tau > 0 for tau in taus.values())
    with torch.no_grad():
        plain = _output(model, inputs)
        with apply_threshold(model, taus):
            thresholded = _output(model, inputs)
        sparsify(model, threshold=taus, strategy="rows")
        sparse = _output(model, inputs)
    assert_close(sparse, thresholded)
    assert not torch.allclose(thresholded, plain, atol=1e-3)  # the threshold did change something


def test_one_threshold_for_every_layer():
    model = _build("opt")
    with torch.no_grad():
        with apply_threshold(model, 0.05):
            thresholded = _output(model, _text(2))
        sparsify(model, threshold=0.05)
        assert_close(_output(model, _text(2)), thresholded)
    assert {module.threshold for module in sparse_modules(model).values()} == {0.05}


@pytest.mark.parametrize(
    "family", ["bert", "llama", "t5", "gpt2 (Conv1D)", "phi-3 (fused gate_up)"]
)
def test_densify_restores_the_very_same_modules_and_values(family):
    model = _build(family)
    inputs = FAMILIES[family].inputs(2)
    before = _snapshot(model)
    with torch.no_grad():
        dense = _output(model, inputs)
        sparsify(model, threshold=0.01)
        assert model.state_dict().keys() == before["values"].keys()  # same names while sparse
        densify(model)
        after = _output(model, inputs)
    assert torch.equal(after, dense)
    modules = dict(model.named_modules())
    assert modules.keys() == before["modules"].keys()
    assert all(modules[name] is module for name, module in before["modules"].items())
    for name, parameter in model.named_parameters():
        assert parameter is before["parameters"][name]
        assert parameter.is_contiguous(), name
        assert torch.equal(parameter, before["values"][name]), name


def test_down_projection_weight_is_stored_transposed_without_a_copy():
    model = _build("llama")
    down = model.layers[0].mlp.down_proj
    parameters = sum(p.numel() for p in model.parameters())
    sparsify(model)
    mlp = model.layers[0].mlp
    assert mlp.down_proj is down
    assert down.weight.t().is_contiguous()  # one contiguous row per neuron
    assert sum(p.numel() for p in model.parameters()) == parameters
    densify(model)
    assert down.weight.is_contiguous()


def test_works_in_eval_under_no_grad_and_for_a_frozen_model():
    model = sparsify(_build("bert"))
    with torch.no_grad():
        reference = _output(model, _text(2))
    with torch.inference_mode():
        assert_close(_output(model, _text(2)), reference)
    model.requires_grad_(False)  # nothing needs a gradient: no context manager required
    assert_close(_output(model, _text(2)), reference)


def test_refuses_a_forward_that_needs_gradients_or_training_mode():
    model = sparsify(_build("llama"))
    with pytest.raises(RuntimeError, match=r"inference-only.*torch.no_grad"):
        _output(model, _text(2))
    model.train()
    with torch.no_grad(), pytest.raises(RuntimeError, match=r"inference-only.*model.eval\(\)"):
        _output(model, _text(2))
    model.eval()
    densify(model)
    _output(model, _text(2)).sum().backward()  # trainable again once densified


def test_density_monitor_still_sees_the_gate_activation_of_a_sparse_model():
    model = _build("llama")
    with torch.no_grad(), DensityMonitor(model) as monitor:
        model(**_text(2))
        dense = {name: a.clone() for name, a in monitor.activations.items()}
        sparsify(model, strategy="gather")
        model(**_text(2))
        sparse = monitor.activations
    assert sparse.keys() == dense.keys()
    for name in dense:
        assert torch.equal(sparse[name], dense[name])


@pytest.mark.parametrize("strategy", ["gather", "rows"])
@pytest.mark.parametrize("family", FAMILIES)
def test_pfeiffer_adapters_keep_working_in_the_sparse_model(family, strategy):
    from deft.adapters import (
        PfeifferAdapterConfig,
        get_pfeiffer_adapter_model,
        pfeiffer_adapters,
    )

    torch.manual_seed(1)
    model = get_pfeiffer_adapter_model(_build(family), PfeifferAdapterConfig(init="xavier"))
    inputs = FAMILIES[family].inputs(2)
    with torch.no_grad():
        dense = _output(model, inputs)
        without_adapters = _output(_built(family), inputs)
        assert (dense - without_adapters).abs().max() > 1e-3  # the adapters matter
        before = {name: t.clone() for name, t in model.state_dict().items()}
        sparsify(model, strategy=strategy)
        assert len(sparse_modules(model)) == FAMILIES[family].layers
        sparse = _output(model, inputs)
        state = model.state_dict()
    assert_close(sparse, dense)  # τ = 0: the dense output, adapters included
    assert list(state) == list(before)  # the adapter keys stay while sparse
    assert all(torch.equal(state[name], before[name]) for name in before)
    assert len(pfeiffer_adapters(model)) == FAMILIES[family].layers
    densify(model)
    with torch.no_grad():
        assert_close(_output(model, inputs), dense)


def _add_hook(kind: str):
    def add(module: nn.Module) -> None:
        if kind == "hook":
            module.register_forward_hook(lambda m, args, out: out * 2)
        elif kind == "pre-hook":
            module.register_forward_pre_hook(lambda m, args: None)
        else:
            module.extra = nn.Linear(2, 2)

    return add


@pytest.mark.parametrize(
    ("family", "path", "kind", "message"),
    [
        ("bert", "encoder.layer.0.output.dense", "hook", "forward hooks or pre-hooks"),
        ("bert", "encoder.layer.1.output.dense", "pre-hook", "forward hooks or pre-hooks"),
        ("bert", "encoder.layer.0.output.dense", "child", r"child modules \['extra'\]"),
        ("gpt2 (Conv1D)", "h.0.mlp.c_proj", "hook", "forward hooks or pre-hooks"),
        ("llama", "layers.0.mlp", "hook", "forward hooks or pre-hooks"),
        ("llama", "layers.0.mlp.gate_proj", "pre-hook", "forward hooks or pre-hooks"),
        ("llama", "layers.1.mlp.up_proj", "child", r"child modules \['extra'\]"),
        ("llama", "layers.0.mlp.down_proj", "hook", "forward hooks or pre-hooks"),
        ("flan-t5 gated", "encoder.block.0.layer.1.DenseReluDense.dropout", "pre-hook", "hooks"),
    ],
)
def test_hooks_or_unknown_children_on_what_the_sparse_module_skips_are_refused(
    family, path, kind, message
):
    model = _build(family)
    _add_hook(kind)(model.get_submodule(path))
    with pytest.raises(ValueError, match=rf"cannot sparsify {re.escape(path)} .*{message}"):
        sparsify(model)
    assert not sparse_modules(model)  # an error leaves the model as it was


def test_a_product_mode_monitor_on_the_down_projection_is_refused_not_dropped():
    model = _build("llama")
    monitor = DensityMonitor(model, gated="product")  # a pre-hook on every down_proj
    with pytest.raises(ValueError, match=r"layers.0.mlp.down_proj .*pre-hooks"):
        sparsify(model)
    monitor.remove()
    with torch.no_grad():
        sparsify(model)  # fine once the monitor is removed
    assert len(sparse_modules(model)) == 2


def test_converted_layers_keep_discovery_names_and_per_layer_thresholds():
    model = _build("t5")
    names = [target.name for target in find_targets(model)]
    taus = {name: 0.001 * (index + 1) for index, name in enumerate(names)}
    sparsify(model, threshold=taus)
    assert {name: module.threshold for name, module in sparse_modules(model).items()} == taus


def test_every_discovery_family_has_a_conversion_rule():
    assert {layout.family for layout in MLP_LAYOUTS} == set(RULES)


def test_timm_vit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, depth=2,
        embed_dim=32, num_heads=2, num_classes=3, act_layer=nn.ReLU,
    ).eval()  # fmt: skip
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        dense = model(images)
        sparsify(model, strategy="rows")
        assert isinstance(model.blocks[0].mlp.fc2, SparseLinear)
        assert_close(model(images), dense)


# -- wrappers and errors -------------------------------------------------------------------------


def _lora(model: nn.Module, modules: list[str]):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=modules, init_lora_weights=False)
    return peft.get_peft_model(model, config).eval()


def test_peft_model_with_lora_on_attention_is_converted_through_the_wrapper():
    wrapped = _lora(_build("llama"), ["q_proj", "v_proj"])
    with torch.no_grad():
        dense = _output(wrapped, _text(2))
        assert sparsify(wrapped, strategy="gather") is wrapped
        sparse = _output(wrapped, _text(2))
    assert len(sparse_modules(wrapped)) == 2
    assert_close(sparse, dense)
    densify(wrapped)
    assert not sparse_modules(wrapped)


def test_lora_on_the_mlp_must_be_merged_first():
    wrapped = _lora(_build("llama"), ["gate_proj", "down_proj"])
    with torch.no_grad():
        dense = _output(wrapped, _text(2))
    with pytest.raises(ValueError, match=r"peft adapter .*merge_and_unload\(\)"):
        sparsify(wrapped)
    assert not sparse_modules(wrapped)  # an error leaves the model as it was
    merged = wrapped.merge_and_unload()
    with torch.no_grad():
        assert_close(_output(sparsify(merged), _text(2)), dense)


def test_errors_are_clear():
    model = sparsify(_build("bert"))
    with pytest.raises(ValueError, match=r"already sparsified.*densify"):
        sparsify(model)
    densify(model)
    with pytest.raises(ValueError, match=r"missing .*intermediate_act_fn"):
        sparsify(model, threshold={"encoder.layer.0.intermediate.intermediate_act_fn": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        sparsify(model, threshold=-1.0)
    with pytest.raises(ValueError, match="strategy"):
        sparsify(model, strategy="csr")
    assert not sparse_modules(model)
    with pytest.raises(ValueError, match="found no MLP activation"):
        sparsify(nn.Sequential(nn.Linear(2, 2)))


def test_a_norm_between_activation_and_down_projection_is_refused():
    timm_layers = pytest.importorskip("timm.layers")
    model = nn.Sequential(timm_layers.Mlp(8, 16, norm_layer=nn.LayerNorm))
    with pytest.raises(ValueError, match=r"'norm' .*LayerNorm.* turns the zeros into non-zeros"):
        sparsify(model)
    plain = nn.Sequential(timm_layers.Mlp(8, 16, act_layer=nn.ReLU)).eval()
    x = torch.randn(3, 8)
    with torch.no_grad():
        dense = plain(x)
        assert_close(sparsify(plain, strategy="gather")(x), dense)


def test_timm_swiglu_is_gated():
    timm_layers = pytest.importorskip("timm.layers")
    model = nn.Sequential(timm_layers.SwiGLU(8, 16, act_layer=nn.ReLU)).eval()
    x = torch.randn(2, 3, 8)
    with torch.no_grad():
        dense = model(x)
        sparsify(model, strategy="rows")
        assert isinstance(model[0], SparseGatedMLP)
        assert_close(model(x), dense)


@pytest.mark.parametrize("gate_last", [True, False])  # GluMlp's default, and SwiGLUPacked's
def test_timm_glu_mlp_is_gated_on_the_half_its_act_sees(gate_last):
    timm_layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    model = nn.Sequential(timm_layers.GluMlp(8, 32, act_layer=nn.GELU, gate_last=gate_last)).eval()
    x = torch.randn(2, 5, 8)
    (target,) = find_targets(model)
    assert target.family == "timm GluMlp (fused fc1)"
    with DensityMonitor(model) as monitor, torch.no_grad():
        model(x)
        assert monitor.activations[target.name].shape == (2, 5, 16)  # the gate half only
    with torch.no_grad():
        dense = model(x)
        with apply_threshold(model, 0.3):
            thresholded = model(x)
        assert not torch.allclose(thresholded, dense, atol=1e-3)  # the threshold bites
        sparsify(model, 0.3, strategy="gather")
        assert isinstance(model[0], SparseGatedMLP)
        assert_close(model(x), thresholded)  # the same τ zeroes the same neurons
        densify(model)
        assert_close(sparsify(model, strategy="rows")(x), dense)


def test_dtype_conversion_and_deepcopy_of_a_sparse_model():
    model = _build("llama")
    inputs = _text(2)
    with torch.no_grad():
        dense = _output(copy.deepcopy(model).double(), inputs)
        sparsify(model, strategy="gather").double()
        down = model.layers[0].mlp.down_proj
        assert down.weight.dtype == torch.float64
        assert down.weight.t().is_contiguous()  # .double() kept the transposed layout
        assert torch.allclose(_output(model, inputs), dense, atol=1e-10)
        twin = densify(copy.deepcopy(model))
    restored = twin.layers[0].mlp
    assert type(restored).__name__ == "LlamaMLP"
    assert restored.down_proj.weight is not down.weight  # the copy's own parameters
    assert dict(twin.named_parameters()).keys() == dict(model.named_parameters()).keys()
