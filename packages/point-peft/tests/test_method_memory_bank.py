"""The memory-bank builder, the bank file, the frozen query encoder and the query cache."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from point_peft.method import (
    FrozenQueryEncoder,
    MemoryBank,
    QueryFeatureCache,
    WithSampleIndices,
    build_memory_bank,
)
from point_peft.ops import group

sys.path.insert(0, str(Path(__file__).parent))
from method_helpers import (
    clouds,
    tiny_backbone,
    tiny_method_config,
    tiny_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_feature(backbone, cloud, num_groups, group_size):
    """One cloud, by hand: group, mini-PointNet, blocks with positions before each (each block
    called on its own), final LayerNorm, max over the patch tokens; no cls token."""
    centers, neighborhoods, _ = group(cloud[None], num_groups, group_size)
    x = backbone.encoder(neighborhoods)
    pos = backbone.pos_embed(centers)
    for block in backbone.blocks.blocks:
        x = block(x + pos)
    return backbone.norm(x)[0].max(dim=0).values


def test_builder_matches_the_hand_computed_features_in_eval_mode():
    backbone = tiny_backbone().train()
    statistics = backbone.encoder.first_conv[1].running_mean.clone()
    data = clouds(5, seed=4)
    bank = build_memory_bank(backbone, data.split(2), num_groups=8, group_size=8, progress=False)
    assert backbone.training  # modes restored ...
    assert torch.equal(backbone.encoder.first_conv[1].running_mean, statistics)  # ... stats kept
    backbone.eval()
    with torch.no_grad():
        expected = torch.stack([reference_feature(backbone, cloud, 8, 8) for cloud in data], dim=1)
    expected = expected / expected.norm(dim=0, keepdim=True)
    assert bank.features.shape == (24, 5)
    assert bank.features.is_contiguous()  # same kernels as a bank loaded from a file
    torch.testing.assert_close(bank.features, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bank.features.norm(dim=0), torch.ones(5))
    assert (bank.num_groups, bank.group_size) == (8, 8)


def test_loader_batches_may_be_dicts_tuples_or_tensors():
    backbone = tiny_backbone()
    data = clouds(4, seed=4)
    items = [{"points": cloud, "labels": 0} for cloud in data]
    from_dicts = build_memory_bank(
        backbone, DataLoader(items, batch_size=3), num_groups=8, group_size=8, progress=False
    )
    from_tuples = build_memory_bank(
        backbone, [(data[:2], None), (data[2:], None)], num_groups=8, group_size=8, progress=False
    )
    from_tensors = build_memory_bank(backbone, [data], num_groups=8, group_size=8, progress=False)
    torch.testing.assert_close(from_dicts.features, from_tensors.features)
    torch.testing.assert_close(from_tuples.features, from_tensors.features)
    with pytest.raises(ValueError, match="yielded no batch"):
        build_memory_bank(backbone, [], num_groups=8, group_size=8, progress=False)
    with pytest.raises(KeyError, match="no 'points'"):
        build_memory_bank(backbone, [{"xyz": data}], num_groups=8, group_size=8, progress=False)


def test_bank_file_round_trip_and_errors(tmp_path):
    bank = MemoryBank(torch.randn(24, 7), num_groups=8, group_size=4)
    path = bank.save(tmp_path / "bank.safetensors")
    loaded = MemoryBank.load(path)
    assert torch.equal(loaded.features, bank.features)
    assert (loaded.num_groups, loaded.group_size) == (8, 4)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="is not a memory bank file"):
        MemoryBank.load(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match="no memory bank file"):
        MemoryBank.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize(
    ("features", "error", "message"),
    [
        (torch.randn(24), ValueError, "must be a \\(dim, size\\) tensor"),
        (torch.ones(3, 2, dtype=torch.long), TypeError, "must be floating-point"),
        (torch.tensor([[1.0, float("nan")]]), ValueError, "NaN or infinite"),
        (torch.tensor([[1.0, 0.0], [1.0, 0.0]]), ValueError, "a column of features is all zeros"),
    ],
)
def test_bank_validation(features, error, message):
    with pytest.raises(error, match=message):
        MemoryBank(features, num_groups=8, group_size=8)


def test_query_encoder_is_the_pretrained_encoder_without_autograd():
    model = tiny_model()
    points = clouds(3, seed=8)
    query = model.query_features(points)
    assert not query.requires_grad
    # the same as the memory-bank pass on a copy of the backbone (before any fine-tuning)
    reference = build_memory_bank(
        model.backbone, [points], num_groups=8, group_size=8, progress=False
    )
    torch.testing.assert_close(query / query.norm(dim=1, keepdim=True), reference.features.t())
    # fine-tuning moves the biases, the final norm and (in train mode) the BatchNorm statistics
    with torch.no_grad():
        for parameter in model.backbone.parameters():
            if parameter.requires_grad:
                parameter.add_(0.5)
    model.train()
    model(clouds(4, seed=9))
    torch.testing.assert_close(model.query_features(points), query, rtol=0, atol=0)
    # what it keeps: exactly the trainable backbone tensors it reads and the patch BN statistics
    names = set(model.query_encoder.original_values)
    assert "norm.bias" in names
    assert "blocks.blocks.0.mlp.fc1.bias" in names
    assert "encoder.first_conv.1.running_var" in names
    assert not any(name.startswith("cls_") for name in names)
    assert not any(".weight" in name and "norm" not in name for name in names)


def test_query_encoder_rejects_unknown_names():
    with pytest.raises(KeyError, match="no tensor named"):
        FrozenQueryEncoder(tiny_backbone(), ["norm.gain"], num_groups=8, group_size=8)


def test_cached_queries_equal_computed_ones_and_skip_the_encoder():
    model = tiny_model(config=tiny_method_config(cache_query_features=True)).train()
    points = clouds(6, seed=10)
    calls = []
    model.query_encoder.register_forward_hook(lambda module, args, out: calls.append(len(out)))
    first = model.query_features(points[:4], torch.tensor([0, 1, 2, 3]))
    assert calls == [4]
    # samples 2 and 3 are cached; only 4 and 5 go through the encoder, one batch of two
    second = model.query_features(points[2:], torch.tensor([2, 3, 4, 5]))
    assert calls == [4, 2]
    torch.testing.assert_close(second[:2], first[2:], rtol=0, atol=0)
    with torch.no_grad():
        direct = model.query_encoder(points)
    torch.testing.assert_close(second, direct[2:], rtol=1e-5, atol=1e-6)
    # eval never reads the cache (test samples have their own indices)
    model.eval()
    model.query_features(points[:2], torch.tensor([0, 1]))
    assert calls == [4, 2, 6, 2]  # (6: the direct call above)
    assert len(model.query_cache) == 6


def test_cache_grows_and_checks_its_indices():
    cache = QueryFeatureCache()
    cache.fetch(torch.tensor([1]), lambda rows: torch.ones(int(rows.sum()), 3))
    out = cache.fetch(torch.tensor([40, 1]), lambda rows: torch.full((int(rows.sum()), 3), 2.0))
    assert out.tolist() == [[2.0, 2.0, 2.0], [1.0, 1.0, 1.0]]
    assert len(cache) == 2
    with pytest.raises(ValueError, match="1-D integer tensor"):
        cache.fetch(torch.tensor([[1]]), lambda rows: None)
    with pytest.raises(ValueError, match=">= 0"):
        cache.fetch(torch.tensor([-1]), lambda rows: None)


def test_with_sample_indices_feeds_the_cache_through_a_loader():
    items = [{"points": cloud, "labels": 0} for cloud in clouds(5)]
    batch = next(iter(DataLoader(WithSampleIndices(items), batch_size=5)))
    assert batch["sample_indices"].tolist() == [0, 1, 2, 3, 4]
    model = tiny_model(config=tiny_method_config(cache_query_features=True)).train()
    model(**batch)
    assert len(model.query_cache) == 5
