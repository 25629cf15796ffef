"""PointPeftConfig: defaults of the spec, JSON round trip, validation naming the field."""

from __future__ import annotations

import json

import pytest

from peft_core import ConfigError
from point_peft.method import PointPeftConfig


def test_defaults_are_the_reference_setting():
    config = PointPeftConfig()
    assert (config.num_prompts, config.prompt_layers, config.top_k, config.cp_adapter_dim) == (
        10,
        6,
        8,
        8,
    )
    assert (config.ga_anchors, config.ga_neighbors, config.ga_heads, config.ga_head_dim) == (
        64,
        16,
        6,
        3,
    )
    assert (config.ga_scale, config.propagate_scale, config.ffn_adapter_scale) == (0.3, 0.3, 0.7)
    assert (config.residual_adapter_dim, config.ffn_adapter_dim) == (16, 16)
    assert (config.adapter_dropout, config.prompt_dropout) == (0.1, 0.1)
    assert (config.query_num_groups, config.query_group_size) == (64, 32)
    assert config.learnable_prompt_coordinates is True
    assert config.freeze_batchnorm_stats is False
    assert config.memory_bank_size is None


def test_json_round_trip_with_a_version_stamp(tmp_path):
    config = PointPeftConfig(prompt_layers=3, freeze_batchnorm_stats=True, memory_bank_size=40)
    path = config.save(tmp_path / "adapter_config.json")
    record = json.loads(path.read_text())
    assert record["method"] == "point_peft"
    assert record["library"] == "point_peft"
    assert PointPeftConfig.from_json_file(path) == config


def test_unknown_keys_are_rejected_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'top_k'"):
        PointPeftConfig.from_dict({"top_kk": 8})


def test_saved_buffers_cover_the_bank_and_batchnorm_statistics():
    patterns = PointPeftConfig().saved_buffers
    assert "memory_bank.features" in patterns
    assert "*.running_mean" in patterns
    assert "*.running_var" in patterns
    # a property, not a field: the saved JSON does not carry it as a constructor argument
    assert "saved_buffers" not in PointPeftConfig().to_dict()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_prompts": 9}, "num_prompts=9 must equal top_k \\+ 2 = 10"),
        ({"top_k": 0, "num_prompts": 2}, "top_k must be an integer >= 1"),
        ({"prompt_layers": -1}, "prompt_layers must be an integer >= 0"),
        ({"ga_anchors": 0}, "ga_anchors must be an integer >= 1"),
        ({"ga_neighbors": 2.5}, "ga_neighbors must be an integer"),
        ({"ga_heads": True}, "ga_heads must be an integer"),
        ({"adapter_dropout": 1.0}, "adapter_dropout must be in \\[0, 1\\)"),
        ({"prompt_dropout": -0.1}, "prompt_dropout must be in \\[0, 1\\)"),
        ({"ga_scale": float("nan")}, "ga_scale must be finite"),
        ({"propagate_scale": "0.3"}, "propagate_scale must be a number"),
        ({"adapter_init": "kaiming"}, "adapter_init must be one of"),
        ({"freeze_batchnorm_stats": 1}, "freeze_batchnorm_stats must be True or False"),
        ({"memory_bank_size": 0}, "memory_bank_size must be an integer >= 1"),
        ({"memory_bank_size": 5}, "top_k=8 exceeds memory_bank_size=5"),
    ],
)
def test_invalid_values_name_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        PointPeftConfig(**changes)


def test_zero_prompt_layers_and_zero_scales_are_allowed():
    config = PointPeftConfig(prompt_layers=0, propagate_scale=0.0, ffn_adapter_scale=0.0)
    assert not config.uses_memory_bank
