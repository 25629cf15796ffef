"""The GA-Adapter, the FFN adapter and the prompt module against hand-written references.

The brute-force GA-Adapter below works on one sample at a time with explicit loops over anchors
and tokens and plain tensor math (its own FPS, neighbour sort, LayerNorm, per-head attention,
BatchNorm, GELU and inverse-squared-distance weights); only the parameters come from the modules.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from point_peft.method import (
    FfnAdapter,
    GeometryAwareAdapter,
    LocalAttention,
    PointPriorPrompt,
    SharedGroupAttention,
    plan_groups,
)
from point_peft.models import Block
from point_peft.models.blocks import DropPath
from point_peft.ops import index_points

sys.path.insert(0, str(Path(__file__).parent))
from method_helpers import randomize_batchnorms

pytestmark = pytest.mark.usefixtures("one_thread")

DIM, HEADS, HEAD_DIM = 8, 2, 3


def brute_force_fps(points: torch.Tensor, count: int) -> list[int]:
    chosen = [0]
    nearest = ((points - points[0]) ** 2).sum(dim=1)
    while len(chosen) < count:
        nearest[chosen] = -1.0
        chosen.append(int(nearest.argmax()))
        nearest = torch.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(dim=1))
    return chosen


def layer_norm(x, norm):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def local_attention(x, attention: LocalAttention):
    """x (k, dim): per-head softmax(q kᵀ · (heads·head_dim)^-½) v, concatenated, projected."""
    qkv = x @ attention.qkv.weight.t()  # (k, 3 · heads · head_dim)
    inner = HEADS * HEAD_DIM
    heads = []
    for head in range(HEADS):
        part = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
        q, k, v = (
            qkv[:, :inner][:, part],
            qkv[:, inner : 2 * inner][:, part],
            qkv[:, 2 * inner :][:, part],
        )
        weights = torch.softmax(q @ k.t() / math.sqrt(inner), dim=-1)
        heads.append(weights @ v)
    return torch.cat(heads, dim=-1) @ attention.proj.weight.t() + attention.proj.bias


def quick_gelu_adapter(x, adapter):
    hidden = x @ adapter.down.weight.t() + adapter.down.bias
    hidden = hidden * torch.sigmoid(1.702 * hidden)
    return hidden @ adapter.up.weight.t() + adapter.up.bias


def brute_force_ga(tokens, prompts, centers, prompt_xyz, adapter, shared, anchors, neighbors):
    """One sample: tokens (1 + G, C) = [cls ; points], prompts (P, C) or None, centers (G, 3)."""
    points = tokens[1:]
    xyz = centers if prompt_xyz is None else torch.cat([prompt_xyz, centers])
    features = points if prompts is None else torch.cat([prompts, points])
    anchor_rows = brute_force_fps(xyz, anchors)
    anchor_features = []
    for row in anchor_rows:
        distances = ((xyz - xyz[row]) ** 2).sum(dim=1)
        group_rows = torch.argsort(distances, stable=True)[:neighbors]
        group = features[group_rows]
        group = group + local_attention(layer_norm(group, shared.norm), shared.attention)
        pooled = group.max(dim=0).values
        norm = adapter.anchor_norm
        pooled = (pooled - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
        pooled = pooled * norm.weight + norm.bias
        pooled = 0.5 * pooled * (1 + torch.erf(pooled / math.sqrt(2)))
        anchor_features.append(pooled + adapter.ga_scale * features[row])
    updated = points.clone()
    for i in range(points.shape[0]):
        weights = [
            1.0 / (float(((centers[i] - xyz[row]) ** 2).sum()) + 1e-8) for row in anchor_rows
        ]
        total = sum(weights)
        propagated = sum(w / total * f for w, f in zip(weights, anchor_features, strict=True))
        updated[i] = points[i] + adapter.propagate_scale * propagated
    sequence = torch.cat([tokens[:1], updated])
    return sequence + quick_gelu_adapter(sequence, adapter.residual_adapter)


def make_ga(seed=0):
    torch.manual_seed(seed)
    shared = SharedGroupAttention(DIM, HEADS, HEAD_DIM)
    adapter = GeometryAwareAdapter(DIM, residual_dim=4, adapter_dropout=0.1)
    with torch.no_grad():  # non-trivial LayerNorm and BatchNorm affines
        for module in (shared.norm, adapter.anchor_norm):
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.2, 0.2)
    randomize_batchnorms(adapter, seed)
    return shared.double().eval(), adapter.double().eval()


def sample_inputs(batch=3, tokens=12, prompts=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    centers = torch.rand(batch, tokens, 3, generator=generator, dtype=torch.float64) * 2 - 1
    sequence = torch.randn(batch, 1 + tokens, DIM, generator=generator, dtype=torch.float64)
    prompt_tokens = torch.randn(batch, prompts, DIM, generator=generator, dtype=torch.float64)
    prompt_xyz = torch.rand(prompts, 3, generator=generator, dtype=torch.float64) * 0.2
    return sequence, prompt_tokens, centers, prompt_xyz


@pytest.mark.parametrize("with_prompts", [False, True], ids=["plain", "prompted"])
def test_ga_adapter_equals_brute_force_loops(with_prompts):
    shared, adapter = make_ga()
    sequence, prompt_tokens, centers, prompt_xyz = sample_inputs()
    if not with_prompts:
        prompt_tokens = prompt_xyz = None
    grouping = plan_groups(centers, num_anchors=5, num_neighbors=4, prompt_xyz=prompt_xyz)
    with torch.no_grad():
        output = adapter(sequence, prompt_tokens, grouping, shared, nn.Identity())
        for b in range(sequence.shape[0]):
            expected = brute_force_ga(
                sequence[b], None if prompt_tokens is None else prompt_tokens[b], centers[b],
                prompt_xyz, adapter, shared, anchors=5, neighbors=4,
            )  # fmt: skip
            torch.testing.assert_close(output[b], expected, rtol=1e-10, atol=1e-10)


def test_propagation_is_inverse_squared_distance_to_point_tokens_only():
    _, adapter = make_ga()
    sequence, _, centers, prompt_xyz = sample_inputs(batch=2)
    grouping = plan_groups(centers, num_anchors=5, num_neighbors=4, prompt_xyz=prompt_xyz)
    generator = torch.Generator().manual_seed(9)
    anchor_features = torch.randn(2, 5, DIM, generator=generator, dtype=torch.float64)
    points = sequence[:, 1:]
    result = adapter.propagate(points, grouping, anchor_features)
    assert result.shape == points.shape  # 12 point tokens; the 4 prompts receive nothing
    for b in range(2):
        for i in range(points.shape[1]):
            weights = torch.stack(
                [1.0 / (((centers[b, i] - a) ** 2).sum() + 1e-8) for a in grouping.anchor_xyz[b]]
            )
            expected = points[b, i] + 0.3 * (weights / weights.sum()) @ anchor_features[b]
            torch.testing.assert_close(result[b, i], expected, rtol=1e-12, atol=1e-12)


def reference_style_groups(features, grouping, rows_in_grouping_set):
    """The reference's gather: per-sample indices offset by ``b * rows_in_grouping_set`` into the
    features of the whole batch flattened, where each sample has ``features.shape[1]`` rows."""
    batch, rows, dim = features.shape
    offsets = torch.arange(batch).view(batch, 1, 1) * rows_in_grouping_set
    flat = features.reshape(batch * rows, dim)
    return flat[(grouping.neighbor_indices + offsets).clamp_max(batch * rows - 1)]


def test_prompt_coordinate_indexing_is_correct_for_every_sample():
    """Batched prompted-layer GA-Adapter == each sample alone; the reference's offsets are not."""
    shared, adapter = make_ga()
    sequence, prompt_tokens, centers, prompt_xyz = sample_inputs(batch=4)
    grouping = plan_groups(centers, num_anchors=5, num_neighbors=4, prompt_xyz=prompt_xyz)
    with torch.no_grad():
        batched = adapter(sequence, prompt_tokens, grouping, shared, nn.Identity())
        for b in range(4):
            alone = plan_groups(centers[b : b + 1], 5, 4, prompt_xyz=prompt_xyz)
            single = adapter(
                sequence[b : b + 1], prompt_tokens[b : b + 1], alone, shared, nn.Identity()
            )
            torch.testing.assert_close(batched[b : b + 1], single, rtol=1e-12, atol=1e-12)

        # What the reference did: offsets of G = 12 rows per sample into 4 + 12 rows per sample.
        features = torch.cat([prompt_tokens, sequence[:, 1:]], dim=1)
        ours = adapter.anchor_features(features, grouping, shared, nn.Identity())
        correct_groups = torch.stack([features[b][grouping.neighbor_indices[b]] for b in range(4)])
        misaligned = reference_style_groups(features, grouping, rows_in_grouping_set=12)
        assert torch.equal(misaligned[0], correct_groups[0])  # the first sample is right ...
        for b in range(1, 4):  # ... every other sample reads rows of other samples
            assert not torch.equal(misaligned[b], correct_groups[b])
        # our groups are the per-sample ones
        pooled = shared(correct_groups, nn.Identity()).amax(dim=2)
        pooled = adapter.activation(adapter.anchor_norm(pooled.transpose(1, 2)).transpose(1, 2))
        anchors = torch.stack([features[b][grouping.anchor_indices[b]] for b in range(4)])
        torch.testing.assert_close(ours, pooled + 0.3 * anchors)


def test_plan_groups_spans_prompts_and_points_per_sample():
    _, _, centers, prompt_xyz = sample_inputs(batch=3, tokens=12, prompts=4)
    grouping = plan_groups(centers, num_anchors=6, num_neighbors=5, prompt_xyz=prompt_xyz)
    assert grouping.num_prompts == 4
    assert grouping.anchor_indices.shape == (3, 6)
    assert grouping.neighbor_indices.shape == (3, 6, 5)
    assert int(grouping.neighbor_indices.max()) < 16
    # each group starts with its anchor, and anchor_xyz are the coordinates of the anchors
    assert torch.equal(grouping.neighbor_indices[..., 0], grouping.anchor_indices)
    for b in range(3):
        xyz = torch.cat([prompt_xyz, centers[b]])
        assert torch.equal(grouping.anchor_xyz[b], xyz[grouping.anchor_indices[b]])
        assert grouping.anchor_indices[b].tolist() == brute_force_fps(xyz, 6)


def test_prompt_coordinates_learn_through_the_propagation_weights():
    shared, adapter = make_ga()
    adapter.train()
    sequence, prompt_tokens, centers, prompt_xyz = sample_inputs(batch=2)
    prompt_xyz = prompt_xyz.clone().requires_grad_(True)
    grouping = plan_groups(centers, num_anchors=5, num_neighbors=4, prompt_xyz=prompt_xyz)
    assert int(grouping.anchor_indices[0, 0]) == 0  # FPS starts at prompt coordinate 0
    adapter(sequence, prompt_tokens, grouping, shared, nn.Identity()).square().sum().backward()
    assert prompt_xyz.grad is not None
    assert float(prompt_xyz.grad[0].abs().sum()) > 0


def test_local_attention_scale_is_that_of_the_inner_width():
    attention = LocalAttention(DIM, HEADS, HEAD_DIM).double()
    assert attention.scale == pytest.approx(18**-0.5 if HEADS * HEAD_DIM == 18 else 6**-0.5)
    x = torch.randn(3, 5, DIM, dtype=torch.float64)
    with torch.no_grad():
        for group in range(3):
            torch.testing.assert_close(attention(x)[group], local_attention(x[group], attention))
    official = LocalAttention(384)  # 6 heads × 3: qkv 384 → 54 without bias, proj 18 → 384
    assert official.qkv.weight.shape == (54, 384)
    assert official.qkv.bias is None
    assert official.proj.weight.shape == (384, 18)
    assert official.scale == pytest.approx(18**-0.5)


def test_zero_propagation_leaves_only_the_residual_adapter():
    shared, _ = make_ga()
    adapter = GeometryAwareAdapter(DIM, 4, propagate_scale=0.0).double().eval()
    sequence, _, centers, _ = sample_inputs()
    grouping = plan_groups(centers, 5, 4)
    with torch.no_grad():
        out = adapter(sequence, None, grouping, shared, nn.Identity())
        expected = sequence + quick_gelu_adapter(sequence, adapter.residual_adapter)
    torch.testing.assert_close(out, expected)


def test_ffn_adapter_adds_the_scaled_bottleneck_of_the_ffn_branch():
    torch.manual_seed(0)
    block = Block(dim=DIM, num_heads=2).double().eval()
    adapter = FfnAdapter(DIM, 4, scale=0.7, dropout=0.1).double().eval()
    x = torch.randn(2, 5, DIM, dtype=torch.float64)
    with torch.no_grad():
        after_attention = x + block.attn(block.norm1(x))
        h = block.mlp(block.norm2(after_attention))
        expected = after_attention + h + 0.7 * quick_gelu_adapter(h, adapter)
        torch.testing.assert_close(adapter.run_block(block, x), expected)
        nn.init.zeros_(adapter.up.weight)
        nn.init.zeros_(adapter.up.bias)
        torch.testing.assert_close(adapter.run_block(block, x), block(x), rtol=0, atol=0)
    # the frozen block keeps its timm names: nothing was added to it
    assert {name for name, _ in block.named_parameters()} == {
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
        "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
        "mlp.fc2.bias",
    }  # fmt: skip


def test_prompt_is_embeddings_plus_context_plus_adapted_context():
    torch.manual_seed(0)
    prompt = PointPriorPrompt(DIM, num_prompts=6, adapter_dim=3).double().eval()
    assert prompt.embeddings.std().item() == pytest.approx(0.02, rel=0.5)  # trunc-normal 0.02
    context = torch.randn(2, 6, DIM, dtype=torch.float64)
    with torch.no_grad():
        expected = prompt.embeddings + context + quick_gelu_adapter(context, prompt.adapter)
        torch.testing.assert_close(prompt(context), expected)
        # in training, each sample drops its own prompt entries
        prompt.train()
        prompt.adapter.eval()
        torch.manual_seed(1)
        dropped = prompt(context) - context - prompt.adapter(context)
        assert not torch.equal(dropped[0], dropped[1])
        kept = dropped.abs() > 1e-9  # (the rest are zeros up to rounding of C + A - C - A)
        assert 0 < int(kept.sum()) < kept.numel()
        torch.testing.assert_close(
            dropped, torch.where(kept, prompt.embeddings.expand(2, -1, -1) / 0.9, 0.0)
        )
    with pytest.raises(ValueError, match="context must have shape \\(batch, 6, 8\\)"):
        prompt(torch.zeros(2, 5, DIM, dtype=torch.float64))


def test_grouped_attention_equals_attention_on_gathered_groups():
    """LayerNorm and qkv before the gather (per token) == on every gathered group, drop path too."""
    shared, _ = make_ga()
    sequence, prompt_tokens, centers, prompt_xyz = sample_inputs(batch=3)
    features = torch.cat([prompt_tokens, sequence[:, 1:]], dim=1).requires_grad_(True)
    grouping = plan_groups(centers, num_anchors=5, num_neighbors=4, prompt_xyz=prompt_xyz)
    drop_path = DropPath(0.5).train()
    results = []
    for grouped in (True, False):
        torch.manual_seed(3)  # the same groups dropped in both
        if grouped:
            out = shared.grouped(features, grouping.neighbor_indices, drop_path)
        else:
            out = shared(index_points(features, grouping.neighbor_indices), drop_path)
        (gradient,) = torch.autograd.grad(out.sin().sum(), features)
        results.append((out, gradient))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-12)


def test_anchor_features_keep_no_per_group_token_tensor_for_backward():
    """Autograd keeps no (batch, A, k, dim) tensor of grouped tokens: per group only the narrow
    attention tensors (qkv: 3 · heads · head_dim = 18 wide, against dim = 64 here) and gather
    indices (expanded views of one index per row); what is dim wide is per token or per anchor."""
    dim = 64
    shared = SharedGroupAttention(dim, HEADS, HEAD_DIM).double()
    adapter = GeometryAwareAdapter(dim, residual_dim=4).double()
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 16, dim, generator=generator, dtype=torch.float64)
    features.requires_grad_(True)
    centers = torch.rand(2, 16, 3, generator=generator, dtype=torch.float64)
    grouping = plan_groups(centers, num_anchors=12, num_neighbors=5)
    storage_bytes = []

    def record(tensor):
        storage_bytes.append(tensor.untyped_storage().nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(record, lambda tensor: tensor):
        adapter.anchor_features(features, grouping, shared, nn.Identity())
    grouped_tokens_bytes = 2 * 12 * 5 * dim * features.element_size()
    assert len(storage_bytes) > 5, "too little saved: the check would pass vacuously"
    assert max(storage_bytes) < grouped_tokens_bytes / 2, sorted(storage_bytes)[-3:]
