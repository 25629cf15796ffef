"""Discovery per architecture family: the right modules, the right count, the very tensors returned.

Tiny random-init models built from configs (no Hub access). Add a family: one tuple in FAMILIES.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from deft import DensityMonitor, mlp_input_projections
from deft.discovery import MLP_LAYOUTS

transformers = pytest.importorskip("transformers")

IDS = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
SMALL = dict(num_attention_heads=2, vocab_size=100)


@dataclass
class Family:
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[], dict]
    counts: tuple[dict[str, int], ...]  # layers per group (alternatives: names differ by version)
    name: str  # regex every hooked module name must match (names differ across versions)


def _text(**extra) -> Callable[[], dict]:
    return lambda: {"input_ids": IDS, "attention_mask": MASK, **extra}


def _bert(config_class):
    def build():
        return transformers.AutoModel.from_config(
            config_class(hidden_size=32, num_hidden_layers=2, intermediate_size=64, **SMALL)
        )

    return build


def _t5(**extra):
    def build():
        config = transformers.T5Config(
            d_model=32, d_ff=64, num_layers=2, num_decoder_layers=3, num_heads=2, d_kv=16,
            vocab_size=100, **extra,
        )  # fmt: skip
        return transformers.T5Model(config)

    return build


def _opt():
    config = transformers.OPTConfig(
        hidden_size=32, ffn_dim=64, num_hidden_layers=2, word_embed_proj_dim=32, **SMALL
    )
    return transformers.OPTModel(config)


def _llama():
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_key_value_heads=2, **SMALL
    )
    return transformers.LlamaModel(config)


def _hf_vit():
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8,
    )  # fmt: skip
    return transformers.ViTModel(config)


def _timm_vit():
    timm = pytest.importorskip("timm")
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
        embed_dim=32, num_heads=2, num_classes=3,
    )  # fmt: skip


def _auto(config_name: str, **config):
    def build():
        return transformers.AutoModel.from_config(getattr(transformers, config_name)(**config))

    return build


def _timm_swiglu():
    timm_layers = pytest.importorskip("timm.layers")
    return torch.nn.Sequential(timm_layers.SwiGLU(8, 16), timm_layers.SwiGLU(8, 16))


def _timm_glu():
    timm_layers = pytest.importorskip("timm.layers")
    return torch.nn.Sequential(timm_layers.GluMlp(8, 16), timm_layers.SwiGLUPacked(8, 16))


def _image():
    return {"pixel_values": torch.randn(2, 3, 32, 32)}


def _decoder_ids():
    return _text(decoder_input_ids=IDS[:, :4])()


BERT_NAME = r"encoder\.layer\.\d\.intermediate\.intermediate_act_fn"
FAMILIES = {
    "bert": Family(_bert(transformers.BertConfig), _text(), ({"encoder": 2},), BERT_NAME),
    "roberta": Family(_bert(transformers.RobertaConfig), _text(), ({"encoder": 2},), BERT_NAME),
    "t5": Family(
        _t5(),
        _decoder_ids,
        ({"encoder": 2, "decoder": 3},),
        r"(en|de)coder\.block\.\d\.layer\.[12]\.DenseReluDense\.act",
    ),
    "flan-t5 gated": Family(
        _t5(feed_forward_proj="gated-gelu"),
        _decoder_ids,
        ({"encoder": 2, "decoder": 3},),
        r"(en|de)coder\.block\.\d\.layer\.[12]\.DenseReluDense\.act",
    ),
    "opt": Family(_opt, _text(), ({"decoder": 2},), r"decoder\.layers\.\d\.activation_fn"),
    "llama": Family(_llama, _text(), ({"model": 2},), r"layers\.\d\.mlp\.act_fn"),
    "hf vit": Family(
        _hf_vit,
        _image,
        ({"model": 2}, {"encoder": 2}),
        rf"(layers\.\d\.mlp\.activation_fn|{BERT_NAME})",  # transformers 5 | 4
    ),
    "timm vit": Family(
        _timm_vit, lambda: (torch.randn(2, 3, 32, 32),), ({"model": 2},), r"blocks\.\d\.mlp\.act"
    ),
    # the other rows of the discovery table
    "gpt2": Family(
        _auto("GPT2Config", n_embd=32, n_layer=2, n_head=2, vocab_size=100),
        _text(), ({"model": 2},), r"h\.\d\.mlp\.act",
    ),
    "gpt-neox": Family(
        _auto("GPTNeoXConfig", hidden_size=32, num_hidden_layers=2, intermediate_size=64, **SMALL),
        _text(), ({"model": 2},), r"layers\.\d\.mlp\.act",
    ),
    "gpt-j": Family(
        _auto("GPTJConfig", n_embd=32, n_layer=2, n_head=2, rotary_dim=8, vocab_size=100),
        _text(), ({"model": 2},), r"h\.\d\.mlp\.act",
    ),
    "distilbert": Family(
        _auto("DistilBertConfig", dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=100),
        _text(), ({"model": 2},), r"transformer\.layer\.\d\.ffn\.activation",
    ),
    "phi-3": Family(
        _auto("Phi3Config", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_key_value_heads=2, pad_token_id=0, **SMALL),
        _text(), ({"model": 2},), r"layers\.\d\.mlp\.activation_fn",
    ),
    "timm swiglu": Family(
        _timm_swiglu, lambda: (torch.randn(2, 3, 8),), ({"model": 2},), r"\d\.act"
    ),
    "timm glu": Family(_timm_glu, lambda: (torch.randn(2, 3, 8),), ({"model": 2},), r"\d\.act"),
}  # fmt: skip


def _run(model, inputs):
    return model(*inputs) if isinstance(inputs, tuple) else model(**inputs)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_finds_every_mlp_activation_and_captures_the_returned_tensor(family):
    case = FAMILIES[family]
    torch.manual_seed(0)
    model = case.build()
    monitor = DensityMonitor(model)
    assert {group: len(names) for group, names in monitor.groups.items()} in case.counts
    for name in monitor.layer_names:
        assert re.fullmatch(case.name, name), name
    returned = {}
    probes = [
        target.module.register_forward_hook(
            lambda m, i, o, name=target.name: returned.setdefault(name, o)
        )
        for target in monitor.targets
    ]
    inputs = case.inputs()
    _run(model, inputs)
    assert list(monitor.activations) == monitor.layer_names
    for name, tensor in monitor.activations.items():
        assert tensor is returned[name]  # a reference, never a copy
    mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
    loss = monitor.loss(mask)
    assert loss.requires_grad
    assert 0.0 < float(loss.detach()) <= len(monitor.groups) + 1e-6
    for probe in probes:
        probe.remove()
    monitor.remove()
    assert not model._forward_hooks
    assert not model._forward_pre_hooks
    assert all(not target.module._forward_hooks for target in monitor.targets)


GATED = {
    "llama": "down_proj",
    "phi-3": "down_proj",
    "flan-t5 gated": "dropout",
    "timm swiglu": "drop1",
}


@pytest.mark.parametrize("family", list(GATED))
def test_product_mode_captures_the_input_the_down_projection_side_reads(family):
    case = FAMILIES[family]
    torch.manual_seed(0)
    model = case.build().eval()
    monitor = DensityMonitor(model, gated="product")
    assert all(name.endswith(f".{GATED[family]}:input") for name in monitor.layer_names)
    received = {}
    for target in monitor.targets:
        target.module.register_forward_pre_hook(
            lambda m, args, name=target.name: received.setdefault(name, args[0])
        )
    _run(model, case.inputs())
    assert monitor.activations.keys() == received.keys()
    for name, tensor in monitor.activations.items():
        assert tensor is received[name]


def _activation_of(container: torch.nn.Module, family: str):
    layout = next(row for row in MLP_LAYOUTS if row.family == family)
    return getattr(container, layout.activation)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_activation_is_the_activation_function_of_the_named_projection(family):
    case = FAMILIES[family]
    torch.manual_seed(0)
    model = case.build().eval()
    monitor = DensityMonitor(model)
    names = mlp_input_projections(model)
    assert len(names) == len(monitor.layer_names)
    outputs = {}
    for name in names:
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: outputs.setdefault(name, o)
        )
    _run(model, case.inputs())
    for name, target in zip(names, monitor.targets, strict=True):
        container = model.get_submodule(name.rpartition(".")[0])
        pre_activation = outputs[name]
        if family == "phi-3":  # fused: the gate is the first half of gate_up_proj's output
            pre_activation = pre_activation.chunk(2, dim=-1)[0]
        if family == "timm glu":  # fused too: the gate is the half gate_last names
            pre_activation = pre_activation.chunk(2, dim=-1)[int(container.gate_last)]
        expected = _activation_of(container, target.family)(pre_activation)
        torch.testing.assert_close(monitor.activations[target.name], expected)
    monitor.remove()
