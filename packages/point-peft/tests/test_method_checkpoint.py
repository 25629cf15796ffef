"""Saving and loading a Point-PEFT model through peft-core, in this process and in a fresh one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import peft_core
from peft_core.serialization import CONFIG_NAME, WEIGHTS_NAME
from peft_core.testing import TrainableRoundTripTests
from point_peft.method import get_point_peft_model

sys.path.insert(0, str(Path(__file__).parent))
from method_helpers import (
    clouds,
    logits_after_fresh_process_load,
    tiny_backbone,
    tiny_method_config,
    tiny_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class TestPointPeftRoundTrip(TrainableRoundTripTests):
    method_config = tiny_method_config(memory_bank_size=12)

    def make_model(self):
        return tiny_model(self.seed, config=self.method_config)

    def make_inputs(self):
        return {"points": clouds(3, seed=21)}

    def base_model(self):
        return tiny_backbone(self.seed)


def trained_model(seed: int = 0):
    """A model whose trainable tensors and BatchNorm statistics differ from a fresh one's."""
    model = tiny_model(seed)
    generator = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    model.train()
    for _ in range(2):
        model(clouds(4, seed=30))  # moves the running statistics
    return model.eval()


def test_the_folder_holds_the_trained_tensors_the_statistics_and_the_bank(tmp_path):
    model = trained_model()
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / WEIGHTS_NAME))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert trainable <= set(saved)
    assert not (set(saved) & frozen)
    assert torch.equal(saved["memory_bank.features"], model.memory_bank.features)
    for name in (
        "layers.0.geometry.anchor_norm.running_mean",
        "backbone.cls_head_finetune.1.running_var",
        "backbone.encoder.first_conv.1.running_mean",  # moves in train mode (the reference)
    ):
        assert torch.equal(saved[name], model.get_buffer(name)), name
    assert not any(name.startswith("query_encoder.") for name in saved)
    record = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert record["method"] == "point_peft"
    assert record["memory_bank_size"] == 12


def test_peft_core_load_in_a_fresh_process_gives_identical_logits(tmp_path):
    model = trained_model(seed=4)
    model.save_pretrained(tmp_path / "run")
    points = clouds(3, seed=22)
    with torch.no_grad():
        expected = model(points).logits
    logits = logits_after_fresh_process_load(
        tmp_path / "run",
        points,
        tmp_path,
        # registers "point_peft" (also found through the entry point)
        imports="import point_peft.method",
        checks='assert type(model).__name__ == "PointPeftModel", type(model)',
    )
    assert torch.equal(logits, expected)


def test_loading_onto_another_bank_size_names_the_tensor(tmp_path):
    model = trained_model()
    model.save_pretrained(tmp_path)
    other = get_point_peft_model(
        tiny_backbone(), tiny_method_config(memory_bank_size=20), memory_bank=None
    )
    with pytest.raises(peft_core.CheckpointError, match=r"memory_bank\.features: saved \(24, 12\)"):
        peft_core.load_trainable(other, tmp_path)


def test_the_method_is_registered_with_peft_core():
    spec = peft_core.get_method("point_peft")
    assert spec.apply is get_point_peft_model
    assert spec.config_class is type(tiny_method_config())
