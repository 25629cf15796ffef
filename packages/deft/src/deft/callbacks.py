"""DEFT as one line in peft-core's Trainer: the density loss as an extra loss term."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from deft.loss import DEFAULT_EPS
from deft.schedule import DensityWeightSchedule, as_schedule
from peft_core.trainer.callbacks import TrainerCallback

if TYPE_CHECKING:
    from deft.monitor import DensityMonitor
    from peft_core.trainer import Trainer


class DensityLossCallback(TrainerCallback):
    """Adds ``weight · monitor.loss(...)`` to the task loss, masked by the batch's tokens.

    The masks come from the batch: ``attention_mask``, and for encoder-decoder models
    ``decoder_attention_mask`` or the ``labels`` (-100 marks decoder padding);
    ``count_padding=True`` averages over pads too, as the reference implementation does. Logged
    as ``density_loss`` (the weighted term), ``density`` (L_density itself) and
    ``density_weight`` (λ of the latest step).

    ``weight`` is λ, or a :class:`deft.schedule.DensityWeightSchedule` that holds λ at 0 for the
    first part of training and ramps it in (a guard against the density term overwhelming the
    task before it is learned); steps with λ = 0 build no graph for the density term.

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
        weight: float | DensityWeightSchedule = 1.0,
        eps: float = DEFAULT_EPS,
        *,
        count_padding: bool = False,
    ):
        self.schedule = as_schedule(weight)
        self.monitor = monitor
        self.eps = eps
        self.count_padding = bool(count_padding)
        self._last_weight = self.schedule.weight
        self._density_sum, self._density_count = 0.0, 0  # L_density since the last log

    @property
    def weight(self) -> float:
        """λ once any ramp is over."""
        return float(self.schedule.weight)

    def current_weight(self, trainer: Trainer | None) -> float:
        """λ for the step ``trainer`` is taking (the final λ outside a trainer)."""
        if trainer is None or self.schedule.is_constant:
            return self.weight
        return self.schedule.for_step(trainer.state.global_step, trainer.total_steps)

    def extra_loss(self, trainer: Trainer | None, batch: Any, outputs: Any) -> torch.Tensor:
        weight = self._last_weight = self.current_weight(trainer)
        options = {"eps": self.eps, "count_padding": self.count_padding}
        if weight:
            density = self.monitor.loss_for_batch(batch, **options)
        else:
            with torch.no_grad():  # logged only: no graph while λ is 0
                density = self.monitor.loss_for_batch(batch, **options)
        self._density_sum += float(density.detach())
        self._density_count += 1
        return weight * density

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        """Adds λ of the latest step and the unweighted density loss since the last log."""
        logs["density_weight"] = self._last_weight
        if self._density_count:
            logs["density"] = self._density_sum / self._density_count
        self._density_sum, self._density_count = 0.0, 0
