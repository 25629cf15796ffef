"""The baselines' configuration: which row, and that row's options (nothing else).

One :class:`BaselineConfig` describes every baseline so that ``peft_core.load`` can rebuild any of
them from a saved folder. Options that belong to another baseline stay ``None`` (and are refused
when set), so a saved ``adapter_config.json`` lists exactly what the row used.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

from peft_core import ConfigError, MethodConfig

BASELINE_METHODS = ("full", "linear", "adapter", "vpt-deep", "bitfit")
"""The baseline rows, in the order papers list them."""

ADAPTER_INITS = ("zero_up", "normal", "xavier")

# Each baseline's own options and their defaults (see BaselineConfig's fields).
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "linear": {},
    "adapter": {"bottleneck_dim": 16, "adapter_dropout": 0.1, "adapter_init": "zero_up"},
    "vpt-deep": {"num_prompts": 10, "prompt_dropout": 0.1},
    "bitfit": {},
}
# Options every baseline takes.
COMMON_OPTIONS: dict[str, Any] = {"freeze_batchnorm_stats": False}
# Buffers saved with the trained tensors: every BatchNorm's statistics (a few kilobytes).
SAVED_BUFFERS = ("*.running_mean", "*.running_var", "*.num_batches_tracked")
# The backbone tensors a Point-MAE pre-train file lacks, so that every load of it draws them at
# random. Saved with the trained tensors even where a row keeps them frozen ("linear", "bitfit"):
# a backbone loaded afresh would otherwise restore a different model.
NEW_IN_FINETUNING = ("backbone.cls_token", "backbone.cls_pos")


def check_method(method: object) -> str:
    """``method`` if it names a baseline, else a ``ValueError`` listing the valid names."""
    if isinstance(method, str) and method in BASELINE_METHODS:
        return method
    close = (
        difflib.get_close_matches(method.lower().replace("_", "-"), BASELINE_METHODS, n=1)
        if isinstance(method, str)
        else []
    )
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown baseline method {method!r}{hint}; valid methods: {', '.join(BASELINE_METHODS)}"
    )


def options_of(method: str) -> tuple[str, ...]:
    """The option names ``method`` accepts (its own, then the common ones)."""
    return (*METHOD_OPTIONS[check_method(method)], *COMMON_OPTIONS)


@dataclasses.dataclass
class BaselineConfig(MethodConfig):
    """A baseline row and its options; build it with :meth:`from_options` or directly.

    Example:
        >>> config = BaselineConfig("adapter", bottleneck_dim=8)
        >>> config.options
        {'bottleneck_dim': 8, 'adapter_dropout': 0.1, 'adapter_init': 'zero_up', 'freeze_batchnorm_stats': False}
        >>> BaselineConfig.from_dict(config.to_dict()) == config
        True
        >>> BaselineConfig("linear", num_prompts=4)
        Traceback (most recent call last):
        ...
        peft_core.config.ConfigError: num_prompts is an option of the 'vpt-deep' baseline; 'linear' takes: freeze_batchnorm_stats
    """

    method = "point_baseline"

    baseline: str
    """The row: ``"full"``, ``"linear"``, ``"adapter"``, ``"vpt-deep"`` or ``"bitfit"``."""
    freeze_batchnorm_stats: bool = False
    """``True``: BatchNorms with no trainable parameter (the frozen patch encoder's) stay in eval
    mode and keep their pre-trained statistics. ``False`` (as Point-PEFT's default and the
    reference): ``model.train()`` lets them normalise with batch statistics and update their
    running statistics. No effect on ``"full"`` and ``"bitfit"``, whose BatchNorms all train."""
    bottleneck_dim: int | None = None
    """``"adapter"``: hidden width of each bottleneck adapter (default 16, Point-PEFT's FFN
    adapter width)."""
    adapter_dropout: float | None = None
    """``"adapter"``: dropout inside each adapter, after the activation (default 0.1, as
    Point-PEFT's adapters)."""
    adapter_init: str | None = None
    """``"adapter"``: ``"zero_up"`` (default: the up projection starts at zero, so the model starts
    exactly at the backbone), ``"normal"`` or ``"xavier"`` (see :class:`peft_core.BottleneckAdapter`)."""
    num_prompts: int | None = None
    """``"vpt-deep"``: prompt tokens per block (default 10, Point-PEFT's prompt count)."""
    prompt_dropout: float | None = None
    """``"vpt-deep"``: dropout on the prompt embeddings, per sample (default 0.1, as Point-PEFT's
    prompts)."""

    @classmethod
    def from_options(cls, method: str, **options: Any) -> BaselineConfig:
        """The config of ``method`` with keyword ``options``; an option the method does not take
        is a ``TypeError`` naming it and the ones it does take."""
        method = check_method(method)
        accepted = options_of(method)
        for name in options:
            if name not in accepted:
                raise TypeError(
                    f"the {method!r} baseline takes no option {name!r}"
                    + _owner_hint(name)
                    + f"; its options: {', '.join(accepted)}"
                )
        return cls(baseline=method, **options)

    @property
    def options(self) -> dict[str, Any]:
        """The options of this baseline and their values."""
        return {name: getattr(self, name) for name in options_of(self.baseline)}

    @property
    def saved_buffers(self) -> tuple[str, ...]:
        """BatchNorm statistics are saved with the trained tensors: the head's move in training,
        and so do the frozen patch encoder's unless ``freeze_batchnorm_stats``."""
        return SAVED_BUFFERS

    @property
    def saved_parameters(self) -> tuple[str, ...]:
        """Parameters ``peft_core.save_trainable`` saves even when frozen: :data:`NEW_IN_FINETUNING`."""
        return NEW_IN_FINETUNING

    def validate(self) -> None:
        check_method(self.baseline)
        for method, options in METHOD_OPTIONS.items():
            for name, default in options.items():
                value = getattr(self, name)
                if method == self.baseline:
                    if value is None:
                        setattr(self, name, default)
                elif value is not None:
                    raise ConfigError(
                        f"{name} is an option of the {method!r} baseline; {self.baseline!r} "
                        f"takes: {', '.join(options_of(self.baseline))}"
                    )
        if not isinstance(self.freeze_batchnorm_stats, bool):
            raise ConfigError(
                f"freeze_batchnorm_stats must be True or False, got {self.freeze_batchnorm_stats!r}"
            )
        if self.baseline == "adapter":
            _require_positive_int(
                "bottleneck_dim", self.bottleneck_dim, "the adapters' hidden width"
            )
            _require_dropout("adapter_dropout", self.adapter_dropout)
            if self.adapter_init not in ADAPTER_INITS:
                raise ConfigError(
                    f"adapter_init must be one of {', '.join(ADAPTER_INITS)}, "
                    f"got {self.adapter_init!r}"
                )
        if self.baseline == "vpt-deep":
            _require_positive_int("num_prompts", self.num_prompts, "prompt tokens per block")
            _require_dropout("prompt_dropout", self.prompt_dropout)


def _owner_hint(name: str) -> str:
    owners = [method for method, options in METHOD_OPTIONS.items() if name in options]
    return f" (it is an option of {owners[0]!r})" if owners else ""


def _require_positive_int(name: str, value: object, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer ({meaning}), got {value!r}")


def _require_dropout(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not 0.0 <= value < 1.0
    ):
        raise ConfigError(f"{name} must be a probability in [0, 1), got {value!r}")
