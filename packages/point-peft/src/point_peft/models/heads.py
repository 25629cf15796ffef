"""The fine-tuning classification heads of Point-MAE and Point-BERT (``cls_head_finetune``).

Both are ``nn.Sequential`` so that their parameter names carry the official indices
(``cls_head_finetune.0.weight`` …). They start from PyTorch's default initialisation, which is
what the official fine-tuning starts from when it loads a pre-trained encoder.
"""

from __future__ import annotations

from torch import nn


class PointMAEHead(nn.Sequential):
    """Linear → BN → ReLU → Dropout → Linear → BN → ReLU → Dropout → Linear (indices 0 … 8).

    Example:
        >>> import torch
        >>> head = PointMAEHead(768, num_classes=15)
        >>> [name for name, _ in head.named_parameters()][-2:]
        ['8.weight', '8.bias']
        >>> head.eval()(torch.randn(4, 768)).shape
        torch.Size([4, 15])
    """

    def __init__(
        self, in_dim: int, num_classes: int, hidden_dim: int = 256, dropout: float = 0.5
    ) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )


class PointBERTHead(nn.Sequential):
    """Linear → ReLU → Dropout → Linear (indices 0 … 3); no BatchNorm.

    Example:
        >>> head = PointBERTHead(768, num_classes=40)
        >>> [name for name, _ in head.named_parameters()]
        ['0.weight', '0.bias', '3.weight', '3.bias']
    """

    def __init__(
        self, in_dim: int, num_classes: int, hidden_dim: int = 256, dropout: float = 0.5
    ) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )
