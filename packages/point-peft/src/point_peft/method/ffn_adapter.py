"""The FFN adapter: a bottleneck on the output of each frozen block's FFN branch.

``x = x + h + scale · A(h)`` with ``h = DropPath(MLP(LN(x)))`` the frozen FFN branch and ``A`` a
bottleneck adapter (dim → 16 → dim, QuickGELU, dropout, no inner residual), ``scale`` 0.7.

The block itself is not modified: :meth:`FfnAdapter.run_block` runs its sub-modules (timm names
``norm1``, ``attn``, ``norm2``, ``mlp``, ``drop_path``) in the order of
:class:`point_peft.models.Block`, so its parameters keep their official names and checkpoints keep
loading into the backbone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from peft_core import BottleneckAdapter


def run_block_with_ffn_adapter(
    block: nn.Module, x: torch.Tensor, adapter: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The pre-LN ``block`` on ``x`` with ``adapter`` on its FFN branch: ``x + h + adapter(h)``.

    ``h = DropPath(MLP(LN2(x)))`` after the attention residual, in :class:`point_peft.models.Block`'s
    order; with an adapter that returns zeros this is exactly ``block(x)``.
    """
    x = x + block.drop_path(block.attn(block.norm1(x)))
    h = block.drop_path(block.mlp(block.norm2(x)))
    return x + h + adapter(h)


class FfnAdapter(BottleneckAdapter):
    """``scale · up(dropout(QuickGELU(down(h))))``, and the frozen block run with it.

    Example:
        >>> from point_peft.models import Block
        >>> block = Block(dim=16, num_heads=4).eval()
        >>> adapter = FfnAdapter(16, 4, scale=0.7, init="zero_up")
        >>> x = torch.randn(2, 5, 16)
        >>> torch.allclose(adapter.run_block(block, x), block(x))  # a zero adapter changes nothing
        True
    """

    def __init__(
        self,
        dim: int,
        bottleneck: int = 16,
        *,
        scale: float = 0.7,
        dropout: float = 0.1,
        init: str = "xavier",
    ) -> None:
        super().__init__(dim, bottleneck, "quick_gelu", dropout=dropout, residual=False, init=init)
        self.scale = float(scale)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale * super().forward(h)

    def run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The pre-LN ``block`` on ``x`` with this adapter on its FFN branch's output."""
        return run_block_with_ffn_adapter(block, x, self)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale:g}"
