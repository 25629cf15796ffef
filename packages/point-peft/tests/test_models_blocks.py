"""Transformer blocks: attention against explicit softmax math, DropPath statistics, positions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from point_peft.models import Attention, Block, DropPath, PositionalBlocks
from point_peft.models.blocks import drop_path_rates


def assert_close(actual, expected, *, rtol=1e-5, atol=1e-6):
    """Like torch.testing.assert_close (whose first call imports torch.distributed: seconds)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    difference = (actual - expected).abs()
    within = difference <= atol + rtol * expected.abs()
    assert bool(within.all()), f"max abs difference {difference.max().item():.3e}"


def reference_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d)) v per head, written out with explicit loops over heads."""
    dim = x.shape[-1]
    heads = attn.num_heads
    head_dim = dim // heads
    qkv = x @ attn.qkv.weight.T
    if attn.qkv.bias is not None:
        qkv = qkv + attn.qkv.bias
    q, k, v = qkv.split(dim, dim=-1)
    outputs = []
    for h in range(heads):
        sl = slice(h * head_dim, (h + 1) * head_dim)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(head_dim)
        outputs.append(scores.softmax(dim=-1) @ v[..., sl])
    return torch.cat(outputs, dim=-1) @ attn.proj.weight.T + attn.proj.bias


def reference_block(block: Block, x: torch.Tensor) -> torch.Tensor:
    eps = block.norm1.eps
    h = F.layer_norm(x, (x.shape[-1],), block.norm1.weight, block.norm1.bias, eps)
    x = x + reference_attention(block.attn, h)
    h = F.layer_norm(x, (x.shape[-1],), block.norm2.weight, block.norm2.bias, eps)
    hidden = F.gelu(h @ block.mlp.fc1.weight.T + block.mlp.fc1.bias)
    return x + hidden @ block.mlp.fc2.weight.T + block.mlp.fc2.bias


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_attention_matches_explicit_softmax(qkv_bias):
    torch.manual_seed(0)
    attn = Attention(dim=24, num_heads=3, qkv_bias=qkv_bias).double().eval()
    x = torch.randn(2, 7, 24, dtype=torch.float64)
    assert_close(attn(x), reference_attention(attn, x), rtol=1e-10, atol=1e-10)


def test_attention_has_no_qkv_bias_by_default_and_timm_names():
    attn = Attention(dim=12, num_heads=2)
    assert attn.qkv.bias is None
    assert [name for name, _ in attn.named_parameters()] == [
        "qkv.weight",
        "proj.weight",
        "proj.bias",
    ]


def test_attention_rejects_heads_that_do_not_divide_dim():
    with pytest.raises(ValueError, match="num_heads=5 must divide dim=12"):
        Attention(dim=12, num_heads=5)


def test_block_is_pre_layer_norm_residual():
    torch.manual_seed(1)
    block = Block(dim=16, num_heads=4).double().eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters, so that their use is checked
        for norm in (block.norm1, block.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_()
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    assert_close(block(x), reference_block(block, x), rtol=1e-10, atol=1e-10)


def test_block_parameter_names_are_timm_names():
    names = [name for name, _ in Block(dim=8, num_heads=2).named_parameters()]
    assert names == [
        "norm1.weight",
        "norm1.bias",
        "attn.qkv.weight",
        "attn.proj.weight",
        "attn.proj.bias",
        "norm2.weight",
        "norm2.bias",
        "mlp.fc1.weight",
        "mlp.fc1.bias",
        "mlp.fc2.weight",
        "mlp.fc2.bias",
    ]


def test_positional_blocks_add_pos_before_every_block():
    torch.manual_seed(2)
    stack = PositionalBlocks(dim=16, depth=3, num_heads=2).double().eval()
    x = torch.randn(2, 4, 16, dtype=torch.float64)
    pos = torch.randn(2, 4, 16, dtype=torch.float64)
    expected = x
    for block in stack.blocks:
        expected = reference_block(block, expected + pos)
    assert_close(stack(x, pos), expected, rtol=1e-10, atol=1e-10)
    once = x + pos
    for block in stack.blocks:
        once = reference_block(block, once)
    assert not torch.allclose(stack(x, pos), once, atol=1e-3)  # the test can tell the difference
    assert next(name for name, _ in stack.named_parameters()) == "blocks.0.norm1.weight"


def test_drop_path_rates_are_the_official_linspace():
    assert drop_path_rates(0.1, 12) == torch.linspace(0, 0.1, 12).tolist()
    assert drop_path_rates(0.1, 1) == [0.0]
    stack = PositionalBlocks(dim=8, depth=3, num_heads=2, drop_path=drop_path_rates(0.2, 3))
    assert [block.drop_path.rate for block in stack.blocks] == pytest.approx([0.0, 0.1, 0.2])


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(3)
    drop = DropPath(0.25).train()
    out = drop(torch.ones(20_000, 3, 2, dtype=torch.float64))
    per_sample = out.reshape(20_000, -1)
    # every sample is either entirely dropped or entirely scaled by 1 / 0.75
    assert set(per_sample.unique().tolist()) == {0.0, 4 / 3}
    assert torch.all(per_sample.amin(dim=1) == per_sample.amax(dim=1))
    kept = (per_sample[:, 0] > 0).double().mean().item()
    assert kept == pytest.approx(0.75, abs=0.015)
    assert out.mean().item() == pytest.approx(1.0, abs=0.02)


def test_drop_path_is_identity_in_eval_and_at_rate_zero():
    x = torch.randn(4, 3)
    assert DropPath(0.5).eval()(x) is x
    assert DropPath(0.0).train()(x) is x
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        DropPath(1.0)


def test_positional_blocks_check_the_number_of_rates():
    with pytest.raises(ValueError, match="2 rates for depth=3"):
        PositionalBlocks(dim=8, depth=3, num_heads=2, drop_path=[0.0, 0.1])
