"""PointTransformerConfig presets, JSON round trip and argument errors; heads and the loss."""

from __future__ import annotations

import math

import pytest
import torch

from peft_core import ConfigError
from point_peft.models import (
    PointBERT,
    PointBERTHead,
    PointMAE,
    PointMAEHead,
    PointMAEPretrainer,
    PointTransformerConfig,
    smoothed_cross_entropy,
)


def test_presets_are_the_official_architectures():
    mae = PointTransformerConfig.point_mae()
    assert (mae.embed_dim, mae.depth, mae.num_heads, mae.mlp_ratio) == (384, 12, 6, 4.0)
    assert (mae.num_groups, mae.group_size, mae.patch_dim, mae.drop_path_rate) == (
        64,
        32,
        None,
        0.1,
    )
    assert (mae.mask_ratio, mae.decoder_depth, mae.decoder_num_heads) == (0.6, 4, 6)
    bert = PointTransformerConfig.point_bert(num_classes=15)
    assert (bert.patch_dim, bert.label_smoothing, bert.num_classes) == (256, 0.2, 15)
    assert PointBERT.default_config() == PointTransformerConfig.point_bert()
    assert PointMAE.default_config(num_groups=128).num_groups == 128


def test_small_preset_is_small():
    with torch.device("meta"):
        pretrainer = PointMAEPretrainer(PointTransformerConfig.small())
    assert sum(p.numel() for p in pretrainer.parameters()) == 718_896


def test_json_round_trip_and_unknown_keys():
    config = PointTransformerConfig.small(patch_dim=64, label_smoothing=0.1)
    restored = PointTransformerConfig.from_dict(config.to_dict())
    assert restored == config
    assert isinstance(restored.patch_hidden_dims, tuple)
    with pytest.raises(ConfigError, match="'embed_dims' \\(did you mean 'embed_dim'\\?\\)"):
        PointTransformerConfig.from_dict({"embed_dims": 3})
    with pytest.raises(ConfigError, match="unknown PointTransformerConfig field"):
        config.replace(depht=3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"embed_dim": 0}, "embed_dim must be a positive integer, got 0"),
        ({"num_heads": 5}, "num_heads=5 must divide embed_dim=384"),
        ({"decoder_num_heads": 7}, "decoder_num_heads=7 must divide embed_dim=384"),
        ({"drop_path_rate": 1.0}, r"drop_path_rate must be a number in \[0, 1\), got 1.0"),
        ({"mask_ratio": math.nan}, "mask_ratio must be a number"),
        ({"patch_dim": -1}, "patch_dim must be a positive integer"),
        ({"patch_hidden_dims": (1, 2, 3)}, r"patch_hidden_dims must be a pair \(h1, h2\)"),
        ({"fps_start": "random"}, "fps_start must be one of"),
        ({"num_classes": 1, "label_smoothing": 0.2}, "label_smoothing > 0 needs num_classes >= 2"),
        ({"depth": True}, "depth must be a positive integer, got True"),
        ({"layer_norm_eps": 0}, "layer_norm_eps must be a positive number"),
        ({"mlp_ratio": -1}, "mlp_ratio must be a positive number"),
    ],
)
def test_invalid_values_name_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        PointTransformerConfig(**changes)


def test_models_reject_a_wrong_config_type():
    with pytest.raises(TypeError, match="config must be a PointTransformerConfig, got dict"):
        PointMAE({"embed_dim": 3})


def test_heads_follow_the_official_sequences():
    mae = PointMAEHead(768, 15)
    assert [type(m).__name__ for m in mae] == [
        "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear",
    ]  # fmt: skip
    assert (mae[3].p, mae[7].p, mae[8].out_features) == (0.5, 0.5, 15)
    bert = PointBERTHead(768, 40)
    assert [type(m).__name__ for m in bert] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert (bert[0].out_features, bert[3].out_features) == (256, 40)


def test_smoothed_cross_entropy_matches_point_bert_formula():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    eps = 0.2
    expected = 0.0
    for row, label in zip(logits, labels.tolist(), strict=True):
        log_probs = row - torch.logsumexp(row, dim=0)
        for c in range(5):
            weight = 1 - eps if c == label else eps / 4
            expected -= weight * log_probs[c].item()
    expected /= 6
    assert smoothed_cross_entropy(logits, labels, eps).item() == pytest.approx(expected, rel=1e-12)
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert smoothed_cross_entropy(logits, labels, 0.0).item() == pytest.approx(plain.item())
    # not torch's label_smoothing, which spreads eps over all classes including the true one
    torch_smoothed = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=eps)
    assert abs(torch_smoothed.item() - expected) > 1e-3


def test_classifier_loss_uses_the_config_smoothing():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 0, 3, 4])
    config = PointTransformerConfig.small(num_classes=5)
    bert = PointBERT(config.replace(patch_dim=32, label_smoothing=0.2))
    assert bert.loss(logits, labels).item() == pytest.approx(
        smoothed_cross_entropy(logits, labels, 0.2).item()
    )
    mae = PointMAE(config)
    assert mae.loss(logits, labels).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item()
    )


def test_smoothed_cross_entropy_errors():
    with pytest.raises(ValueError, match=r"logits must have shape \(batch, num_classes\)"):
        smoothed_cross_entropy(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="labels has 2 entries for a batch of 3"):
        smoothed_cross_entropy(torch.zeros(3, 4), torch.zeros(2))
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\)"):
        smoothed_cross_entropy(torch.zeros(3, 4), torch.zeros(3), 1.0)
