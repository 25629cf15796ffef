"""The bottleneck adapter shared by MEFT, DEFT's adapter variant and Point-PEFT."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from peft_core.activations import get_activation

AdapterInit = Literal["normal", "zero_up", "xavier"]
ADAPTER_INITS: tuple[str, ...] = ("normal", "zero_up", "xavier")


class BottleneckAdapter(nn.Module):
    """``up(dropout(act(down(x))))``, optionally plus ``x``: a d → r → d bottleneck.

    Args:
        dim: input and output feature size d.
        bottleneck: hidden size r.
        activation: a name (``"gelu"``, ``"quick_gelu"``, ``"relu"``, …) or an ``nn.Module``.
        dropout: dropout probability after the activation.
        residual: add the input to the output (an adapter with its own skip connection).
        init: ``"normal"`` — weights N(0, 0.02²), biases 0 (MEFT's reference init: near zero, not
            zero); ``"zero_up"`` — the up projection is all zeros, so the adapter starts as exact
            zero (identity when ``residual=True``); ``"xavier"`` — xavier-uniform weights and tiny
            N(0, 1e-6²) biases (Point-PEFT's reference init).

    Example:
        >>> adapter = BottleneckAdapter(16, 4, init="zero_up", residual=True)
        >>> x = torch.randn(2, 3, 16)
        >>> torch.equal(adapter(x), x)
        True
    """

    def __init__(
        self,
        dim: int,
        bottleneck: int,
        activation: str | nn.Module | Callable[[], nn.Module] = "gelu",
        dropout: float = 0.0,
        residual: bool = False,
        init: AdapterInit = "normal",
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("bottleneck", bottleneck)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"BottleneckAdapter: {name} must be a positive integer, got {value!r}"
                )
        is_number = isinstance(dropout, (int, float)) and not isinstance(dropout, bool)
        if not is_number or not 0.0 <= dropout < 1.0 or math.isnan(dropout):
            raise ValueError(
                f"BottleneckAdapter: dropout must be a number in [0, 1), got {dropout!r}"
            )
        if not isinstance(residual, bool):  # residual="no" would be truthy and add the skip
            raise ValueError(f"BottleneckAdapter: residual must be True or False, got {residual!r}")
        if init not in ADAPTER_INITS:
            raise ValueError(
                f"BottleneckAdapter: init must be one of {ADAPTER_INITS}, got {init!r}"
            )
        self.dim = dim
        self.bottleneck = bottleneck
        self.residual = residual
        self.init = init
        self.down = nn.Linear(dim, bottleneck)
        self.act = get_activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init == "xavier":
            for linear in (self.down, self.up):
                nn.init.xavier_uniform_(linear.weight)
                nn.init.normal_(linear.bias, std=1e-6)
            return
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        if self.init == "zero_up":
            nn.init.zeros_(self.up.weight)
        else:
            nn.init.normal_(self.up.weight, std=0.02)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.up(self.dropout(self.act(self.down(x))))
        return x + out if self.residual else out

    def extra_repr(self) -> str:
        return f"dim={self.dim}, bottleneck={self.bottleneck}, residual={self.residual}, init={self.init!r}"
