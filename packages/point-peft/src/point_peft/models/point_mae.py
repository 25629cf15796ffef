"""The Point-MAE classifier (Pang et al., ECCV 2022), with the official fine-tuned parameter names."""

from __future__ import annotations

from point_peft.models.classifier import PointTransformerClassifier
from point_peft.models.heads import PointMAEHead


class PointMAE(PointTransformerClassifier):
    """Point-MAE's ``PointTransformer``: grouping, mini-PointNet tokens, 12 × 384 blocks, BN head.

    Feature = [cls ; max over patch tokens] after the final LayerNorm, then :class:`PointMAEHead`.
    ``state_dict()`` has exactly the keys of an official fine-tuned Point-MAE checkpoint, so
    :meth:`from_pretrained` loads those files as they are, and pre-train files (``MAE_encoder.*``)
    with a new head.

    Example:
        >>> import torch
        >>> from point_peft.models import PointTransformerConfig
        >>> model = PointMAE(PointTransformerConfig.small(num_classes=10)).eval()
        >>> points = torch.rand(2, 256, 3, generator=torch.Generator().manual_seed(0))
        >>> model(points).shape
        torch.Size([2, 10])
        >>> official = PointMAE.default_config(num_classes=15)
        >>> official.embed_dim, official.depth, official.patch_dim
        (384, 12, None)
    """

    checkpoint_family = "point_mae"
    head_class = PointMAEHead
