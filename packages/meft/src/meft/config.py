"""MEFT's configuration: which variant, the adapters, the coupling factors, how much is reversible."""

from __future__ import annotations

import dataclasses

from peft_core import ConfigError, MethodConfig
from peft_core.number_checks import is_finite_real, is_integer, is_real, plain_number

VARIANTS = ("meft1", "meft2", "meft3")
# (λ = x1_factor, β = x2_factor). The sub-blocks already carry a residual, so 1/1 would count the
# input twice; a small factor on the carried stream keeps the PLM's function near its start.
DEFAULT_FACTORS = {"meft1": (0.1, 1.0), "meft2": (1.0, 0.1), "meft3": (0.1, 0.1)}
ADAPTER_INITS = ("normal", "zero_up")
STREAM_DTYPES = ("float32", "float64")
_NUMBER_FIELDS = (
    "adapter_dim", "x1_factor", "x2_factor", "adapter_dropout", "num_reversible_layers",
    "save_inputs_every", "reconstruction_tolerance",
)  # fmt: skip


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
        save_inputs_every: keep the exact inputs (both streams) of every k-th reversible layer,
            counting from the bottom one, and restart the reconstruction from them in backward:
            rounding then compounds over at most k − 1 layers instead of the whole stack. Costs
            one B×T×2d stream pair per saved layer (⌈N/k⌉ of them; the bottom layer's pair is the
            stack's input, one B×T×d tensor), so memory grows with depth again, by a small
            fraction of what vanilla backprop stores. Needed for deep stacks: on the real 30-layer
            SmolLM2, MEFT2 with float64 streams reconstructs layer 0 with relative error ~6e12
            and gradients are garbage without it. ``None`` = none (the paper).
        trainable: glob patterns of the parameters to train besides the adapters (one string is
            one pattern), in place of the default; ``None`` = the model's task head, detected per
            architecture. To train the head too, include it (``("classifier.*", ...)``); a head
            left frozen this way is warned about.
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
    save_inputs_every: int | None = None
    trainable: tuple[str, ...] | None = None
    check_reconstruction: bool = False
    reconstruction_tolerance: float = 1e-3

    def validate(self) -> None:
        for name in _NUMBER_FIELDS:  # numpy scalars from a sweep: checked, then stored as Python's
            setattr(self, name, plain_number(getattr(self, name)))
        if isinstance(self.trainable, str):  # one pattern, not a sequence of one-letter patterns
            self.trainable = (self.trainable,)
        _one_of("variant", self.variant, VARIANTS)
        if not is_integer(self.adapter_dim) or self.adapter_dim < 1:
            _fail("adapter_dim", "a positive integer", self.adapter_dim)
        for name in ("x1_factor", "x2_factor"):
            value = getattr(self, name)
            if value is not None and not (is_finite_real(value) and value > 0):
                _fail(name, "None or a positive finite number (the inverse divides by it)", value)
        _one_of("adapter_init", self.adapter_init, ADAPTER_INITS)
        if self.adapter_activation is not None and not (
            isinstance(self.adapter_activation, str) and self.adapter_activation
        ):
            _fail("adapter_activation", "None or an activation name", self.adapter_activation)
        dropout = self.adapter_dropout
        if dropout is not None and not (is_real(dropout) and 0 <= dropout < 1):
            _fail("adapter_dropout", "None or a number in [0, 1)", dropout)
        layers = self.num_reversible_layers
        if layers is not None and not (is_integer(layers) and layers >= 0):
            _fail("num_reversible_layers", "None or an integer >= 0", layers)
        _one_of("stream_dtype", self.stream_dtype, STREAM_DTYPES)
        every = self.save_inputs_every
        if every is not None and not (is_integer(every) and every >= 1):
            _fail("save_inputs_every", "None or an integer >= 1", every)
        if self.trainable is not None:
            try:
                patterns = tuple(self.trainable)
            except TypeError:
                patterns = None
            if patterns is None or not all(isinstance(p, str) and p for p in patterns):
                _fail("trainable", "None, a glob pattern or a sequence of them", self.trainable)
            self.trainable = patterns
        if not isinstance(self.check_reconstruction, bool):
            _fail("check_reconstruction", "True or False", self.check_reconstruction)
        tolerance = self.reconstruction_tolerance
        if not (is_finite_real(tolerance) and tolerance > 0):
            _fail("reconstruction_tolerance", "a positive finite number", tolerance)

    @property
    def factors(self) -> tuple[float, float]:
        """(λ, β) with the variant's defaults filled in."""
        default_x1, default_x2 = DEFAULT_FACTORS[self.variant]
        return (
            float(self.x1_factor if self.x1_factor is not None else default_x1),
            float(self.x2_factor if self.x2_factor is not None else default_x2),
        )


def _fail(field: str, expected: str, value: object) -> None:
    raise ConfigError(f"MeftConfig.{field} must be {expected}, got {value!r}")


def _one_of(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        _fail(field, f"one of {allowed}", value)
