"""Activation functions by name, as the adapters of the three papers need them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the GELU approximation of CLIP, used by Point-PEFT's adapters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_python": nn.GELU,  # transformers' pure-Python form of the exact GELU
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "gelu_new": lambda: nn.GELU(approximate="tanh"),  # Hugging Face's name for the tanh form
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "quick_gelu": QuickGELU,
    "quickgelu": QuickGELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
    "linear": nn.Identity,
}


def activation_names() -> list[str]:
    return sorted(_ACTIVATIONS)


def _call_factory(factory: Callable[[], nn.Module]) -> object:
    try:
        return factory()
    except TypeError as error:  # e.g. F.gelu: a function of a tensor, not a module factory
        raise TypeError(
            f"activation={factory!r} could not be called without arguments ({error}); pass a "
            "name such as 'gelu', an nn.Module, or a module class such as nn.GELU"
        ) from error


def get_activation(activation: str | nn.Module | Callable[[], nn.Module]) -> nn.Module:
    """Build an activation module from a name (case-insensitive), a module, or a module factory."""
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, str):
        key = activation.lower().replace("-", "_")
        if key not in _ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is not known; expected one of {', '.join(activation_names())} "
                "or an nn.Module"
            )
        return _ACTIVATIONS[key]()
    if callable(activation):
        module = _call_factory(activation)
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"activation factory returned {type(module).__name__}, expected an nn.Module"
            )
        return module
    raise TypeError(f"activation must be a name or an nn.Module, got {type(activation).__name__}")
