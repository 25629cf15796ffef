"""The "adapter" baseline's layer: a plain bottleneck adapter after the MLP of a frozen block.

``h = DropPath(MLP(LN2(x)))`` is the block's FFN branch; the adapter reads it and adds its output
next to it, ``x = x + h + A(h)`` with ``A = up(dropout(GELU(down(h))))`` (dim → 16 → dim). This is
the sequential adapter of Houlsby / Pfeiffer (``h ← h + A(h)`` before the residual add) and the
placement of Point-PEFT's own FFN adapter, without Point-PEFT's 0.7 scale and QuickGELU. With the
default ``init="zero_up"`` the up projection starts at zero, so the model starts exactly at the
backbone.
"""

from __future__ import annotations

import torch
from torch import nn

from peft_core import BottleneckAdapter
from point_peft.method.ffn_adapter import run_block_with_ffn_adapter


class BlockAdapter(BottleneckAdapter):
    """A bottleneck adapter on one block's FFN output, and the frozen block run with it.

    Example:
        >>> from point_peft.models import Block
        >>> block = Block(dim=16, num_heads=4).eval()
        >>> adapter = BlockAdapter(16, 4)  # zero_up: changes nothing yet
        >>> x = torch.randn(2, 5, 16)
        >>> torch.equal(adapter.run_block(block, x), block(x))
        True
    """

    def __init__(
        self, dim: int, bottleneck: int = 16, *, dropout: float = 0.1, init: str = "zero_up"
    ) -> None:
        super().__init__(dim, bottleneck, "gelu", dropout=dropout, residual=False, init=init)

    def run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The pre-LN ``block`` on ``x`` with this adapter after its MLP."""
        return run_block_with_ffn_adapter(block, x, self)
