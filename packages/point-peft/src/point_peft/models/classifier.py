"""What the Point-MAE and Point-BERT classifiers share: head, loss and ``from_pretrained``."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from peft_core import CheckpointError
from point_peft.models.config import PointTransformerConfig
from point_peft.models.encoder import PointTransformerEncoder, pool_cls_and_max
from point_peft.models.loading import (
    checkpoint_family,
    detect_checkpoint_kind,
    load_pretrained,
    read_checkpoint,
)
from point_peft.models.losses import smoothed_cross_entropy

_HEAD_WEIGHT = re.compile(r"cls_head_finetune\.(\d+)\.weight")


class PointTransformerClassifier(PointTransformerEncoder):
    """A :class:`PointTransformerEncoder` with a cls token and a ``cls_head_finetune`` head.

    Subclasses set ``checkpoint_family`` (``"point_mae"`` or ``"point_bert"``, which also names the
    :class:`PointTransformerConfig` preset of their official architecture) and ``head_class``.
    """

    checkpoint_family: ClassVar[str]
    head_class: ClassVar[type[nn.Sequential]]

    @classmethod
    def default_config(cls, **overrides: Any) -> PointTransformerConfig:
        """The official architecture of this family, with ``overrides`` applied."""
        return getattr(PointTransformerConfig, cls.checkpoint_family)(**overrides)

    def __init__(self, config: PointTransformerConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = self.default_config(**overrides)
        elif overrides:
            config = config.replace(**overrides)
        super().__init__(config, cls_token=True)
        self.cls_head_finetune = self.head_class(
            2 * config.embed_dim, config.num_classes, config.head_hidden_dim, config.head_dropout
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Class logits (batch, num_classes) of point clouds ``points`` (batch, N, 3)."""
        return self.cls_head_finetune(pool_cls_and_max(self.forward_tokens(points)))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with the config's label smoothing (Point-BERT's formula)."""
        return smoothed_cross_entropy(logits, labels, self.config.label_smoothing)

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike | Mapping[str, Any],
        num_classes: int | None = None,
        *,
        config: PointTransformerConfig | None = None,
        strict: bool = True,
        weights_only: bool = True,
        drop_head: bool = False,
        output_loading_info: bool = False,
        **config_overrides: Any,
    ) -> Any:
        """Build the classifier and load an official pre-train or fine-tuned checkpoint into it.

        Args:
            source: a checkpoint file (``torch.save``'d dict with ``"base_model"``) or the dict.
            num_classes: classes of the head. Defaults to the checkpoint's head (fine-tuned
                files), else to ``config.num_classes`` when a config is given; otherwise required.
            config: the architecture; defaults to the official one (:meth:`default_config`).
                Checkpoints do not record ``num_heads``, ``num_groups`` or ``group_size``: pass
                them when they differ from the official values.
            strict: refuse missing / unexpected keys outside the layout's expected lists (see
                :mod:`point_peft.models.loading`); ``False`` warns instead.
            weights_only: read files with ``torch.load(weights_only=True)``.
            drop_head: leave a fine-tuned file's head out and start a new one of
                ``num_classes`` (a classifier fine-tuned on one task, fine-tuned on another).
            output_loading_info: also return the :class:`PretrainedLoadReport`.
            config_overrides: fields of :class:`PointTransformerConfig` to change.

        Returns:
            The model (in train mode, as ``nn.Module`` starts), or ``(model, report)``.
        """
        state = read_checkpoint(source, weights_only=weights_only)
        kind = detect_checkpoint_kind(state)
        if checkpoint_family(kind) != cls.checkpoint_family:
            raise CheckpointError(
                f"this is a {kind} checkpoint; {cls.__name__} loads {cls.checkpoint_family}_* "
                "checkpoints (use PointMAE for Point-MAE files, PointBERT for Point-BERT files)"
            )
        if num_classes is None and not drop_head:
            num_classes = head_classes(state)
        if num_classes is None and config is not None:
            num_classes = config.num_classes
        if num_classes is None:
            raise ValueError(
                f"num_classes is required: a {kind} checkpoint has no classification head to "
                "take it from (or pass a config that sets it)"
            )
        base = config if config is not None else cls.default_config()
        model = cls(base.replace(num_classes=num_classes, **config_overrides))
        report = load_pretrained(model, state, strict=strict, drop_head=drop_head)
        return (model, report) if output_loading_info else model


def head_classes(state: Mapping[str, torch.Tensor]) -> int | None:
    """Output size of the last Linear of a saved ``cls_head_finetune``, if there is one."""
    last = max(
        (
            (int(match.group(1)), tensor)
            for name, tensor in state.items()
            if (match := _HEAD_WEIGHT.fullmatch(name)) and tensor.dim() == 2
        ),
        default=None,
        key=lambda item: item[0],
    )
    return None if last is None else int(last[1].shape[0])
