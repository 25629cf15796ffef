"""Point-MAE and Point-BERT backbones, their official checkpoints, and Point-MAE pre-training.

Pure PyTorch (CPU and GPU). The classifiers' ``state_dict()`` keys are those of the official
fine-tuned checkpoints; :meth:`PointMAE.from_pretrained` / :meth:`PointBERT.from_pretrained` load
the official pre-train and fine-tuned files and report missing / unexpected keys by name.

Example:
    >>> import torch
    >>> from point_peft.models import PointMAE, PointMAEPretrainer, PointTransformerConfig
    >>> config = PointTransformerConfig.small(num_classes=10)
    >>> pretrainer = PointMAEPretrainer(config)
    >>> points = torch.rand(4, 256, 3, generator=torch.Generator().manual_seed(0))
    >>> pretrainer(points).loss.backward()
    >>> model, report = PointMAE.from_pretrained(
    ...     pretrainer.to_official_checkpoint(), config=config, output_loading_info=True
    ... )
    >>> report.kind, report.missing_keys[:2]
    ('point_mae_pretrain', ['cls_token', 'cls_pos'])
    >>> model.eval()(points).shape
    torch.Size([4, 10])
"""

from __future__ import annotations

from point_peft.models.blocks import Attention, Block, DropPath, Mlp, PositionalBlocks
from point_peft.models.chamfer import ChamferDistances, chamfer_distances, chamfer_l2
from point_peft.models.classifier import PointTransformerClassifier
from point_peft.models.config import PointTransformerConfig
from point_peft.models.encoder import PatchTokens, PointTransformerEncoder, pool_cls_and_max
from point_peft.models.heads import PointBERTHead, PointMAEHead
from point_peft.models.loading import (
    CHECKPOINT_KINDS,
    EXPECTED_MISSING,
    EXPECTED_UNEXPECTED,
    PretrainedLoadReport,
    convert_checkpoint,
    detect_checkpoint_kind,
    load_checkpoint_file,
    load_pretrained,
    read_checkpoint,
)
from point_peft.models.losses import smoothed_cross_entropy
from point_peft.models.patch_encoder import PatchEncoder
from point_peft.models.point_bert import PointBERT
from point_peft.models.point_mae import PointMAE
from point_peft.models.pretraining import (
    MaskedPatchDecoder,
    PointMAEPretrainer,
    PretrainOutput,
    random_patch_mask,
)

__all__ = [
    "CHECKPOINT_KINDS",
    "EXPECTED_MISSING",
    "EXPECTED_UNEXPECTED",
    "Attention",
    "Block",
    "ChamferDistances",
    "DropPath",
    "MaskedPatchDecoder",
    "Mlp",
    "PatchEncoder",
    "PatchTokens",
    "PointBERT",
    "PointBERTHead",
    "PointMAE",
    "PointMAEHead",
    "PointMAEPretrainer",
    "PointTransformerClassifier",
    "PointTransformerConfig",
    "PointTransformerEncoder",
    "PositionalBlocks",
    "PretrainOutput",
    "PretrainedLoadReport",
    "chamfer_distances",
    "chamfer_l2",
    "convert_checkpoint",
    "detect_checkpoint_kind",
    "load_checkpoint_file",
    "load_pretrained",
    "pool_cls_and_max",
    "random_patch_mask",
    "read_checkpoint",
    "smoothed_cross_entropy",
]
