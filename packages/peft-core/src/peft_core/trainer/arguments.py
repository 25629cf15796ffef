"""Everything that configures a training run, validated up front."""

from __future__ import annotations

import dataclasses
import math

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("no", "fp16", "bf16")
EVAL_STRATEGIES = ("no", "steps", "epoch")


def _fail(name: str, expected: str, value: object) -> None:
    raise ValueError(f"TrainingArguments.{name} must be {expected}, got {value!r}")


@dataclasses.dataclass
class TrainingArguments:
    """Hyperparameters and bookkeeping of a :class:`~peft_core.Trainer` run.

    Steps always mean *optimizer* steps (one step = ``gradient_accumulation_steps`` micro-batches).
    """

    output_dir: str
    num_epochs: float = 1.0
    max_steps: int | None = None  # overrides num_epochs when set
    per_device_batch_size: int = 16
    eval_batch_size: int | None = None  # defaults to per_device_batch_size
    learning_rate: float = 1e-3
    weight_decay: float = 0.0  # never applied to biases, norms or other 1-D parameters
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_epsilon: float = 1e-8
    lr_schedule: str = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int | None = None  # overrides warmup_ratio when set
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False
    num_workers: int = 0
    eval_strategy: str = "epoch"
    eval_every: int | None = None  # steps between evaluations when eval_strategy="steps"
    save_every: int | None = None  # steps between resumable checkpoints; None = no checkpoints
    save_total_limit: int = 2  # checkpoints kept on disk
    log_every: int = 10
    metric_for_best: str = "eval_loss"
    greater_is_better: bool | None = None  # None: False for metrics containing "loss", else True
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping
    resume: bool = True  # continue from the newest checkpoint in output_dir when there is one
    progress_bar: bool = True
    cpu: bool = False  # force CPU even when a GPU is present
    ddp_find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        positive_ints = (
            "per_device_batch_size",
            "gradient_accumulation_steps",
            "log_every",
            "save_total_limit",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                _fail(name, "a positive integer", value)
        for name in (
            "max_steps",
            "eval_batch_size",
            "eval_every",
            "save_every",
            "early_stopping_patience",
        ):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                _fail(name, "None or a positive integer", value)
        if self.warmup_steps is not None and (
            not isinstance(self.warmup_steps, int) or self.warmup_steps < 0
        ):
            _fail("warmup_steps", "None or a non-negative integer", self.warmup_steps)
        if not (
            isinstance(self.num_epochs, int | float)
            and self.num_epochs > 0
            and math.isfinite(self.num_epochs)
        ):
            _fail("num_epochs", "a positive finite number", self.num_epochs)
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            _fail("learning_rate", "a positive finite number", self.learning_rate)
        if not self.weight_decay >= 0:
            _fail("weight_decay", "non-negative", self.weight_decay)
        if not 0.0 <= self.warmup_ratio < 1.0:
            _fail("warmup_ratio", "in [0, 1)", self.warmup_ratio)
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            _fail("max_grad_norm", "None or positive", self.max_grad_norm)
        if self.num_workers < 0:
            _fail("num_workers", "non-negative", self.num_workers)
        for name, allowed in (
            ("lr_schedule", SCHEDULES),
            ("mixed_precision", PRECISIONS),
            ("eval_strategy", EVAL_STRATEGIES),
        ):
            if getattr(self, name) not in allowed:
                _fail(name, f"one of {allowed}", getattr(self, name))
        if self.eval_strategy == "steps" and self.eval_every is None:
            _fail("eval_every", "set when eval_strategy='steps'", self.eval_every)
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]

    @property
    def maximize_metric(self) -> bool:
        if self.greater_is_better is not None:
            return self.greater_is_better
        return "loss" not in self.metric_for_best
