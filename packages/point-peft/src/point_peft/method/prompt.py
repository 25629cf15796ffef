"""The point-prior prompt of one layer: learned embeddings plus the adapted memory-bank context.

``P_l = Dropout(E_l) + C + A_l(C)``: ``E_l`` (num_prompts × dim) is learned (trunc-normal 0.02),
``C`` are the context tokens of :func:`~point_peft.method.retrieval.retrieve` and ``A_l`` a
bottleneck adapter (dim → 8 → dim, QuickGELU, dropout). The prompts are inserted after the cls
token, get no positional embedding, and their outputs are dropped after the layer: every prompted
layer starts from fresh prompts (VPT-deep).
"""

from __future__ import annotations

import torch
from torch import nn

from peft_core import BottleneckAdapter
from point_peft.models.encoder import trunc_normal_


class PointPriorPrompt(nn.Module):
    """The prompt tokens of one prompted layer.

    Example:
        >>> prompt = PointPriorPrompt(dim=16, num_prompts=4, adapter_dim=2, dropout=0.0).eval()
        >>> context = torch.randn(3, 4, 16)
        >>> prompts = prompt(context)
        >>> prompts.shape
        torch.Size([3, 4, 16])
        >>> torch.allclose(prompts, prompt.embeddings + context + prompt.adapter(context))
        True
    """

    def __init__(
        self,
        dim: int,
        num_prompts: int,
        adapter_dim: int,
        *,
        dropout: float = 0.1,
        adapter_dropout: float = 0.1,
        adapter_init: str = "xavier",
    ) -> None:
        super().__init__()
        self.embeddings = nn.Parameter(torch.zeros(num_prompts, dim))
        trunc_normal_(self.embeddings, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.adapter = BottleneckAdapter(
            dim, adapter_dim, "quick_gelu", dropout=adapter_dropout, init=adapter_init
        )

    @property
    def num_prompts(self) -> int:
        return self.embeddings.shape[0]

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """(batch, num_prompts, dim) prompts from the (batch, num_prompts, dim) context tokens."""
        if context.dim() != 3 or context.shape[1:] != self.embeddings.shape:
            raise ValueError(
                f"context must have shape (batch, {self.num_prompts}, {self.embeddings.shape[1]}), "
                f"got {tuple(context.shape)}"
            )
        # Expanded before the dropout, so that every sample drops its own prompt entries.
        embeddings = self.dropout(self.embeddings.expand(context.shape[0], -1, -1))
        return embeddings + context + self.adapter(context)
