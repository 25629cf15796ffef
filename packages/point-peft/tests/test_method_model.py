"""get_point_peft_model: trainable set and count, starting point, batch independence, training."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

import pytest
import torch

import peft_core
from point_peft.method import (
    MemoryBank,
    PointPeftConfig,
    PointPeftModel,
    get_point_peft_model,
)
from point_peft.models import PointMAE, PointTransformerConfig

sys.path.insert(0, str(Path(__file__).parent))
from method_helpers import (
    clouds,
    tiny_backbone,
    tiny_bank,
    tiny_method_config,
    tiny_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# -- the official configuration ------------------------------------------------------------------
C, DEPTH, PROMPTED, PROMPTS, CLASSES = 384, 12, 6, 10, 15


def bottleneck(dim, hidden):
    return dim * hidden + hidden + hidden * dim + dim


# Spec §2–§4 after the fixes, category by category (patterns over PointPeftModel's names).
OFFICIAL_BREAKDOWN = {
    "layers.*.prompt.embeddings": PROMPTED * PROMPTS * C,  # E_l, layers 0-5 only
    "layers.*.prompt.adapter.*": PROMPTED * bottleneck(C, 8),  # A^cp_l 384→8→384
    "prompt_coordinates": PROMPTS * 3,  # the bug-1 fix
    "local_attention.norm.*": 2 * C,  # shared LN3
    "local_attention.attention.*": C * 54 + (18 * C + C),  # qkv (no bias), proj
    "layers.*.geometry.anchor_norm.*": DEPTH * 2 * C,  # BN_l
    "layers.*.geometry.residual_adapter.*": DEPTH * bottleneck(C, 16),
    "layers.*.ffn_adapter.*": DEPTH * bottleneck(C, 16),
    "backbone.cls_token": C,
    "backbone.cls_pos": C,
    "backbone.norm.*": 2 * C,
    "backbone.cls_head_finetune.*": (2 * C * 256 + 256)
    + 2 * 256
    + (256 * 256 + 256)
    + 2 * 256
    + (256 * CLASSES + CLASSES),
    "backbone.blocks.blocks.*.bias": DEPTH
    * (C + 4 * C + C + C + C),  # proj, fc1, fc2, norm1, norm2
}
OFFICIAL_TRAINABLE = 710_749


def test_official_trainable_count_equals_the_spec_breakdown():
    """710,749 trainable (3.16% of 22.5 M). The reference registers 773,017 trainable tensors'
    worth: it also creates prompts and context adapters in layers 6–11 that never run (23,040 +
    39,216) and a zero-initialised ``ad_gate`` per block that is never read (12); those dead
    parameters get no gradient, so both count the same 0.71 M that actually train."""
    with torch.device("meta"):  # no memory, no values: only shapes are counted
        backbone = PointMAE(PointTransformerConfig.point_mae(num_classes=CLASSES, num_groups=128))
    bank = MemoryBank.placeholder(C, 2000, num_groups=64, group_size=32, device="meta")
    # New modules are built on the CPU and moved to the backbone's device (meta's normal_ is slow).
    model = get_point_peft_model(backbone, PointPeftConfig(), memory_bank=bank)
    assert model.layers[0].ffn_adapter.up.weight.is_meta
    assert sum(OFFICIAL_BREAKDOWN.values()) == OFFICIAL_TRAINABLE
    found = dict.fromkeys(OFFICIAL_BREAKDOWN, 0)
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        matches = [pattern for pattern in OFFICIAL_BREAKDOWN if fnmatch.fnmatchcase(name, pattern)]
        assert len(matches) == 1, f"{name} falls in categories {matches}"
        found[matches[0]] += parameter.numel()
    assert found == OFFICIAL_BREAKDOWN
    trainable, total = peft_core.count_parameters(model)
    assert trainable == OFFICIAL_TRAINABLE
    assert total == 22_093_327 + 404_814  # the backbone + the new modules
    assert trainable / total <= 0.05
    assert f"{100 * trainable / total:.2f}" == "3.16"


def test_trainable_set_is_exactly_the_spec():
    model = tiny_model()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    backbone_trainable = {n for n in trainable if n.startswith("backbone.")}
    expected_backbone = {"backbone.cls_token", "backbone.cls_pos"}
    expected_backbone |= {n for n, _ in model.named_parameters() if n.startswith("backbone.norm.")}
    expected_backbone |= {
        n for n, _ in model.named_parameters() if n.startswith("backbone.cls_head_finetune.")
    }
    for block in range(3):
        for part in ("attn.proj", "mlp.fc1", "mlp.fc2", "norm1", "norm2"):
            expected_backbone.add(f"backbone.blocks.blocks.{block}.{part}.bias")
    assert backbone_trainable == expected_backbone
    new = {n for n, _ in model.named_parameters() if not n.startswith("backbone.")}
    assert trainable - backbone_trainable == new  # every new parameter trains
    # frozen: the patch encoder, positions, attention/FFN weights, LayerNorm gains
    assert not model.backbone.encoder.first_conv[0].weight.requires_grad
    assert not model.backbone.pos_embed[0].bias.requires_grad
    assert not model.backbone.blocks.blocks[0].norm1.weight.requires_grad
    assert not model.backbone.blocks.blocks[0].attn.qkv.weight.requires_grad
    # prompts only in the first prompt_layers layers
    assert [layer.prompted for layer in model.layers] == [True, True, False]


def test_print_trainable_parameters_and_no_weight_decay(capsys):
    model = tiny_model()
    model.print_trainable_parameters()
    trainable, total = peft_core.count_parameters(model)
    assert capsys.readouterr().out == (
        f"trainable params: {trainable:,d} || all params: {total:,d} || "
        f"trainable%: {100 * trainable / total:.4f}\n"
    )
    no_decay = model.no_weight_decay()
    assert {"backbone.cls_token", "backbone.cls_pos", "prompt_coordinates"} <= no_decay
    assert "layers.0.prompt.embeddings" in no_decay
    assert "layers.0.ffn_adapter.down.bias" in no_decay
    assert "backbone.blocks.blocks.0.norm1.bias" in no_decay
    assert "layers.0.ffn_adapter.down.weight" not in no_decay
    assert "local_attention.attention.qkv.weight" not in no_decay
    assert all(model.get_parameter(name).requires_grad for name in no_decay)


# -- what the method changes at initialisation ------------------------------------------------------
def starting_point_config(**overrides) -> PointPeftConfig:
    return tiny_method_config(prompt_layers=0, propagate_scale=0.0, **overrides)


def zero_up_projections(model: PointPeftModel) -> None:
    with torch.no_grad():
        for layer in model.layers:
            for adapter in (layer.ffn_adapter, layer.geometry.residual_adapter):
                adapter.up.weight.zero_()
                adapter.up.bias.zero_()


def test_starting_point_with_zeroed_up_projections_and_no_prompts_is_the_backbone():
    """What Point-PEFT changes at init: without prompts, without propagation and with the
    adapters' up projections at zero, the model computes exactly the backbone's logits."""
    model = tiny_model(config=starting_point_config()).eval()
    zero_up_projections(model)
    points = clouds(3)
    with torch.no_grad():
        logits = model(points).logits
        assert torch.equal(logits, model.backbone(points))
        # the same with adapter_init="zero_up" (no manual zeroing)
        zero_init = tiny_model(config=starting_point_config(adapter_init="zero_up")).eval()
        assert torch.equal(zero_init(points).logits, zero_init.backbone(points))


@pytest.mark.parametrize(
    "change", ["prompts", "propagation", "xavier adapters"], ids=lambda change: change
)
def test_each_part_changes_the_output_at_init(change):
    """The reference's init is not an identity: prompts, the GA propagation (f includes
    GELU(BN(max)) and 0.3 · x[anchor]) and xavier-initialised adapters each move the logits."""
    overrides = {
        "prompts": {"prompt_layers": 2},
        "propagation": {"propagate_scale": 0.3},
        "xavier adapters": {},
    }[change]
    config = tiny_method_config(**{"prompt_layers": 0, "propagate_scale": 0.0, **overrides})
    model = tiny_model(config=config).eval()
    if change != "xavier adapters":
        zero_up_projections(model)
    points = clouds(3)
    with torch.no_grad():
        difference = (model(points).logits - model.backbone(points)).abs().max()
    assert float(difference) > 1e-4


# -- batches, modes, training --------------------------------------------------------------------
def test_eval_logits_of_a_batch_equal_each_sample_alone():
    """Every sample of a batch is processed with its own groups, prompts and retrieval."""
    model = tiny_model().eval()
    points = clouds(4, seed=7)
    with torch.no_grad():
        batched = model(points).logits
        for b in range(4):
            torch.testing.assert_close(
                batched[b : b + 1], model(points[b : b + 1]).logits, rtol=1e-5, atol=1e-6
            )


def test_output_has_loss_and_logits_for_the_trainers():
    model = tiny_model()
    labels = torch.tensor([0, 1, 2, 3])
    output = model(clouds(4), labels=labels)
    assert isinstance(output, dict)
    assert list(output) == ["loss", "logits"]
    torch.testing.assert_close(output.loss, model.backbone.loss(output.logits, labels))
    assert model(clouds(4)).loss is None


def train_steps(model, points, labels, steps, lr=3e-3):
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.05)
    losses = []
    for _ in range(steps):
        model.train()
        loss = model(points, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_a_few_training_steps_reduce_the_loss_on_the_small_preset():
    torch.manual_seed(0)
    backbone = PointMAE(PointTransformerConfig.small(num_classes=4))
    config = PointPeftConfig(
        prompt_layers=2, ga_anchors=16, ga_neighbors=8, query_num_groups=16, query_group_size=8
    )
    points = clouds(8, points=256, seed=3)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    bank = tiny_bank(backbone, config, size=10)
    model = get_point_peft_model(backbone, config, memory_bank=bank)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    query_before = model.query_features(points)

    def eval_loss():
        model.eval()
        with torch.no_grad():
            return float(model(points, labels=labels).loss)

    before = eval_loss()
    train_steps(model, points, labels, steps=15, lr=5e-3)
    after = eval_loss()
    assert after < 0.7 * before, (before, after)
    for name, value in frozen.items():
        assert torch.equal(model.get_parameter(name), value), f"frozen {name} changed"
    # the BitFit biases and the final norm moved, but the queries still come from the
    # pre-trained encoder (the memory bank's feature space)
    assert not torch.equal(model.backbone.norm.bias, torch.zeros_like(model.backbone.norm.bias))
    torch.testing.assert_close(model.query_features(points), query_before, rtol=0, atol=0)


def test_seeded_training_is_deterministic():
    points, labels = clouds(4, seed=5), torch.tensor([0, 1, 2, 3])
    runs = []
    for _ in range(2):
        model = tiny_model(seed=3)
        torch.manual_seed(11)  # dropout, drop path
        losses = train_steps(model, points, labels, steps=2)
        runs.append((losses, {n: p.detach().clone() for n, p in model.named_parameters()}))
    assert runs[0][0] == runs[1][0]
    for name, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][name]), name


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_batchnorm_statistics_are_selectable(freeze):
    model = tiny_model(config=tiny_method_config(freeze_batchnorm_stats=freeze))
    model.train()
    patch_norm = model.backbone.encoder.first_conv[1]
    head_norm = model.backbone.cls_head_finetune[1]
    anchor_norm = model.layers[0].geometry.anchor_norm
    before = [m.running_mean.clone() for m in (patch_norm, head_norm, anchor_norm)]
    model(clouds(4))
    changed = [
        not torch.equal(m.running_mean, b)
        for m, b in zip((patch_norm, head_norm, anchor_norm), before, strict=True)
    ]
    assert changed == [not freeze, True, True]
    assert patch_norm.training is (not freeze)
    assert model.training


# -- errors ---------------------------------------------------------------------------------------
def test_a_memory_bank_of_another_feature_size_is_a_clear_error():
    backbone = tiny_backbone()
    wrong = MemoryBank(torch.randn(16, 12), num_groups=8, group_size=8)
    with pytest.raises(ValueError, match="memory bank features have size 16 but the backbone"):
        get_point_peft_model(backbone, tiny_method_config(), memory_bank=wrong)


@pytest.mark.parametrize(
    ("config", "bank_grouping", "message"),
    [
        (tiny_method_config(), None, "Point-PEFT's prompts need a memory bank"),
        (tiny_method_config(), (16, 8), "built with 16 x 8 grouping but"),
        (tiny_method_config(memory_bank_size=30), (8, 8), "memory_bank_size=30 but the memory"),
        (tiny_method_config(prompt_layers=4), (8, 8), "prompt_layers=4 exceeds the backbone's"),
        (tiny_method_config(ga_anchors=17), (8, 8), "ga_anchors=17 exceeds the backbone's 16"),
        (tiny_method_config(prompt_layers=0), (8, 8), "prompt_layers=0 uses no memory bank"),
    ],
)
def test_configuration_errors(config, bank_grouping, message):
    backbone = tiny_backbone()
    bank = None
    if bank_grouping is not None:
        bank = MemoryBank(
            torch.randn(24, 12), num_groups=bank_grouping[0], group_size=bank_grouping[1]
        )
    with pytest.raises(ValueError, match=message):
        get_point_peft_model(backbone, config, memory_bank=bank)


def test_wrapping_twice_or_a_non_classifier_is_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="already a Point-PEFT model"):
        get_point_peft_model(model, tiny_method_config())
    with pytest.raises(TypeError, match="needs a PointMAE or PointBERT classifier"):
        get_point_peft_model(torch.nn.Linear(2, 2), tiny_method_config())


def test_the_config_records_the_bank_size():
    config = tiny_method_config()
    backbone = tiny_backbone()
    get_point_peft_model(backbone, config, memory_bank=tiny_bank(backbone, config, size=9))
    assert config.memory_bank_size == 9


def test_every_trainable_parameter_gets_a_gradient():
    model = tiny_model().train()
    torch.manual_seed(0)
    model(clouds(4), labels=torch.tensor([0, 1, 2, 3])).loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, name
            assert float(parameter.grad.abs().sum()) > 0, name
        else:
            assert parameter.grad is None, name
    # the prompt coordinates learn through the propagation weights of the anchors they became
    assert float(model.prompt_coordinates.grad.abs().sum()) > 0


def test_point_bert_backbones_are_supported():
    from point_peft.models import PointBERT

    torch.manual_seed(0)
    backbone = PointBERT(tiny_backbone().config.replace(patch_dim=12, label_smoothing=0.2))
    config = tiny_method_config()
    model = get_point_peft_model(backbone, config, memory_bank=tiny_bank(backbone, config))
    assert not model.backbone.reduce_dim.weight.requires_grad
    output = model(clouds(3), labels=torch.tensor([0, 1, 2]))
    assert output.logits.shape == (3, 5)
    output.loss.backward()


def test_deepcopy_keeps_the_query_encoder_on_the_copied_backbone():
    import copy

    model = tiny_model().eval()
    clone = copy.deepcopy(model)
    assert clone.query_encoder._runner.encoder is clone.backbone
    with torch.no_grad():
        torch.testing.assert_close(clone(clouds(2)).logits, model(clouds(2)).logits)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_step_and_query_cache_on_cuda():
    import copy

    cpu = tiny_model(config=tiny_method_config(cache_query_features=True)).eval()
    model = copy.deepcopy(cpu).cuda()
    points = clouds(4).cuda()
    with torch.no_grad():
        torch.testing.assert_close(
            model(points).logits.cpu(), cpu(points.cpu()).logits, rtol=1e-4, atol=1e-4
        )
    model.train()
    indices = torch.tensor([3, 1, 2, 0])  # on the CPU, as a DataLoader gives them
    output = model(points, labels=torch.tensor([0, 1, 2, 3]).cuda(), sample_indices=indices)
    output.loss.backward()
    assert model.prompt_coordinates.grad.is_cuda
    assert len(model.query_cache) == 4


def test_without_prompt_coordinates_prompts_stay_out_of_the_ga_adapter():
    with_coordinates = tiny_model()
    model = tiny_model(config=tiny_method_config(learnable_prompt_coordinates=False)).eval()
    assert model.prompt_coordinates is None
    trainable = peft_core.count_parameters(model)[0]
    assert trainable == peft_core.count_parameters(with_coordinates)[0] - 6 * 3
    centers = model.backbone.embed(clouds(2)).centers
    groupings = model.groupings(centers)
    assert list(groupings) == [False]  # one grouping, over the token centres only
    assert groupings[False].num_prompts == 0
    assert model(clouds(2)).logits.shape == (2, 5)
