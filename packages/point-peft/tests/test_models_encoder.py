"""Forward pass of the Point-MAE / Point-BERT classifiers against a hand-written reference.

The reference below re-implements the official forward from the parameters with plain tensor
math (no module of the package but the grouping op, which has its own tests): mini-PointNet with
[global ; per-point] features, positions added before EVERY block, [cls ; max] pooling, heads.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from point_peft.models import (
    PatchEncoder,
    PointBERT,
    PointMAE,
    PointTransformerConfig,
    PointTransformerEncoder,
)
from point_peft.ops import group


def assert_close(actual, expected, *, rtol=1e-5, atol=1e-6):
    """Like torch.testing.assert_close (whose first call imports torch.distributed: seconds)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    difference = (actual - expected).abs()
    within = difference <= atol + rtol * expected.abs()
    assert bool(within.all()), f"max abs difference {difference.max().item():.3e}"


def tiny_config(**overrides) -> PointTransformerConfig:
    values = {
        "embed_dim": 24,
        "depth": 3,
        "num_heads": 3,
        "num_groups": 8,
        "group_size": 6,
        "patch_hidden_dims": (8, 12),
        "pos_hidden_dim": 10,
        "head_hidden_dim": 16,
        "num_classes": 5,
        "drop_path_rate": 0.0,
    }
    return PointTransformerConfig(**{**values, **overrides})


def cloud(batch=2, points=64, seed=1, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, points, 3, generator=generator, dtype=dtype) * 2 - 1


def randomize_norms(model: torch.nn.Module, seed: int = 5) -> None:
    """Non-trivial BatchNorm statistics and LayerNorm affines, so that their use is checked."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)


# ---------------------------------------------------------------------------------------------
# the reference forward, from the state dict
def _linear(x, p, name):
    return x @ p[name + ".weight"].reshape(p[name + ".weight"].shape[0], -1).T + p[name + ".bias"]


def _batchnorm(x, p, name, eps=1e-5):  # channels last, eval mode
    mean, var = p[name + ".running_mean"], p[name + ".running_var"]
    return (x - mean) / torch.sqrt(var + eps) * p[name + ".weight"] + p[name + ".bias"]


def _layernorm(x, p, name, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * p[name + ".weight"] + p[name + ".bias"]


def _block(x, p, name, heads):
    dim = x.shape[-1]
    head_dim = dim // heads
    h = _layernorm(x, p, name + ".norm1")
    qkv = h @ p[name + ".attn.qkv.weight"].T
    q, k, v = qkv.split(dim, dim=-1)
    outs = []
    for i in range(heads):
        sl = slice(i * head_dim, (i + 1) * head_dim)
        weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(head_dim), -1)
        outs.append(weights @ v[..., sl])
    x = x + _linear(torch.cat(outs, -1), p, name + ".attn.proj")
    h = _layernorm(x, p, name + ".norm2")
    gelu = 0.5 * _linear(h, p, name + ".mlp.fc1")
    gelu = gelu * (1 + torch.erf(gelu * 2 / math.sqrt(2)))  # exact GELU of 2·gelu
    return x + _linear(gelu, p, name + ".mlp.fc2")


def reference_features(model, points, *, pos_every_block=True):
    p = model.state_dict()
    config = model.config
    centers, neighborhoods, _ = group(points, config.num_groups, config.group_size)
    batch, groups, size, _ = neighborhoods.shape
    h = neighborhoods.reshape(batch * groups, size, 3)  # points last: (patches, k, 3)
    h = torch.relu(_batchnorm(_linear(h, p, "encoder.first_conv.0"), p, "encoder.first_conv.1"))
    h = _linear(h, p, "encoder.first_conv.3")
    h = torch.cat([h.max(dim=1, keepdim=True).values.expand_as(h), h], dim=-1)
    h = torch.relu(_batchnorm(_linear(h, p, "encoder.second_conv.0"), p, "encoder.second_conv.1"))
    tokens = _linear(h, p, "encoder.second_conv.3").max(dim=1).values.reshape(batch, groups, -1)
    if "reduce_dim.weight" in p:
        tokens = _linear(tokens, p, "reduce_dim")
    pos = _linear(F.gelu(_linear(centers, p, "pos_embed.0")), p, "pos_embed.2")
    x = torch.cat([p["cls_token"].expand(batch, -1, -1), tokens], dim=1)
    pos = torch.cat([p["cls_pos"].expand(batch, -1, -1), pos], dim=1)
    for i in range(config.depth):
        if pos_every_block or i == 0:
            x = x + pos
        x = _block(x, p, f"blocks.blocks.{i}", config.num_heads)
    x = _layernorm(x, p, "norm")
    return torch.cat([x[:, 0], x[:, 1:].max(dim=1).values], dim=-1), p


def reference_logits(model, points, *, pos_every_block=True):
    f, p = reference_features(model, points, pos_every_block=pos_every_block)
    if isinstance(model, PointBERT):
        return _linear(torch.relu(_linear(f, p, "cls_head_finetune.0")), p, "cls_head_finetune.3")
    h = torch.relu(_batchnorm(_linear(f, p, "cls_head_finetune.0"), p, "cls_head_finetune.1"))
    h = torch.relu(_batchnorm(_linear(h, p, "cls_head_finetune.4"), p, "cls_head_finetune.5"))
    return _linear(h, p, "cls_head_finetune.8")


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_class", "overrides"),
    [(PointMAE, {}), (PointBERT, {"patch_dim": 20, "label_smoothing": 0.2})],
    ids=["point_mae", "point_bert"],
)
def test_forward_matches_the_hand_written_reference(model_class, overrides):
    torch.manual_seed(0)
    model = model_class(tiny_config(**overrides)).double().eval()
    randomize_norms(model)
    points = cloud(dtype=torch.float64)
    logits = model(points)
    assert_close(logits, reference_logits(model, points), rtol=1e-9, atol=1e-9)
    # the reference is sensitive to where positions are added: once only gives other logits
    once = reference_logits(model, points, pos_every_block=False)
    assert (logits - once).abs().max() > 1e-3


def test_positions_enter_every_block_input():
    """Block i's input is block i-1's output plus the positional embedding (cls_pos first)."""
    torch.manual_seed(0)
    model = PointMAE(tiny_config()).eval()
    inputs, outputs, pos = [], [], []
    for block in model.blocks.blocks:
        block.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach()))
        block.register_forward_hook(lambda _m, _a, out: outputs.append(out.detach()))
    model.pos_embed.register_forward_hook(lambda _m, _a, out: pos.append(out.detach()))
    model.encoder.register_forward_hook(lambda _m, _a, out: pos.append(out.detach()))
    with torch.no_grad():
        model(cloud())
    tokens, patch_pos = pos[0], pos[1]  # the encoder runs before pos_embed
    full_pos = torch.cat([model.cls_pos.expand(2, -1, -1), patch_pos], dim=1).detach()
    first = torch.cat([model.cls_token.expand(2, -1, -1), tokens], dim=1).detach() + full_pos
    assert_close(inputs[0], first)
    for i in range(1, model.config.depth):
        assert_close(inputs[i], outputs[i - 1] + full_pos)


def test_regression_pin_of_logits():
    """Values recorded once from this implementation (seeded init, fixed input, eval mode)."""
    torch.manual_seed(0)
    model = PointMAE(tiny_config()).eval()
    with torch.no_grad():
        logits = model(cloud())
    expected = torch.tensor(
        [
            [-0.298027, -0.008815, 0.107773, -0.045858, 0.212581],
            [-0.255332, -0.009126, 0.157944, -0.080785, 0.208952],
        ]
    )
    assert_close(logits, expected, rtol=0, atol=1e-4)


def test_features_are_cls_and_max_and_tokens_are_final_normed():
    torch.manual_seed(0)
    model = PointMAE(tiny_config()).double().eval()
    randomize_norms(model)
    points = cloud(dtype=torch.float64)
    tokens = model.forward_tokens(points)
    assert tokens.shape == (2, 1 + 8, 24)
    features = model.forward_features(points)
    assert_close(features, torch.cat([tokens[:, 0], tokens[:, 1:].amax(1)], -1))
    assert_close(features, reference_features(model, points)[0])


def test_patch_encoder_concatenates_global_before_per_point_and_ignores_point_order():
    torch.manual_seed(0)
    encoder = PatchEncoder(out_dim=7, hidden_dims=(4, 5)).double().eval()
    patches = torch.randn(2, 3, 6, 3, dtype=torch.float64)
    out = encoder(patches)
    shuffled = patches[:, :, torch.randperm(6)]
    assert_close(encoder(shuffled), out)
    # swap the halves of second_conv.0's input channels: [per-point ; global] would match instead
    with torch.no_grad():
        weight = encoder.second_conv[0].weight
        weight.copy_(torch.cat([weight[:, 5:], weight[:, :5]], dim=1))
    assert not torch.allclose(encoder(patches), out)
    with pytest.raises(ValueError, match=r"patches must have shape \(batch, num_groups"):
        encoder(torch.randn(2, 6, 3))


def test_point_bert_layout_has_reduce_dim_and_a_batchnorm_free_head():
    model = PointBERT(tiny_config(patch_dim=20))
    names = list(model.state_dict())
    assert "reduce_dim.weight" in names
    assert model.encoder.second_conv[3].out_channels == 20
    assert [n for n in names if n.startswith("cls_head_finetune")] == [
        "cls_head_finetune.0.weight",
        "cls_head_finetune.0.bias",
        "cls_head_finetune.3.weight",
        "cls_head_finetune.3.bias",
    ]
    assert "reduce_dim.weight" not in PointMAE(tiny_config()).state_dict()


def test_encoder_without_cls_token_has_no_cls_parameters():
    encoder = PointTransformerEncoder(tiny_config(), cls_token=False).eval()
    assert not any(name.startswith("cls_") for name in encoder.state_dict())
    assert encoder.forward_tokens(cloud()).shape == (2, 8, 24)
    with pytest.raises(RuntimeError, match="cls_token=False"):
        encoder.forward_features(cloud())


def test_initialisation_follows_the_official_recipe():
    torch.manual_seed(0)
    model = PointMAE(PointTransformerConfig.small())
    qkv = model.blocks.blocks[0].attn.qkv.weight
    assert qkv.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.cls_token.std().item() == pytest.approx(0.02, rel=0.5)
    assert torch.all(model.blocks.blocks[0].mlp.fc1.bias == 0)
    assert torch.all(model.norm.weight == 1)
    assert torch.all(model.encoder.first_conv[0].bias == 0)


def test_eval_output_of_one_cloud_does_not_depend_on_the_batch():
    torch.manual_seed(0)
    model = PointMAE(tiny_config()).eval()
    points = cloud(batch=3)
    with torch.no_grad():
        assert_close(model(points)[1:2], model(points[1:2]), rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = PointMAE(tiny_config()).train()
    logits = model(cloud(batch=4))
    model.loss(logits, torch.tensor([0, 1, 2, 3])).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_matches_cpu():
    torch.manual_seed(0)
    model = PointBERT(tiny_config(patch_dim=20)).double().eval()
    points = cloud(dtype=torch.float64)
    expected = model(points)
    assert_close(model.cuda()(points.cuda()).cpu(), expected)


def test_points_of_another_dtype_than_the_model_are_a_clear_error():
    model = PointMAE(tiny_config()).eval()
    points = torch.randn(2, 32, 3, dtype=torch.float64)  # what numpy's loadtxt gives
    with pytest.raises(TypeError, match=r"points are float64 but the model's weights are float32"):
        model(points)
    assert model(points.float()).shape == (2, 5)
    assert model.double()(points).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts for itself
        assert model.float()(points.float()).shape == (2, 5)
