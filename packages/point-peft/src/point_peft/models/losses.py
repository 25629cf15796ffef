"""Classification loss with Point-BERT's label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy against smoothed one-hot targets, as Point-BERT fine-tunes (ε = 0.2).

    The true class gets probability ``1 - ε`` and each of the other ``C - 1`` classes ``ε / (C - 1)``.
    This differs from ``F.cross_entropy(label_smoothing=ε)``, which spreads ``ε`` over all ``C``
    classes including the true one. With ``smoothing=0`` it is plain cross-entropy.

    Args:
        logits: (batch, C) unnormalised scores.
        labels: (batch,) integer class indices (any integer dtype, or a (batch, 1) column).
        smoothing: ε in [0, 1).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0]])
        >>> labels = torch.tensor([0])
        >>> round(smoothed_cross_entropy(logits, labels, 0.2).item(), 4)  # 0.8·0.2395 + 0.2·2.2395
        0.6395
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, num_classes), got {tuple(logits.shape)}")
    labels = labels.reshape(-1).long()
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels has {labels.shape[0]} entries for a batch of {logits.shape[0]} logits"
        )
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if smoothing == 0.0:
        return F.cross_entropy(logits, labels)
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError("label smoothing needs at least 2 classes")
    log_probs = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=1)
    target = torch.full_like(log_probs, smoothing / (num_classes - 1))
    target.scatter_(1, labels[:, None], 1.0 - smoothing)
    return -(target * log_probs).sum(dim=1).mean()
