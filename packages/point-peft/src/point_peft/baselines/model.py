"""``get_baseline_model``: the rows Point-PEFT is compared against, around the same backbone.

As :class:`~point_peft.method.PointPeftModel`, a :class:`BaselineModel` keeps the backbone whole
as ``model.backbone`` (official parameter names, checkpoints keep loading into it), adds its new
modules beside it (``adapters``, ``prompts``) and runs the backbone's pieces itself where they go
in between. Its forward has Point-PEFT's interface, so one training loop serves both: the loss
with ``labels``, ``sample_indices`` accepted (and unused), a :class:`PointPeftOutput`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import peft_core
from point_peft.baselines.adapters import BlockAdapter
from point_peft.baselines.config import BaselineConfig
from point_peft.baselines.prompts import DeepPrompts
from point_peft.baselines.trainable import TOKENS, trainable_patterns
from point_peft.method.model import (
    PointPeftModel,
    PointPeftOutput,
    frozen_batchnorms,
    no_weight_decay_names,
)
from point_peft.models import PointTransformerClassifier
from point_peft.models.encoder import pool_cls_and_max


class BaselineModel(nn.Module):
    """A Point-MAE / Point-BERT classifier fine-tuned as one baseline row. Build it with
    :func:`get_baseline_model`.

    Submodules: ``backbone`` (the classifier), and ``adapters`` (one
    :class:`~point_peft.baselines.adapters.BlockAdapter` per block, ``"adapter"``) or ``prompts``
    (:class:`~point_peft.baselines.prompts.DeepPrompts`, ``"vpt-deep"``); ``None`` otherwise.
    """

    def __init__(self, backbone: PointTransformerClassifier, config: BaselineConfig) -> None:
        super().__init__()
        self.baseline_config = config
        self.backbone = backbone
        backbone_config = backbone.config
        dim, depth = backbone_config.embed_dim, backbone_config.depth
        self.adapters: nn.ModuleList | None = None
        self.prompts: DeepPrompts | None = None
        if config.baseline == "adapter":
            self.adapters = nn.ModuleList(
                BlockAdapter(
                    dim,
                    config.bottleneck_dim,
                    dropout=config.adapter_dropout,
                    init=config.adapter_init,
                )
                for _ in range(depth)
            )
        elif config.baseline == "vpt-deep":
            self.prompts = DeepPrompts(
                depth, config.num_prompts, dim, dropout=config.prompt_dropout
            )
        # New modules are drawn on the CPU, then moved next to the backbone (also on "meta").
        reference = next(backbone.parameters())
        for module in (self.adapters, self.prompts):
            if module is not None:
                module.to(device=reference.device, dtype=reference.dtype)
        peft_core.freeze(self, trainable=trainable_patterns(config.baseline))
        self.train(backbone.training)

    @property
    def baseline(self) -> str:
        """The row: ``"full"``, ``"linear"``, ``"adapter"``, ``"vpt-deep"`` or ``"bitfit"``."""
        return self.baseline_config.baseline

    # -- modes --------------------------------------------------------------------------------
    def frozen_batchnorms(self) -> Iterator[_BatchNorm]:
        """The backbone's BatchNorms without a trainable parameter (the patch encoder's, except in
        ``"full"`` and ``"bitfit"``)."""
        return frozen_batchnorms(self.backbone)

    def train(self, mode: bool = True) -> BaselineModel:
        super().train(mode)
        if self.baseline_config.freeze_batchnorm_stats:
            for module in self.frozen_batchnorms():
                module.eval()
        return self

    # -- forward ------------------------------------------------------------------------------
    def forward_logits(self, points: torch.Tensor) -> torch.Tensor:
        """Class logits (batch, num_classes) of ``points`` (batch, N, 3)."""
        backbone = self.backbone
        if self.adapters is None and self.prompts is None:
            return backbone(points)
        tokens, pos, _, _ = backbone.embed(points)
        x, pos = backbone.prepend_cls(tokens, pos)
        for index, block in enumerate(backbone.blocks.blocks):
            x = x + pos  # positions before every block; prompts get none
            if self.prompts is not None:
                x = self.prompts.remove(block(self.prompts.insert(index, x)))
            else:
                x = self.adapters[index].run_block(block, x)
        return backbone.cls_head_finetune(pool_cls_and_max(backbone.norm(x)))

    def forward(
        self,
        points: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        sample_indices: torch.Tensor | None = None,
    ) -> PointPeftOutput:
        """Class logits of ``points`` (batch, N, 3), and the loss when ``labels`` are given.

        The output is Point-PEFT's (``output.logits``, ``output.loss``, a dict for the trainers),
        not the backbone's bare logits tensor. ``sample_indices`` (what
        :class:`~point_peft.method.WithSampleIndices` adds to a batch for Point-PEFT's query cache)
        is accepted and ignored, so that ``model(**batch)`` works for every row.
        """
        del sample_indices  # no query cache here
        logits = self.forward_logits(points)
        output = PointPeftOutput()
        if labels is not None:
            output["loss"] = self.backbone.loss(logits, labels)
        output["logits"] = logits
        return output

    # -- utilities ----------------------------------------------------------------------------
    def print_trainable_parameters(self) -> None:
        """``trainable params: … || all params: … || trainable%: …`` (Hugging Face peft's line)."""
        peft_core.print_trainable_parameters(self)

    def no_weight_decay(self) -> set[str]:
        """Trainable parameters AdamW should not decay (timm's convention): biases, 1-D tensors
        (norms) and the learned tokens (cls token and position, prompts)."""
        return no_weight_decay_names(self, TOKENS)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """``peft_core.save_trainable`` with this model's config: the trained tensors, the
        BatchNorm statistics and the cls token and position even where they stay frozen (see
        :attr:`BaselineConfig.saved_parameters`); ``peft_core.load(backbone, directory)`` rebuilds
        the model on any fresh load of the pre-train file."""
        return peft_core.save_trainable(self, directory, self.baseline_config)

    def extra_repr(self) -> str:
        return f"baseline={self.baseline!r}"


@peft_core.register_method("point_baseline", BaselineConfig)
def apply_baseline(backbone: PointTransformerClassifier, config: BaselineConfig) -> BaselineModel:
    """Wrap ``backbone`` as the baseline ``config`` describes (what ``peft_core.load`` calls)."""
    if isinstance(backbone, (PointPeftModel, BaselineModel)):
        raise ValueError(
            f"this model is already a {type(backbone).__name__} (pass its .backbone instead)"
        )
    if not isinstance(backbone, PointTransformerClassifier):
        raise TypeError(
            "a baseline needs a PointMAE or PointBERT classifier as backbone, got "
            f"{type(backbone).__name__}"
        )
    if not isinstance(config, BaselineConfig):
        raise TypeError(f"config must be a BaselineConfig, got {type(config).__name__}")
    return BaselineModel(backbone, config)


def get_baseline_model(
    backbone: PointTransformerClassifier, method: str, **options: Any
) -> BaselineModel:
    """Wrap a pre-trained ``backbone`` as the baseline row ``method``; only that row's tensors train.

    Args:
        backbone: a :class:`~point_peft.models.PointMAE` or :class:`~point_peft.models.PointBERT`
            classifier with its pre-trained weights (its head is new). It becomes
            ``model.backbone`` and is modified in place (``requires_grad``).
        method: one of :data:`~point_peft.baselines.BASELINE_METHODS`: ``"full"`` (everything
            trains), ``"linear"`` (the head only), ``"adapter"`` (bottleneck adapters after every
            block's MLP, plus cls token/pos, final norm, head), ``"vpt-deep"`` (fresh prompts
            before every block, plus cls token/pos, final norm, head), ``"bitfit"`` (every bias and
            the head); see :mod:`point_peft.baselines.trainable`.
        options: the row's options (:class:`~point_peft.baselines.BaselineConfig`):
            ``bottleneck_dim=16``, ``adapter_dropout=0.1``, ``adapter_init="zero_up"``
            (``"adapter"``); ``num_prompts=10``, ``prompt_dropout=0.1`` (``"vpt-deep"``);
            ``freeze_batchnorm_stats=False`` (every row).

    Raises:
        ValueError: an unknown ``method`` (the valid ones are listed) or a bad option value.
        TypeError: an option ``method`` does not take.

    Example:
        >>> import torch
        >>> from point_peft.models import PointMAE, PointTransformerConfig
        >>> _ = torch.manual_seed(0)
        >>> backbone = PointMAE(PointTransformerConfig.small(num_classes=4))
        >>> model = get_baseline_model(backbone, "adapter", bottleneck_dim=8)
        >>> model.print_trainable_parameters()
        trainable params: 23,972 || all params: 508,132 || trainable%: 4.7177
        >>> points = torch.rand(2, 256, 3, generator=torch.Generator().manual_seed(0))
        >>> output = model.eval()(points)  # zero-initialised adapters: exactly the backbone
        >>> torch.equal(output.logits, model.backbone(points))
        True
    """
    config = BaselineConfig.from_options(method, **options)
    return apply_baseline(backbone, config)
