"""The Point-BERT classifier (Yu et al., CVPR 2022), with the official fine-tuned parameter names."""

from __future__ import annotations

from point_peft.models.classifier import PointTransformerClassifier
from point_peft.models.heads import PointBERTHead


class PointBERT(PointTransformerClassifier):
    """Point-BERT's ``PointTransformer``: a 256-wide mini-PointNet, ``reduce_dim`` to 384, 12 blocks.

    Feature = [cls ; max over patch tokens] after the final LayerNorm, then :class:`PointBERTHead`
    (no BatchNorm); :meth:`loss` smooths labels by 0.2 by default, as Point-BERT fine-tunes.
    ``state_dict()`` has exactly the keys of an official fine-tuned Point-BERT checkpoint;
    :meth:`from_pretrained` also loads the pre-train file (``transformer_q.*``).

    Example:
        >>> import torch
        >>> from point_peft.models import PointTransformerConfig
        >>> model = PointBERT(PointTransformerConfig.small(patch_dim=64, num_classes=10)).eval()
        >>> points = torch.rand(2, 256, 3, generator=torch.Generator().manual_seed(0))
        >>> model(points).shape
        torch.Size([2, 10])
        >>> official = PointBERT.default_config()
        >>> official.patch_dim, official.label_smoothing
        (256, 0.2)
    """

    checkpoint_family = "point_bert"
    head_class = PointBERTHead
