"""Pfeiffer adapters: position, starting point, trainable count, gradients, save/load, families."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

import peft_core
from deft import DensityMonitor
from deft.adapters import (
    ADAPTER_NAME,
    FFN_OUTPUT_PROJECTIONS,
    PfeifferAdapterConfig,
    ffn_output_projections,
    get_pfeiffer_adapter_model,
    pfeiffer_adapters,
    remove_pfeiffer_adapters,
)
from deft.discovery import MLP_LAYOUTS
from peft_core.config import ConfigError, read_config_dict
from peft_core.testing import TrainableRoundTripTests

transformers = pytest.importorskip("transformers")


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


IDS = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
HIDDEN, LAYERS = 64, 2


def _bert(seed: int = 0, **extra):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=128,
        vocab_size=100, num_labels=3, **extra,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config).eval()


def _hidden(model, **batch):
    return model(**batch, output_hidden_states=True).hidden_states[-1]


def test_every_discovery_layout_has_an_ffn_output_projection():
    assert {row.family for row in MLP_LAYOUTS} == set(FFN_OUTPUT_PROJECTIONS)


def test_the_adapter_sits_on_the_ffn_output_before_the_residual_add_and_layernorm():
    model = get_pfeiffer_adapter_model(_bert(), PfeifferAdapterConfig())
    output = model.bert.encoder.layer[0].output  # BertOutput: dense → dropout → LN(· + input)
    intermediate = torch.randn(2, 6, 128)
    residual = torch.randn(2, 6, HIDDEN)
    adapter = output.dense.pfeiffer_adapter
    h = torch.nn.functional.linear(intermediate, output.dense.weight, output.dense.bias)
    adapted = h + adapter.up(torch.relu(adapter.down(h)))  # Pfeiffer: ReLU bottleneck, own skip
    expected = output.LayerNorm(adapted + residual)
    torch.testing.assert_close(output(intermediate, residual), expected)
    assert adapter.bottleneck == HIDDEN // 16
    assert isinstance(adapter.act, torch.nn.ReLU)


def test_zero_up_init_starts_exactly_at_the_base_model_and_the_default_init_near_it():
    base = _bert()
    reference = _hidden(base, input_ids=IDS, attention_mask=MASK)
    exact = get_pfeiffer_adapter_model(copy.deepcopy(base), PfeifferAdapterConfig(init="zero_up"))
    assert torch.equal(_hidden(exact, input_ids=IDS, attention_mask=MASK), reference)
    near = get_pfeiffer_adapter_model(copy.deepcopy(base))  # N(0, 0.02²) up and down weights
    moved = _hidden(near, input_ids=IDS, attention_mask=MASK)
    relative = ((moved - reference).norm() / reference.norm()).item()
    assert 0.0 < relative < 1e-3  # measured: 2e-5 to 4e-5 with hidden 32 (see the module doc)


def test_trainable_parameters_are_the_adapters_and_the_head_counted_by_hand():
    model = get_pfeiffer_adapter_model(_bert())
    bottleneck = HIDDEN // 16
    per_layer = (HIDDEN * bottleneck + bottleneck) + (bottleneck * HIDDEN + HIDDEN)
    head = HIDDEN * 3 + 3
    trainable, total = peft_core.count_parameters(model)
    assert trainable == LAYERS * per_layer + head == 2 * 580 + 195
    assert total == sum(p.numel() for p in _bert().parameters()) + LAYERS * per_layer
    names = peft_core.trainable_parameter_names(model)
    assert names == [
        *(f"bert.encoder.layer.{i}.output.dense.{ADAPTER_NAME}.{part}.{kind}"
          for i in range(LAYERS) for part in ("down", "up") for kind in ("weight", "bias")),
        "classifier.weight", "classifier.bias",
    ]  # fmt: skip


def test_gradient_flows_to_adapters_and_head_only():
    model = get_pfeiffer_adapter_model(_bert(hidden_act="relu")).train()
    monitor = DensityMonitor(model)
    out = model(input_ids=IDS, attention_mask=MASK, labels=torch.tensor([0, 2]))
    (out.loss + monitor.loss(MASK)).backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, name
            assert parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name
    # the density loss alone: layer 0's FFN input depends on no adapter (spec §5), layer 1's does
    model.zero_grad()
    model(input_ids=IDS, attention_mask=MASK)
    activations = monitor.activations
    assert not activations["bert.encoder.layer.0.intermediate.intermediate_act_fn"].requires_grad
    assert activations["bert.encoder.layer.1.intermediate.intermediate_act_fn"].requires_grad
    monitor.loss(MASK).backward()
    layer0 = model.bert.encoder.layer[0].output.dense.pfeiffer_adapter.up.weight
    assert layer0.grad is not None
    assert layer0.grad.abs().sum() > 0
    assert model.bert.encoder.layer[1].output.dense.pfeiffer_adapter.up.weight.grad is None


def test_save_trainable_and_load_round_trip_through_the_registry(tmp_path):
    config = PfeifferAdapterConfig(reduction_factor=8, init="xavier")
    model = get_pfeiffer_adapter_model(_bert(), config)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter))  # "trained"
    expected = model(input_ids=IDS, attention_mask=MASK).logits
    peft_core.save_trainable(model, tmp_path / "run", config)
    record = read_config_dict(tmp_path / "run" / "adapter_config.json")
    assert record["method"] == "pfeiffer_adapter"
    # save_trainable stamps its own keys next to the config's; from_dict ignores them
    saved = PfeifferAdapterConfig.from_dict(record)
    assert saved == config

    fresh = get_pfeiffer_adapter_model(_bert(), saved)
    result = peft_core.load_trainable(fresh, tmp_path / "run")
    assert result.missing_keys == []
    assert result.unexpected_keys == []
    torch.testing.assert_close(fresh(input_ids=IDS, attention_mask=MASK).logits, expected)

    rebuilt = peft_core.load(_bert(), tmp_path / "run")  # method looked up by name
    torch.testing.assert_close(rebuilt(input_ids=IDS, attention_mask=MASK).logits, expected)
    with pytest.raises(peft_core.CheckpointError, match="shape mismatch"):
        peft_core.load_trainable(get_pfeiffer_adapter_model(_bert()), tmp_path / "run")


class TestPfeifferRoundTrip(TrainableRoundTripTests):
    """peft-core's round trip: save → load, only trained tensors saved, seeded construction,
    ``peft_core.load`` rebuild, and a failed load undone."""

    method_config = PfeifferAdapterConfig(reduction_factor=8)

    def make_model(self):
        return get_pfeiffer_adapter_model(_bert(self.seed), self.method_config)

    def base_model(self):
        return _bert(self.seed)

    def make_inputs(self):
        return {"input_ids": IDS, "attention_mask": MASK}


def test_config_validation_and_json():
    config = PfeifferAdapterConfig()
    assert (config.reduction_factor, config.activation, config.init) == (16, "relu", "normal")
    assert PfeifferAdapterConfig.from_dict(config.to_dict()) == config
    assert config.bottleneck(8) == 1
    for bad, match in [
        ({"reduction_factor": 0}, "reduction_factor"),
        ({"activation": "swishy"}, "swishy"),
        ({"init": "ones"}, "init must be one of"),
        ({"dropout": 1.0}, "dropout"),
        ({"trainable_head": "classifier.*"}, "trainable_head"),
    ]:
        with pytest.raises(ConfigError, match=match):
            PfeifferAdapterConfig(**bad)
    with pytest.raises(ConfigError, match="unknown key"):
        PfeifferAdapterConfig.from_dict({"reduction": 16})


def test_twice_is_an_error_and_remove_restores_the_base_forward():
    base = _bert()
    reference = base(input_ids=IDS).logits
    model = get_pfeiffer_adapter_model(copy.deepcopy(base))
    with pytest.raises(ValueError, match="already has Pfeiffer adapters"):
        get_pfeiffer_adapter_model(model)
    clone = pickle.loads(pickle.dumps(model))  # the hook is a module-level function
    torch.testing.assert_close(clone(input_ids=IDS).logits, model(input_ids=IDS).logits)
    remove_pfeiffer_adapters(model)
    assert pfeiffer_adapters(model) == []
    assert not any(m._forward_hooks for m in model.modules())
    torch.testing.assert_close(model(input_ids=IDS).logits, reference)


def _vit_ffn_output(model) -> str:
    # recent transformers name ViT's layers vit.layers.N.mlp.fc2; older ones
    # vit.encoder.layer.N.output.dense (the min_deps session runs those)
    if hasattr(model.vit, "layers"):
        return "vit.layers.{}.mlp.fc2"
    return "vit.encoder.layer.{}.output.dense"


def _family_models():
    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    return {
        "roberta": (transformers.RobertaForSequenceClassification(
            transformers.RobertaConfig(**small, intermediate_size=64, vocab_size=100)),
            "roberta.encoder.layer.{}.output.dense"),
        "vit": (transformers.ViTForImageClassification(
            transformers.ViTConfig(**small, intermediate_size=64, image_size=8, patch_size=4)),
            _vit_ffn_output),
        "opt": (transformers.OPTForSequenceClassification(
            transformers.OPTConfig(**small, ffn_dim=64, vocab_size=100, word_embed_proj_dim=32)),
            "model.decoder.layers.{}.fc2"),
        "llama": (transformers.LlamaForSequenceClassification(
            transformers.LlamaConfig(**small, intermediate_size=64, num_key_value_heads=2,
                                     vocab_size=100, pad_token_id=0)),
            "model.layers.{}.mlp.down_proj"),
    }  # fmt: skip


@pytest.mark.parametrize("family", ["roberta", "vit", "opt", "llama"])
def test_other_families_get_adapters_on_their_ffn_output_and_train(family):
    model, pattern = _family_models()[family]
    pattern = pattern(model) if callable(pattern) else pattern
    model.eval()
    inputs = (
        {"pixel_values": torch.randn(2, 3, 8, 8)}
        if family == "vit"
        else {"input_ids": IDS, "attention_mask": MASK}
    )
    reference = model(**inputs).logits
    config = PfeifferAdapterConfig(init="zero_up")
    assert [name for name, _ in ffn_output_projections(model)] == [
        pattern.format(i) for i in range(2)
    ]
    model = get_pfeiffer_adapter_model(model, config)
    torch.testing.assert_close(model(**inputs).logits, reference, rtol=0, atol=0)
    head = "classifier" if family in ("roberta", "vit") else "score"
    trainable = peft_core.trainable_parameter_names(model)
    assert {name.split(".")[0] for name in trainable} == {pattern.split(".")[0], head}
    assert sum(ADAPTER_NAME in name for name in trainable) == 2 * 4
    model.train()
    model(**inputs).logits.sum().backward()
    up = model.get_submodule(pattern.format(1)).pfeiffer_adapter.up.weight
    assert up.grad is not None
    assert up.grad.abs().sum() > 0
