"""What ``point-peft train`` fine-tunes: a pre-trained backbone, adapted by one method.

- :func:`load_backbone`: a Point-MAE / Point-BERT classifier from a pre-train checkpoint (default:
  the small Point-MAE of :func:`~point_peft.default_backbone_checkpoint`) with a new head.
- :func:`point_peft_config_for`: Point-PEFT's settings scaled to a backbone (the reference's at the
  official size).
- :func:`adapt`: Point-PEFT (memory bank built first) or a baseline
  (:func:`point_peft.baselines.get_baseline_model`).
- :class:`ClassificationLoss`: the trainer's ``compute_loss``: augment the batch, classify, and
  time the steps.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from peft_core import ConfigError, MethodConfig
from point_peft.data import Compose, RandomRotation, Scale, ScaleAndTranslate
from point_peft.finetuning_choices import AUGMENTATIONS, METHODS
from point_peft.models import (
    PointBERT,
    PointMAE,
    PointTransformerClassifier,
    PointTransformerConfig,
    detect_checkpoint_kind,
    load_checkpoint_file,
    read_checkpoint,
    smoothed_cross_entropy,
)
from point_peft.models.classifier import head_classes
from point_peft.models.loading import checkpoint_family


def augmentation(name: str):
    """The batch augmentation called ``name`` (``None`` for ``"none"``)."""
    if name == "scale-rotate":
        return Compose([Scale(0.9, 1.1), RandomRotation("y")])
    if name == "scale-translate":
        return ScaleAndTranslate()
    if name == "none":
        return None
    raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {name!r}")


# -- the backbone ---------------------------------------------------------------------------------


def _model_class(state: dict[str, torch.Tensor]) -> type[PointTransformerClassifier]:
    family = checkpoint_family(detect_checkpoint_kind(state))
    return PointMAE if family == "point_mae" else PointBERT


def backbone_config_of(
    checkpoint: str | os.PathLike | Mapping[str, Any],
) -> PointTransformerConfig:
    """The architecture of a backbone file: the one a ``point-peft pretrain`` file records, else
    the official one of the file's family (Point-MAE's or Point-BERT's: their patch widths and
    label smoothing differ). ``checkpoint``: the file, or what
    :func:`~point_peft.models.load_checkpoint_file` read from it."""
    from point_peft.pretrained import read_pretrained_config

    raw = checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint_file(checkpoint)
    state = read_checkpoint(raw)  # a clear error if it holds no state dict
    try:
        return read_pretrained_config(raw)
    except ValueError:  # an official file: it records no architecture
        return _model_class(state).default_config()


def load_backbone(
    checkpoint: str | os.PathLike | None,
    num_classes: int,
    *,
    config: PointTransformerConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[PointTransformerClassifier, dict[str, Any]]:
    """A classifier with the pre-trained encoder of ``checkpoint`` and a new ``num_classes`` head.

    Args:
        checkpoint: an official-layout Point-MAE or Point-BERT pre-train file, or a fine-tuned
            classifier (its head is kept for ``num_classes`` classes, and replaced by a new one
            for another count). ``None``: the default small backbone, built and cached on first
            use.
        config: its architecture. Default: the one a ``point-peft pretrain`` file records, else
            the official architecture of the file's family (official files record none; pass
            ``num_groups`` / ``group_size`` here when they differ from 64 / 32).

    Returns:
        The model (a new head initialised from torch's global RNG: seed first) and a
        description for the result: path, checkpoint kind, architecture, missing and unexpected
        keys, and the class count of a fine-tuned head left out (``dropped_head_classes``).
    """
    from point_peft.pretrained import default_backbone_checkpoint

    default = checkpoint is None
    path = Path(
        default_backbone_checkpoint(cache_dir, progress=progress) if default else checkpoint
    )
    if not path.is_file():
        raise FileNotFoundError(f"no backbone checkpoint at {path}")
    raw = load_checkpoint_file(path)  # read once: the weights and any recorded architecture
    state = read_checkpoint(raw)
    model_class = _model_class(state)
    if config is None:
        config = backbone_config_of(raw)
    # A classifier fine-tuned on another task has a head of another class count: the encoder
    # is what a backbone lends, so that head gives way to a new one.
    file_classes = head_classes(state)
    drop_head = file_classes is not None and file_classes != num_classes
    model, report = model_class.from_pretrained(
        state, num_classes=num_classes, config=config.replace(num_classes=num_classes),
        drop_head=drop_head, output_loading_info=True,
    )  # fmt: skip
    description = {
        "checkpoint": "default small Point-MAE" if default else str(path),
        "kind": report.kind,
        "config": model.config.to_dict(),
        "missing_keys": report.missing_keys,
        "unexpected_keys": report.unexpected_keys,
        "dropped_head_classes": file_classes if drop_head else None,
    }
    return model, description


# -- the method -----------------------------------------------------------------------------------


def point_peft_config_for(backbone_config: PointTransformerConfig, **overrides: Any):
    """Point-PEFT's settings for a backbone, scaled by its depth and tokens per cloud.

    Prompts in the first half of the blocks; GA-Adapter anchors on half of the tokens, each with
    up to 16 neighbours; queries and memory bank with the backbone's patch size on at most 64
    patches. At the reference's ScanObjectNN size (12 blocks, 128 × 32 patches) these are its
    values (6 prompted layers, 64 anchors of 16, 64 × 32 query patches); on the small default
    backbone (4 blocks, 32 × 16): 2 prompted layers, 16 anchors of 8, 32 × 16 query patches.

    Example:
        >>> small = point_peft_config_for(PointTransformerConfig.small())
        >>> small.prompt_layers, small.ga_anchors, small.ga_neighbors, small.query_num_groups
        (2, 16, 8, 32)
        >>> scan = point_peft_config_for(PointTransformerConfig.point_mae(num_groups=128))
        >>> scan.prompt_layers, scan.ga_anchors, scan.ga_neighbors, scan.query_num_groups
        (6, 64, 16, 64)
    """
    from point_peft.method import PointPeftConfig

    tokens = backbone_config.num_groups
    values: dict[str, Any] = {
        "prompt_layers": max(1, backbone_config.depth // 2),
        "ga_anchors": max(1, tokens // 2),
        "ga_neighbors": max(1, min(16, tokens // 4)),
        "query_num_groups": min(64, tokens),
        "query_group_size": backbone_config.group_size,
    }
    return PointPeftConfig(**{**values, **overrides})


def adapt(
    backbone: PointTransformerClassifier,
    method: str,
    options: dict[str, Any],
    train_data: Any,
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[nn.Module, MethodConfig | None, dict[str, Any]]:
    """Apply ``method`` to ``backbone``: ``(model, its saved config or None, a description)``.

    Point-PEFT first builds its memory bank from ``train_data`` (no augmentation) with the frozen
    backbone; ``options`` override fields of :func:`point_peft_config_for`. A baseline gets the
    ``options`` as keyword arguments of ``get_baseline_model``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if method != "point-peft":
        from point_peft.baselines import get_baseline_model

        model = get_baseline_model(backbone, method, **options)
        return model, getattr(model, "baseline_config", None), {"options": dict(options)}

    from point_peft.method import build_memory_bank, get_point_peft_model

    config = point_peft_config_for(backbone.config, **options)
    if len(train_data) < config.top_k:
        raise ConfigError(
            f"Point-PEFT retrieves the top_k={config.top_k} nearest of the memory bank's entries, "
            f"one per training cloud, but there are only {len(train_data)}: use more training "
            f"data, or a smaller top_k (and num_prompts = top_k + 2) as method options"
        )
    started = time.perf_counter()
    loader = DataLoader(train_data, batch_size=batch_size, shuffle=False)
    bank = build_memory_bank(
        backbone, loader, num_groups=config.query_num_groups,
        group_size=config.query_group_size, progress=progress,
    )  # fmt: skip
    bank_seconds = time.perf_counter() - started
    model = get_point_peft_model(backbone, config, memory_bank=bank)
    description = {
        "options": dict(options),
        "config": config.to_dict(),
        "memory_bank": {"size": bank.size, "dim": bank.dim, "seconds": bank_seconds},
    }
    return model, config, description


# -- the loss -------------------------------------------------------------------------------------


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output: a tensor, or a dict / object with ``logits``."""
    if isinstance(output, torch.Tensor):
        return output
    logits = output.get("logits") if isinstance(output, dict) else getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"the model returned {type(output).__name__} without logits")
    return logits


class ClassificationLoss:
    """``compute_loss`` for the peft-core trainer: augment, classify, smoothed cross-entropy.

    The augmentation draws from torch's global random state, which the trainer checkpoints: a
    resumed run draws what an uninterrupted one would. ``sample_indices`` of the batch are passed
    on to the model when ``pass_sample_indices`` (Point-PEFT's query cache). Each training call
    is timestamped; the gaps between consecutive calls are the step times (forward, backward,
    optimizer and data included).
    """

    def __init__(
        self, augment: Any, label_smoothing: float, *, pass_sample_indices: bool = False
    ) -> None:
        self.augment = augment
        self.label_smoothing = label_smoothing
        self.pass_sample_indices = pass_sample_indices
        self.call_times: list[float] = []

    def __call__(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Any]:
        points = batch["points"]
        if model.training:
            self.call_times.append(time.perf_counter())
            if self.augment is not None:
                points = self.augment(points)
        extra = {}
        if self.pass_sample_indices and "sample_indices" in batch:
            extra["sample_indices"] = batch["sample_indices"]
        logits = logits_of(model(points, **extra))
        loss = smoothed_cross_entropy(logits, batch["labels"], self.label_smoothing)
        return loss, {"logits": logits}

    def step_times(self) -> dict[str, Any] | None:
        """Median / min / max seconds per step (the first step, with its warm-up, left out)."""
        gaps = [
            later - earlier
            for earlier, later in zip(self.call_times[:-1], self.call_times[1:], strict=True)
        ]
        gaps = gaps[1:] if len(gaps) > 1 else gaps
        if not gaps:
            return None
        return {
            "median_s": statistics.median(gaps),
            "min_s": min(gaps),
            "max_s": max(gaps),
            "steps_timed": len(gaps),
        }
