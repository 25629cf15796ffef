"""Hooks into the training loop, including extra loss terms (how DEFT adds its density loss)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from peft_core.trainer.trainer import Trainer

ExtraLoss = torch.Tensor | dict[str, torch.Tensor] | None


class TrainerCallback:
    """Override what you need; every hook is optional.

    ``extra_loss`` returns a tensor (logged under the callback's ``name``), a dict of named tensors,
    or ``None``; each term is added to the task loss *before* backward, inside autocast.
    ``on_step_end`` runs at every training log with the record about to be written (losses
    averaged since the previous log); a callback may add entries to it. Callbacks
    with state that must survive a resume implement ``state_dict`` / ``load_state_dict``.

    Example:
        >>> class L2OnLogits(TrainerCallback):
        ...     name = "logit_l2"
        ...
        ...     def extra_loss(self, trainer, batch, outputs):
        ...         return 1e-3 * outputs["logits"].pow(2).mean()
    """

    name: str = ""

    def extra_loss(self, trainer: Trainer, batch: Any, outputs: Any) -> ExtraLoss:
        return None

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None: ...

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @property
    def display_name(self) -> str:
        return self.name or type(self).__name__


def collect_extra_losses(
    callbacks: list[TrainerCallback], trainer: Trainer, batch: Any, outputs: Any
) -> dict[str, torch.Tensor]:
    terms: dict[str, torch.Tensor] = {}
    for callback in callbacks:
        extra = callback.extra_loss(trainer, batch, outputs)
        if extra is None:
            continue
        items = extra.items() if isinstance(extra, dict) else [(callback.display_name, extra)]
        for name, value in items:
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise TypeError(
                    f"callback {callback.display_name} returned a non-scalar loss term {name!r}"
                )
            if name in terms:
                raise ValueError(f"two callbacks contribute a loss term named {name!r}")
            terms[name] = value.reshape(())
    return terms
