"""A tiny token classifier and a learnable synthetic task: fast enough for unit tests on CPU."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset


class _Block(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.dropout(self.act(self.fc1(self.norm(x)))))


class TinyClassifier(nn.Module):
    """Embedding → pre-LN MLP blocks → masked mean pool → linear head; Hugging Face-style I/O.

    ``forward(input_ids, attention_mask=None, labels=None)`` returns a dict with ``logits`` and, when
    labels are given, the cross-entropy ``loss``.
    """

    def __init__(
        self,
        vocab_size: int = 32,
        dim: int = 16,
        num_layers: int = 2,
        num_labels: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList(_Block(dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        hidden = self.embed(input_ids)
        for block in self.blocks:
            hidden = block(hidden)
        hidden = self.norm(hidden)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        logits = self.classifier(pooled)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


class TokenParityDataset(Dataset):
    """Random token sequences of varied length; label 1 when low tokens outnumber high ones.

    Learnable by :class:`TinyClassifier` in a few dozen steps, deterministic for a given seed.
    """

    def __init__(
        self, size: int = 64, vocab_size: int = 32, max_length: int = 12, seed: int = 0
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.examples = []
        for _ in range(size):
            length = int(torch.randint(4, max_length + 1, (1,), generator=generator))
            tokens = torch.randint(1, vocab_size, (length,), generator=generator)
            label = int((tokens < vocab_size // 2).sum() * 2 > length)
            self.examples.append({"input_ids": tokens.tolist(), "labels": label})

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


def collate_token_batches(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Pad ``input_ids`` with 0 to the longest example and build the attention mask."""
    longest = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.zeros(len(examples), longest, dtype=torch.long)
    attention_mask = torch.zeros(len(examples), longest, dtype=torch.long)
    for row, example in enumerate(examples):
        ids = torch.tensor(example["input_ids"])
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    labels = torch.tensor([e["labels"] for e in examples])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
