"""The adapters MEFT inserts into each layer, held in one submodule per layer."""

from __future__ import annotations

from torch import nn

from peft_core import BottleneckAdapter


class LayerAdapters(nn.Module):
    """``ffn``: parallel to the FFN (all variants); ``attention``: after the attention output
    (MEFT3); ``stream``: the standalone adapter that is G in MEFT1 and F in MEFT2."""

    def __init__(
        self, variant: str, dim: int, bottleneck: int, activation: str, dropout: float, init: str
    ):
        super().__init__()

        def adapter() -> BottleneckAdapter:
            return BottleneckAdapter(
                dim, bottleneck, activation=activation, dropout=dropout, init=init
            )

        self.ffn = adapter()
        self.attention = adapter() if variant == "meft3" else None
        self.stream = adapter() if variant in ("meft1", "meft2") else None


ATTRIBUTE = "meft_adapters"  # the name under which each PLM layer holds its LayerAdapters


def adapters_of(layer: nn.Module) -> LayerAdapters:
    return getattr(layer, ATTRIBUTE)
