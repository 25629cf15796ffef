"""Activation checkpointing switched on for a MEFT model: detected, and explained once.

MEFT's first layer runs the whole coupled stack, so a host's checkpointing of single layers does
not do what it promises. Hugging Face checkpoints inside each layer's class ``forward``, which the
forward MEFT installs on the layer replaces: nothing is checkpointed (the memory of
``num_reversible_layers < N`` stays), and the model's inputs are made to require a gradient for
nothing. timm checkpoints around each block call, so the first block, the whole stack, is
checkpointed as one: its forward runs once more in backward and the vanilla layers' activations
are all rebuilt at once. Either way the user believes memory is being saved when it is not.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

# The flags that switch checkpointing on: Hugging Face layers (and encoders), timm models.
_FLAGS = ("gradient_checkpointing", "grad_checkpointing")


def checkpointing_enabled(modules: Iterable[nn.Module]) -> bool:
    """Whether any of ``modules`` has its host library's activation checkpointing switched on."""
    return any(getattr(module, flag, False) is True for module in modules for flag in _FLAGS)


def checkpointing_message(stack_name: str) -> str:
    return (
        f"MEFT: activation (gradient) checkpointing is enabled on {stack_name}, but it saves "
        "nothing there: MEFT's first layer runs the whole reversible stack, whose layers already "
        "recompute their activations in backward (Hugging Face's per-layer checkpointing is "
        "bypassed; timm's checkpoints the whole stack as one block and runs its forward twice). "
        "Turn it off (TrainingArguments(gradient_checkpointing=False), "
        "model.gradient_checkpointing_disable(), or timm's set_grad_checkpointing(False)); to "
        "save more activation memory, raise MeftConfig.num_reversible_layers."
    )
