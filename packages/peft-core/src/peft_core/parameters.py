"""Counting parameters the way Hugging Face ``peft`` reports them."""

from __future__ import annotations

from torch import nn


def _numel(parameter: nn.Parameter) -> int:
    count = parameter.numel()
    # bitsandbytes packs two 4-bit values per byte of its storage dtype; the logical number of
    # weights is larger than numel() of the packed tensor (peft counts them the same way).
    if type(parameter).__name__ == "Params4bit":
        storage = getattr(parameter, "quant_storage", None)
        bytes_per_element = storage.itemsize if storage is not None else 1
        count = count * 2 * bytes_per_element
    return count


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Return ``(trainable, total)`` parameter counts; tied/shared parameters count once.

    Example:
        >>> from torch import nn
        >>> layer = nn.Linear(3, 2)
        >>> layer.bias.requires_grad_(False)  # doctest: +ELLIPSIS
        Parameter...
        >>> count_parameters(layer)
        (6, 8)
    """
    trainable = total = 0
    for parameter in model.parameters():  # parameters() already yields each tensor once
        count = _numel(parameter)
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total


def format_trainable_parameters(model: nn.Module) -> str:
    trainable, total = count_parameters(model)
    percent = 100.0 * trainable / total if total else 0.0
    return (
        f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {percent:.4f}"
    )


def print_trainable_parameters(model: nn.Module) -> None:
    """Print ``trainable params: 1,234 || all params: 5,678 || trainable%: 21.7330``."""
    print(format_trainable_parameters(model))
