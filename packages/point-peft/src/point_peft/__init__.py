"""Point-PEFT: parameter-efficient fine-tuning of pre-trained 3D point-cloud transformers (Tang et al., AAAI 2024).

Available now:

- :mod:`point_peft.ops`: farthest point sampling, kNN, grouping and inverse-distance interpolation
  in pure PyTorch (no compiled extensions).
- :mod:`point_peft.models`: Point-MAE and Point-BERT with the official parameter names, loaders
  for the official pre-train and fine-tuned checkpoints, and Point-MAE masked-autoencoder
  pre-training.
- :mod:`point_peft.data`: ModelNet40 / ScanObjectNN readers, a procedural shapes dataset and the
  standard augmentations.
- :mod:`point_peft.corpora`: real meshes from Debian packages (KiCad CAD categories, CGAL demos).
- ``point-peft pretrain`` (:func:`pretrain`) and :func:`default_backbone_checkpoint`, a small
  Point-MAE pre-trained here once and cached.
- :mod:`point_peft.method`: the Point-PEFT method — memory-bank builder, point-prior prompt,
  geometry-aware adapter, FFN adapter — as :func:`get_point_peft_model`.
- :mod:`point_peft.baselines`: the rows it is compared against (full fine-tuning, linear probe,
  adapters, VPT-deep, BitFit) as :func:`get_baseline_model` (:data:`BASELINE_METHODS`).
- :mod:`point_peft.evaluation`: :func:`evaluate`, overall and mean class accuracy, with voting over
  scale-and-translate augmented copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from peft_core.lazy_exports import lazy_exports

__version__ = "0.1.0.dev0"

if TYPE_CHECKING:  # what type checkers and editors read; at run time each name is imported on use
    from point_peft.baselines import (
        BASELINE_METHODS,
        BaselineConfig,
        BaselineModel,
        get_baseline_model,
    )
    from point_peft.evaluation import evaluate
    from point_peft.method import (
        MemoryBank,
        PointPeftConfig,
        PointPeftModel,
        PointPeftOutput,
        WithSampleIndices,
        build_memory_bank,
        get_point_peft_model,
    )
    from point_peft.models import (
        PointBERT,
        PointMAE,
        PointMAEPretrainer,
        PointTransformerConfig,
        PointTransformerEncoder,
        PretrainedLoadReport,
        chamfer_l2,
        load_pretrained,
    )
    from point_peft.pretrained import default_backbone_checkpoint, load_default_backbone
    from point_peft.pretraining_recipe import PretrainingRecipe, pretrain

# `point-peft --help` and usage errors should not wait seconds for torch
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "point_peft.baselines": [
            "BASELINE_METHODS", "BaselineConfig", "BaselineModel", "get_baseline_model",
        ],
        "point_peft.evaluation": ["evaluate"],
        "point_peft.method": [
            "MemoryBank", "PointPeftConfig", "PointPeftModel", "PointPeftOutput",
            "WithSampleIndices", "build_memory_bank", "get_point_peft_model",
        ],
        "point_peft.models": [
            "PointBERT", "PointMAE", "PointMAEPretrainer", "PointTransformerConfig",
            "PointTransformerEncoder", "PretrainedLoadReport", "chamfer_l2", "load_pretrained",
        ],
        "point_peft.pretrained": ["default_backbone_checkpoint", "load_default_backbone"],
        "point_peft.pretraining_recipe": ["PretrainingRecipe", "pretrain"],
    },
)  # fmt: skip
