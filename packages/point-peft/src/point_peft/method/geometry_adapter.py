"""The geometry-aware adapter (GA-Adapter): local attention in groups of tokens, propagated back.

Once per forward, :func:`plan_groups` picks anchors by farthest point sampling over the token
centres and gives each anchor its nearest centres. In every layer, after the FFN, each group runs
a small multi-head attention (shared by all layers, with a shared LayerNorm) and is max-pooled; the
pooled feature goes through the layer's own BatchNorm and GELU and gets ``ga_scale`` times the
anchor's token added; the anchors' features are then interpolated back to every point token with
inverse-squared-distance weights and added with weight ``propagate_scale``. A residual bottleneck
adapter over the sequence follows.

In prompted layers the prompt tokens join the grouping through learnable 3-D coordinates: the
point set is [prompt coordinates ; token centres] and the features [prompt outputs ; point
tokens], indexed per sample. (The reference built neighbour indices over the 128 centres of the
whole batch and used them on the 138 rows per sample of prompts and tokens: every sample but the
first read other rows.) Only point tokens receive propagated features.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from peft_core import BottleneckAdapter
from point_peft.ops import farthest_point_sample, index_points, interpolate_inverse_distance, knn


class Grouping(NamedTuple):
    """Where the GA-Adapter's groups are, for one kind of layer (prompted or not).

    Indices point into the per-sample feature set ``[prompt tokens ; point tokens]`` (without
    prompts when ``num_prompts`` is 0), whose coordinates are ``[prompt_xyz ; centers]``.
    """

    anchor_indices: torch.Tensor  # (batch, A) int64
    neighbor_indices: torch.Tensor  # (batch, A, k) int64, nearest first (the anchor itself first)
    anchor_xyz: torch.Tensor  # (batch, A, 3), differentiable w.r.t. the prompt coordinates
    centers: torch.Tensor  # (batch, G, 3) the point tokens' centres, which receive features
    num_prompts: int  # rows of prompt tokens in front of the point tokens in the feature set


def plan_groups(
    centers: torch.Tensor,
    num_anchors: int,
    num_neighbors: int,
    *,
    prompt_xyz: torch.Tensor | None = None,
    start: str = "first",
) -> Grouping:
    """FPS anchors over ``[prompt_xyz ; centers]`` and each anchor's nearest points among them.

    Args:
        centers: (batch, G, 3) token centres.
        num_anchors: anchors per cloud (at most the number of points in the set).
        num_neighbors: points per group (at most the number of points in the set).
        prompt_xyz: (P, 3) coordinates of the prompt tokens (shared by the batch), or ``None``.
        start: farthest point sampling's start rule (the backbone's ``fps_start``).

    Example:
        >>> centers = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [6, 0, 0]]])
        >>> grouping = plan_groups(centers, num_anchors=2, num_neighbors=2)
        >>> grouping.anchor_indices, grouping.neighbor_indices
        (tensor([[0, 3]]), tensor([[[0, 1],
                 [3, 2]]]))
    """
    points = centers
    num_prompts = 0
    if prompt_xyz is not None:
        num_prompts = prompt_xyz.shape[0]
        prompts = prompt_xyz.to(centers.dtype).unsqueeze(0).expand(centers.shape[0], -1, -1)
        points = torch.cat([prompts, centers], dim=1)
    anchor_indices = farthest_point_sample(points, num_anchors, start=start)
    anchor_xyz = index_points(points, anchor_indices)
    neighbor_indices = knn(anchor_xyz.detach(), points.detach(), num_neighbors).indices
    return Grouping(anchor_indices, neighbor_indices, anchor_xyz, centers, num_prompts)


class LocalAttention(nn.Module):
    """Multi-head self-attention inside each group, in a narrow inner width (6 heads × 3 = 18).

    ``qkv``: Linear(dim, 3 · heads · head_dim, no bias); ``proj``: Linear(heads · head_dim, dim);
    the logits are scaled by ``(heads · head_dim) ** -0.5`` as in the reference (not by
    ``head_dim ** -0.5``). Linear layers keep PyTorch's default initialisation, as the reference's
    did when it loaded a checkpoint.

    Example:
        >>> attention = LocalAttention(dim=12, heads=2, head_dim=3)
        >>> attention(torch.randn(5, 4, 12)).shape
        torch.Size([5, 4, 12])
    """

    def __init__(self, dim: int, heads: int = 6, head_dim: int = 3) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        inner = heads * head_dim
        self.scale = inner**-0.5
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (groups, length, dim) → the same shape."""
        return self.attend(self.qkv(x))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention and output projection from already projected ``qkv`` (groups, length,
        3 · heads · head_dim) → (groups, length, dim)."""
        groups, length, _ = qkv.shape
        qkv = qkv.reshape(groups, length, 3, self.heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(groups, length, self.heads * self.head_dim))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}, scale={self.scale:.4g}"


class SharedGroupAttention(nn.Module):
    """The GA-Adapter parts shared by all layers: ``N ← N + DropPath(LocalAttn(LN(N)))``."""

    def __init__(self, dim: int, heads: int = 6, head_dim: int = 3, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.attention = LocalAttention(dim, heads, head_dim)

    def forward(self, groups: torch.Tensor, drop_path: nn.Module) -> torch.Tensor:
        """``groups`` (batch, A, k, dim) → the same shape; ``drop_path`` drops whole groups."""
        batch, anchors, size, dim = groups.shape
        flat = groups.reshape(batch * anchors, size, dim)
        flat = flat + drop_path(self.attention(self.norm(flat)))
        return flat.reshape(batch, anchors, size, dim)

    def grouped(
        self, features: torch.Tensor, neighbor_indices: torch.Tensor, drop_path: nn.Module
    ) -> torch.Tensor:
        """``forward`` on the groups ``features[b, neighbor_indices[b]]``, without normalising
        and projecting each token once per group it falls in.

        LayerNorm and the qkv projection act per token, so they commute with the gather: here
        they run over the (batch, T, dim) feature set and the gather picks up the narrow qkv rows
        (3 · 18 wide instead of dim). Each token sits in about k groups, so this does ~k times
        less of that work, and autograd keeps no (batch, A, k, dim) tensor of normalised tokens.
        """
        batch, anchors, size = neighbor_indices.shape
        qkv = index_points(self.attention.qkv(self.norm(features)), neighbor_indices)
        update = self.attention.attend(qkv.reshape(batch * anchors, size, qkv.shape[-1]))
        groups = index_points(features, neighbor_indices)
        update = drop_path(update).reshape(batch, anchors, size, -1)
        return groups + update


class GeometryAwareAdapter(nn.Module):
    """The per-layer part of the GA-Adapter: the anchors' BatchNorm and the residual adapter.

    Args:
        dim: token width.
        residual_dim: bottleneck of the residual adapter ``x ← x + A(x)`` (QuickGELU).
        ga_scale: weight of the anchor's own token in its group feature.
        propagate_scale: weight of the propagated features added to the point tokens.
        adapter_dropout: dropout inside the residual adapter.
        adapter_init: the residual adapter's initialisation (see :class:`peft_core.BottleneckAdapter`).

    Example:
        >>> shared = SharedGroupAttention(dim=8, heads=2, head_dim=3)
        >>> adapter = GeometryAwareAdapter(dim=8, residual_dim=4, adapter_dropout=0.0).eval()
        >>> centers = torch.rand(2, 10, 3, generator=torch.Generator().manual_seed(0))
        >>> grouping = plan_groups(centers, num_anchors=4, num_neighbors=3)
        >>> tokens = torch.randn(2, 1 + 10, 8)  # [cls ; point tokens]
        >>> adapter(tokens, None, grouping, shared, nn.Identity()).shape
        torch.Size([2, 11, 8])
    """

    def __init__(
        self,
        dim: int,
        residual_dim: int = 16,
        *,
        ga_scale: float = 0.3,
        propagate_scale: float = 0.3,
        adapter_dropout: float = 0.1,
        adapter_init: str = "xavier",
    ) -> None:
        super().__init__()
        self.ga_scale = float(ga_scale)
        self.propagate_scale = float(propagate_scale)
        self.anchor_norm = nn.BatchNorm1d(dim)
        self.activation = nn.GELU()
        self.residual_adapter = BottleneckAdapter(
            dim, residual_dim, "quick_gelu", dropout=adapter_dropout, residual=True,
            init=adapter_init,
        )  # fmt: skip

    def anchor_features(
        self,
        features: torch.Tensor,
        grouping: Grouping,
        shared: SharedGroupAttention,
        drop_path: nn.Module,
    ) -> torch.Tensor:
        """``f_j = GELU(BN(max over group j of LocalAttn-updated tokens)) + ga_scale · x[anchor_j]``.

        ``features`` (batch, P + G, dim) is the feature set the grouping's indices point into.
        """
        groups = shared.grouped(features, grouping.neighbor_indices, drop_path)
        # max, not amax: its backward needs only the argmax indices, where amax's keeps the
        # whole (batch, A, k, dim) groups for the backward pass.
        pooled = groups.max(dim=2).values  # (batch, A, dim)
        pooled = self.activation(self.anchor_norm(pooled.transpose(1, 2)).transpose(1, 2))
        return pooled + self.ga_scale * index_points(features, grouping.anchor_indices)

    def propagate(
        self, point_tokens: torch.Tensor, grouping: Grouping, anchor_features: torch.Tensor
    ) -> torch.Tensor:
        """``x_i + propagate_scale · Σ_j w_ij f_j`` with ``w_ij ∝ 1 / (|c_i - a_j|² + 1e-8)``."""
        propagated = interpolate_inverse_distance(
            grouping.centers, grouping.anchor_xyz, anchor_features, power=2.0, eps=1e-8
        )
        return point_tokens + self.propagate_scale * propagated

    def forward(
        self,
        tokens: torch.Tensor,
        prompt_tokens: torch.Tensor | None,
        grouping: Grouping,
        shared: SharedGroupAttention,
        drop_path: nn.Module,
    ) -> torch.Tensor:
        """``tokens`` (batch, 1 + G, dim) = [cls ; point tokens] after the block's FFN; the layer's
        prompt outputs (batch, P, dim) when the grouping includes prompts. Returns [cls ; point
        tokens] updated, residual adapter applied."""
        cls_token, point_tokens = tokens[:, :1], tokens[:, 1:]
        if grouping.num_prompts:
            if prompt_tokens is None or prompt_tokens.shape[1] != grouping.num_prompts:
                raise ValueError(
                    f"this grouping includes {grouping.num_prompts} prompt tokens; pass the "
                    "layer's prompt outputs"
                )
            features = torch.cat([prompt_tokens, point_tokens], dim=1)
        else:
            features = point_tokens
        if self.propagate_scale != 0.0:
            anchors = self.anchor_features(features, grouping, shared, drop_path)
            point_tokens = self.propagate(point_tokens, grouping, anchors)
        # The adapter acts per token, so leaving the (discarded) prompt outputs out changes nothing.
        return self.residual_adapter(torch.cat([cls_token, point_tokens], dim=1))

    def extra_repr(self) -> str:
        return f"ga_scale={self.ga_scale:g}, propagate_scale={self.propagate_scale:g}"
