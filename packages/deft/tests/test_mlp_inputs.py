"""MLP input projections as LoRA targets (``apply_method(..., mlp_inputs=True)``).

That the named projection is the one every family's activation is computed from is tested per
family in ``test_monitor_families``.
"""

from __future__ import annotations

import pytest
import torch

from deft import DensityMonitor, mlp_input_projections
from deft.discovery import MLP_LAYOUTS, unwrap
from deft.methods import apply_method, method_config
from deft.mlp_inputs import MLP_INPUT_PROJECTIONS

transformers = pytest.importorskip("transformers")


def test_every_discovery_layout_has_an_input_projection():
    assert {row.family for row in MLP_LAYOUTS} == set(MLP_INPUT_PROJECTIONS)


def _bert_classifier():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=100,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def test_names_are_relative_to_the_unwrapped_model_also_through_peft():
    pytest.importorskip("peft")
    model = apply_method(_bert_classifier(), "lora")
    inner, prefix = unwrap(model)
    assert prefix == "base_model.model."
    names = mlp_input_projections(model)
    assert names == [f"bert.encoder.layer.{i}.intermediate.dense" for i in range(2)]
    assert all(isinstance(inner.get_submodule(name), torch.nn.Linear) for name in names)


def test_lora_with_mlp_inputs_adapts_q_v_and_every_mlp_input_and_trains_their_biases():
    peft = pytest.importorskip("peft")
    model = apply_method(_bert_classifier(), "lora", mlp_inputs=True, bias="lora_only")
    config = model.peft_config["default"]
    assert set(config.target_modules) == {
        "query", "value", "bert.encoder.layer.0.intermediate.dense",
        "bert.encoder.layer.1.intermediate.dense",
    }  # fmt: skip
    adapted = {n for n, m in model.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)}
    assert sum(name.endswith("intermediate.dense") for name in adapted) == 2
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any(name.endswith("intermediate.dense.base_layer.bias") for name in trainable)
    assert not any(name.endswith("output.dense.bias") for name in trainable)


def test_lora_with_mlp_inputs_starts_exactly_at_the_base_model():
    pytest.importorskip("peft")
    base = _bert_classifier().eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    reference = base(input_ids=ids).logits
    model = apply_method(base, "lora", mlp_inputs=True).eval()
    torch.testing.assert_close(model(input_ids=ids).logits, reference)  # LoRA B starts at 0


def test_mlp_inputs_errors_name_the_argument():
    pytest.importorskip("peft")
    with pytest.raises(ValueError, match=r"mlp_inputs=True .* 'lora' or 'qlora', got 'prompt'"):
        method_config("prompt", _bert_classifier(), mlp_inputs=True)
    with pytest.raises(ValueError, match="target_modules is a single string"):
        method_config("lora", _bert_classifier(), mlp_inputs=True, target_modules="query")
    with pytest.raises(TypeError, match="mlp_inputs must be True or False"):
        method_config("lora", _bert_classifier(), mlp_inputs="yes")


def test_an_mlp_input_lora_step_with_the_density_loss_moves_the_pre_activation():
    """The density gradient reaches the adapted W1 directly (B gets a non-zero gradient)."""
    pytest.importorskip("peft")
    model = apply_method(_bert_classifier(), "lora", mlp_inputs=True, target_modules=["query"])
    monitor = DensityMonitor(model)
    model(input_ids=torch.tensor([[5, 6, 7, 8, 9]]))
    monitor.loss().backward()
    grads = {
        name: p.grad for name, p in model.named_parameters() if "intermediate.dense.lora_B" in name
    }
    assert len(grads) == 2
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
    monitor.remove()
