"""DEFT as one line in peft-core's Trainer: the density loss as an extra loss term."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from deft.loss import DEFAULT_EPS
from peft_core.trainer.callbacks import TrainerCallback

if TYPE_CHECKING:
    from deft.monitor import DensityMonitor
    from peft_core.trainer import Trainer


class DensityLossCallback(TrainerCallback):
    """Adds ``weight · monitor.loss(...)`` to the task loss, masked by the batch's tokens.

    The masks come from the batch: ``attention_mask``, and for encoder-decoder models
    ``decoder_attention_mask`` or the ``labels`` (-100 marks decoder padding);
    ``count_padding=True`` averages over pads too, as the reference implementation does. Logged
    as ``density_loss`` (the weighted term).

    Example:
        >>> from peft_core.testing import TinyClassifier
        >>> from deft.monitor import DensityMonitor
        >>> model = TinyClassifier()
        >>> callback = DensityLossCallback(DensityMonitor(model), weight=1.0)
        >>> batch = {"input_ids": torch.randint(0, 32, (2, 4)), "attention_mask": torch.ones(2, 4)}
        >>> outputs = model(**batch)
        >>> callback.extra_loss(None, batch, outputs).shape
        torch.Size([])
    """

    name = "density_loss"

    def __init__(
        self,
        monitor: DensityMonitor,
        weight: float = 1.0,
        eps: float = DEFAULT_EPS,
        *,
        count_padding: bool = False,
    ):
        if not weight >= 0:
            raise ValueError(f"weight must be a non-negative number, got {weight!r}")
        self.monitor = monitor
        self.weight = float(weight)
        self.eps = eps
        self.count_padding = bool(count_padding)

    def extra_loss(self, trainer: Trainer | None, batch: Any, outputs: Any) -> torch.Tensor:
        return self.weight * self.monitor.loss_for_batch(
            batch, eps=self.eps, count_padding=self.count_padding
        )
