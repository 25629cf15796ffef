"""Pre-LN ViT blocks with timm's parameter names, and the stack that adds positions before each.

Parameter names follow timm's ``VisionTransformer`` (``norm1``, ``attn.qkv``, ``attn.proj``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``), which is what the official Point-MAE / Point-BERT checkpoints
use, so their tensors load by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def drop_path_rates(max_rate: float, depth: int) -> list[float]:
    """Stochastic-depth rate of every block: ``linspace(0, max_rate, depth)``, as the official code.

    Example:
        >>> [round(rate, 3) for rate in drop_path_rates(0.1, 3)]
        [0.0, 0.05, 0.1]
    """
    # On the CPU explicitly, so that building a model under `with torch.device("meta")` works.
    return torch.linspace(0, max_rate, depth, device="cpu").tolist()


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole sample's branch with probability ``rate``.

    Kept samples are scaled by ``1 / (1 - rate)`` so that the expectation is unchanged; in eval mode
    (or with ``rate == 0``) this is the identity. Draws from the global RNG.

    Example:
        >>> drop = DropPath(0.5).train()
        >>> out = drop(torch.ones(1000, 2, 3))
        >>> sorted(out.unique().tolist())
        [0.0, 2.0]
    """

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}"


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection; scale ``head_dim ** -0.5``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: num_heads={num_heads} must divide dim={dim}")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, dim // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # The fused kernel computes softmax(q kᵀ / sqrt(head_dim)) v, exactly the official math,
        # without materialising the attention matrix for backward on the efficient backends.
        dropout = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(batch, length, dim)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    """``fc2(drop(GELU(fc1(x))))`` followed by dropout."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``.

    Example:
        >>> block = Block(dim=32, num_heads=4)
        >>> block(torch.randn(2, 5, 32)).shape
        torch.Size([2, 5, 32])
        >>> sorted({name.split(".")[0] for name, _ in block.named_parameters()})
        ['attn', 'mlp', 'norm1', 'norm2']
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PositionalBlocks(nn.Module):
    """A stack of :class:`Block` that adds the positional embedding to the input of EVERY block.

    Point-MAE and Point-BERT re-inject ``pos`` before each block (``x = block(x + pos)``) instead of
    adding it once at the input. The blocks live in ``self.blocks`` so that parameter names read
    ``blocks.{i}.…`` below this module, as in the official checkpoints.

    Example:
        >>> stack = PositionalBlocks(dim=32, depth=2, num_heads=4)
        >>> x, pos = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
        >>> stack(x, pos).shape
        torch.Size([2, 5, 32])
        >>> stack.eval()(x, pos).equal(stack.blocks[1](stack.blocks[0](x + pos) + pos))
        True
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float | Sequence[float] = 0.0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        rates = [float(drop_path)] * depth if isinstance(drop_path, (int, float)) else drop_path
        if len(rates) != depth:
            raise ValueError(f"drop_path has {len(rates)} rates for depth={depth}")
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, rate, layer_norm_eps)
            for rate in rates
        )

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + pos)
        return x
