"""The two-stream additive coupling of one MEFT layer, forward and inverse.

    forward:  y1 = λ·x1 + F(x2)            inverse:  x2 = (y2 − G(y1)) / β
              y2 = β·x2 + G(y1)                      x1 = (y1 − F(x2)) / λ

MEFT1/2 hand the streams to the next layer swapped, ``(y2, y1)``, so that the next PLM layer reads
the stream the previous PLM layer wrote. The streams and the coupling arithmetic are float32 (or
float64, see ``MeftConfig.stream_dtype``) even when F and G run in bf16/fp16 (autocast or half
weights): the inverse divides by λ and β, so each layer loses log10(1/(λβ)) decimal digits of the
stream's precision and the reconstruction error compounds down the stack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

SubFunction = Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]


@dataclasses.dataclass
class CoupledLayer:
    """F and G of one layer, how the streams leave it, and the trainable tensors F and G use."""

    F: SubFunction
    G: SubFunction
    x1_factor: float  # λ
    x2_factor: float  # β
    swap: bool
    module: nn.Module  # the PLM layer (its train/eval mode and trainable parameters)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.module.parameters() if p.requires_grad]


def run_sub_function(
    fn: SubFunction, x: torch.Tensor, context: dict[str, Any], dtype: torch.dtype
) -> torch.Tensor:
    """Call F or G on a stream cast to the model's dtype; return its output in the stream's dtype
    (float32, or float64: a float64 model's sub-blocks then keep every digit)."""
    return fn(x.to(dtype), context).to(x.dtype)


def couple(
    layer: CoupledLayer,
    x1: torch.Tensor,
    x2: torch.Tensor,
    context: dict[str, Any],
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One coupled layer with ordinary autograd (the vanilla path, and the reference for tests)."""
    y1 = layer.x1_factor * x1 + run_sub_function(layer.F, x2, context, dtype)
    y2 = layer.x2_factor * x2 + run_sub_function(layer.G, y1, context, dtype)
    return (y2, y1) if layer.swap else (y1, y2)


def unswap(
    layer: CoupledLayer, out1: torch.Tensor, out2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's (y1, y2) from the pair it emitted."""
    return (out2, out1) if layer.swap else (out1, out2)
