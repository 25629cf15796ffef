"""Activation checkpointing switched on for a MEFT model: detected, and explained once.

MEFT's first layer runs the whole coupled stack, so a host's checkpointing of single layers does
not do what it promises. Hugging Face checkpoints inside each layer's class ``forward``, which the
forward MEFT installs on the layer replaces: nothing is checkpointed (the memory of
``num_reversible_layers < N`` stays), and the model's inputs are made to require a gradient for
nothing. The user believes memory is being saved when it is not: MEFT says so once.

timm checkpoints around each block call, so the first block, the whole stack, would be
checkpointed as one: its forward would run once more in backward for nothing, and with reentrant
checkpointing (older timm releases such as 1.0.3, or ``TIMM_REENTRANT_CKPT=1`` in newer ones) the
stack's input, which needs no gradient, would cut the adapters off from the loss: only the head
would train. So MEFT switches timm's flag off while the model runs (:func:`checkpointing_suspended`)
and says so once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import nn

# The flags that switch checkpointing on: Hugging Face layers (and encoders), timm models.
_FLAGS = ("gradient_checkpointing", "grad_checkpointing")


def checkpointing_enabled(modules: Iterable[nn.Module]) -> bool:
    """Whether any of ``modules`` has its host library's activation checkpointing switched on."""
    return any(getattr(module, flag, False) is True for module in modules for flag in _FLAGS)


@contextmanager
def checkpointing_suspended(module: nn.Module) -> Iterator[bool]:
    """``module``'s checkpointing flags switched off while the block runs (and restored after,
    so the user's setting stands): yields whether any was on."""
    switched = [flag for flag in _FLAGS if getattr(module, flag, False) is True]
    for flag in switched:
        setattr(module, flag, False)
    try:
        yield bool(switched)
    finally:
        for flag in switched:
            setattr(module, flag, True)


def suspended_checkpointing_message(model_name: str) -> str:
    return (
        f"MEFT: activation (gradient) checkpointing is enabled on this {model_name}; MEFT runs "
        "the model without it. Its first block runs the whole reversible stack, whose layers "
        "already recompute their activations in backward, so checkpointing it would save nothing "
        "and run its forward twice, and reentrant checkpointing would leave the adapters without "
        "gradients. Turn it off (set_grad_checkpointing(False)) to silence this; to save more "
        "activation memory, raise MeftConfig.num_reversible_layers."
    )


def checkpointing_message(stack_name: str) -> str:
    return (
        f"MEFT: activation (gradient) checkpointing is enabled on {stack_name}, but it saves "
        "nothing there: MEFT's first layer runs the whole reversible stack, whose layers already "
        "recompute their activations in backward (Hugging Face's per-layer checkpointing is "
        "bypassed). Turn it off (TrainingArguments(activation_checkpointing=False) or "
        "model.activation_checkpointing_disable(), the names transformers 5.24 gave "
        "gradient_checkpointing); to save more activation memory, raise "
        "MeftConfig.num_reversible_layers."
    )
