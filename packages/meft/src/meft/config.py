"""MEFT's configuration: which variant, the adapters, the coupling factors, how much is reversible."""

from __future__ import annotations

import dataclasses
import math

from peft_core import ConfigError, MethodConfig

VARIANTS = ("meft1", "meft2", "meft3")
# (λ = x1_factor, β = x2_factor). The sub-blocks already carry a residual, so 1/1 would count the
# input twice; a small factor on the carried stream keeps the PLM's function near its start.
DEFAULT_FACTORS = {"meft1": (0.1, 1.0), "meft2": (1.0, 0.1), "meft3": (0.1, 0.1)}
ADAPTER_INITS = ("normal", "zero_up")
STREAM_DTYPES = ("float32", "float64")


@dataclasses.dataclass
class MeftConfig(MethodConfig):
    """How to make a pre-trained transformer reversible.

    Attributes:
        variant: ``"meft1"`` (F = PLM layer, G = adapter), ``"meft2"`` (F = adapter, G = PLM layer)
            or ``"meft3"`` (F = attention block, G = FFN block).
        adapter_dim: bottleneck size r of every adapter.
        x1_factor: λ, the scale of the stream F's output is added to. ``None`` = the variant's default.
        x2_factor: β, the scale of the stream G's output is added to. ``None`` = the variant's default.
        adapter_init: ``"normal"`` (N(0, 0.02²) weights, the reference) or ``"zero_up"`` (adapters
            start as exact zero).
        adapter_activation: adapter non-linearity; ``None`` = the model's hidden activation.
        adapter_dropout: adapter dropout; ``None`` = the model's hidden dropout.
        num_reversible_layers: the bottom k layers of each stack use reversible backprop, the rest
            vanilla autograd of the same architecture. ``None`` = all; ``0`` = none.
        stream_dtype: dtype of the two streams and the coupling arithmetic. Each layer's inverse
            divides by λ and β, losing log10(1/(λβ)) decimal digits: with ``"float32"`` (the paper's
            choice) the bottom layers of a deep MEFT3 stack are reconstructed with large error;
            ``"float64"`` keeps ~9 more digits for twice the (depth-independent) stream memory.
            Measure with ``check_reconstruction``.
        trainable: extra glob patterns of parameters to train besides the adapters; ``None`` =
            the model's task head, detected per architecture.
        check_reconstruction: debug mode: keep each layer's true inputs and compare the inputs
            reconstructed in backward with them (relative error per layer, warning past
            ``reconstruction_tolerance``). Costs the memory MEFT saves; never use it for training.
        reconstruction_tolerance: relative error above which the debug mode warns.
    """

    method = "meft"

    variant: str = "meft1"
    adapter_dim: int = 8
    x1_factor: float | None = None
    x2_factor: float | None = None
    adapter_init: str = "normal"
    adapter_activation: str | None = None
    adapter_dropout: float | None = None
    num_reversible_layers: int | None = None
    stream_dtype: str = "float32"
    trainable: tuple[str, ...] | None = None
    check_reconstruction: bool = False
    reconstruction_tolerance: float = 1e-3

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"MeftConfig.variant must be one of {VARIANTS}, got {self.variant!r}")
        if (
            isinstance(self.adapter_dim, bool)
            or not isinstance(self.adapter_dim, int)
            or self.adapter_dim < 1
        ):
            raise ConfigError(
                f"MeftConfig.adapter_dim must be a positive integer, got {self.adapter_dim!r}"
            )
        for name in ("x1_factor", "x2_factor"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ConfigError(
                    f"MeftConfig.{name} must be a positive finite number (the inverse divides by it), "
                    f"got {value!r}"
                )
        if self.adapter_init not in ADAPTER_INITS:
            raise ConfigError(
                f"MeftConfig.adapter_init must be one of {ADAPTER_INITS}, got {self.adapter_init!r}"
            )
        if self.adapter_dropout is not None and not 0 <= self.adapter_dropout < 1:
            raise ConfigError(
                f"MeftConfig.adapter_dropout must be in [0, 1), got {self.adapter_dropout!r}"
            )
        layers = self.num_reversible_layers
        if layers is not None and (
            isinstance(layers, bool) or not isinstance(layers, int) or layers < 0
        ):
            raise ConfigError(
                f"MeftConfig.num_reversible_layers must be None or >= 0, got {layers!r}"
            )
        if self.stream_dtype not in STREAM_DTYPES:
            raise ConfigError(
                f"MeftConfig.stream_dtype must be one of {STREAM_DTYPES}, got {self.stream_dtype!r}"
            )
        if not self.reconstruction_tolerance > 0:
            raise ConfigError("MeftConfig.reconstruction_tolerance must be positive")
        if self.trainable is not None:
            self.trainable = tuple(self.trainable)

    @property
    def factors(self) -> tuple[float, float]:
        """(λ, β) with the variant's defaults filled in."""
        default_x1, default_x2 = DEFAULT_FACTORS[self.variant]
        return (
            float(self.x1_factor if self.x1_factor is not None else default_x1),
            float(self.x2_factor if self.x2_factor is not None else default_x2),
        )
