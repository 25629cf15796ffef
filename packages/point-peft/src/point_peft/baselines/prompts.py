"""The "vpt-deep" baseline's prompts: fresh learned tokens before every block (Jia et al., 2022).

Block ``l`` sees ``[cls ; P_l ; point tokens]``: the ``num_prompts`` learned tokens ``P_l`` go in
after the cls token, get no positional embedding (the positions are added to cls and point tokens
before the prompts go in) and their outputs are dropped after the block, so the next block gets
its own fresh prompts. That is the layout of Point-PEFT's point-prior prompts, with learned
embeddings only (no memory-bank context): the classifier's ``[cls ; max]`` feature reads real
tokens only. Embeddings start trunc-normal (std 0.02), as Point-PEFT's.
"""

from __future__ import annotations

import torch
from torch import nn

from point_peft.models.encoder import trunc_normal_


class DeepPrompts(nn.Module):
    """``embeddings`` (depth × num_prompts × dim): the prompts of every block.

    Example:
        >>> prompts = DeepPrompts(depth=2, num_prompts=3, dim=8, dropout=0.0)
        >>> x = torch.randn(4, 1 + 5, 8)  # cls + 5 point tokens
        >>> with_prompts = prompts.insert(0, x)
        >>> with_prompts.shape
        torch.Size([4, 9, 8])
        >>> torch.equal(prompts.remove(with_prompts), x)
        True
    """

    def __init__(self, depth: int, num_prompts: int, dim: int, *, dropout: float = 0.1) -> None:
        super().__init__()
        self.embeddings = nn.Parameter(torch.zeros(depth, num_prompts, dim))
        trunc_normal_(self.embeddings, std=0.02)
        self.dropout = nn.Dropout(dropout)

    @property
    def num_prompts(self) -> int:
        return self.embeddings.shape[1]

    def insert(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, 1 + G, dim) → (batch, 1 + num_prompts + G, dim) with layer ``layer``'s
        prompts after the cls token."""
        # Expanded before the dropout, so that every sample drops its own prompt entries.
        prompts = self.dropout(self.embeddings[layer].expand(x.shape[0], -1, -1))
        return torch.cat([x[:, :1], prompts.to(x.dtype), x[:, 1:]], dim=1)

    def remove(self, x: torch.Tensor) -> torch.Tensor:
        """Drop the prompt outputs: (batch, 1 + num_prompts + G, dim) → (batch, 1 + G, dim)."""
        return torch.cat([x[:, :1], x[:, 1 + self.num_prompts :]], dim=1)

    def extra_repr(self) -> str:
        depth, num_prompts, dim = self.embeddings.shape
        return f"depth={depth}, num_prompts={num_prompts}, dim={dim}"
