"""Everything that configures a training run, validated up front."""

from __future__ import annotations

import dataclasses

from peft_core.number_checks import is_finite_real, is_integer

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("no", "fp16", "bf16")
EVAL_STRATEGIES = ("no", "steps", "epoch")


def _fail(name: str, expected: str, value: object) -> None:
    raise ValueError(f"TrainingArguments.{name} must be {expected}, got {value!r}")


def _is_int(value: object, minimum: int) -> bool:
    """An integer (numpy's too, not a bool) of at least ``minimum``."""
    return is_integer(value) and value >= minimum


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
    metric_for_best: str = "eval_loss"  # "accuracy" means "eval_accuracy"
    greater_is_better: bool | None = None  # None: False for losses and errors (mse), else True
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping
    resume: bool = True  # continue from the newest checkpoint in output_dir when there is one
    # a run that starts afresh in a folder holding an earlier run's checkpoints deletes them
    # (and its final and best weights); without this it refuses to start
    overwrite_output_dir: bool = False
    progress_bar: bool = True
    cpu: bool = False  # force CPU even when a GPU is present
    ddp_find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        counts = (  # field, smallest value, may be None
            ("per_device_batch_size", 1, False),
            ("gradient_accumulation_steps", 1, False),
            ("log_every", 1, False),
            ("save_total_limit", 1, False),
            ("num_workers", 0, False),
            ("seed", 0, False),
            ("max_steps", 1, True),
            ("eval_batch_size", 1, True),
            ("eval_every", 1, True),
            ("save_every", 1, True),
            ("early_stopping_patience", 1, True),
            ("warmup_steps", 0, True),
        )
        for name, minimum, optional in counts:
            value = getattr(self, name)
            if not ((optional and value is None) or _is_int(value, minimum)):
                kind = "a positive integer" if minimum else "a non-negative integer"
                _fail(name, f"None or {kind}" if optional else kind, value)
        if not (is_finite_real(self.num_epochs) and self.num_epochs > 0):
            _fail("num_epochs", "a positive finite number", self.num_epochs)
        if not (is_finite_real(self.learning_rate) and self.learning_rate > 0):
            _fail("learning_rate", "a positive finite number", self.learning_rate)
        if not (is_finite_real(self.weight_decay) and self.weight_decay >= 0):
            _fail("weight_decay", "a non-negative finite number", self.weight_decay)
        if not (is_finite_real(self.warmup_ratio) and 0.0 <= self.warmup_ratio < 1.0):
            _fail("warmup_ratio", "a number in [0, 1)", self.warmup_ratio)
        if self.max_grad_norm is not None and not (
            is_finite_real(self.max_grad_norm) and self.max_grad_norm > 0
        ):
            _fail("max_grad_norm", "None or a positive finite number", self.max_grad_norm)
        if not (is_finite_real(self.adam_epsilon) and self.adam_epsilon > 0):
            _fail("adam_epsilon", "a positive finite number", self.adam_epsilon)
        betas = self.adam_betas
        if isinstance(betas, str) or not hasattr(betas, "__iter__"):
            _fail("adam_betas", "two numbers in [0, 1), e.g. (0.9, 0.999)", betas)
        if len(tuple(betas)) != 2 or not all(
            is_finite_real(beta) and 0.0 <= beta < 1.0 for beta in betas
        ):
            _fail("adam_betas", "two numbers in [0, 1), e.g. (0.9, 0.999)", betas)
        for name in (
            "shuffle",
            "drop_last",
            "resume",
            "overwrite_output_dir",
            "progress_bar",
            "cpu",
            "ddp_find_unused_parameters",
        ):
            if not isinstance(getattr(self, name), bool):
                _fail(name, "True or False", getattr(self, name))
        for name, allowed in (
            ("lr_schedule", SCHEDULES),
            ("mixed_precision", PRECISIONS),
            ("eval_strategy", EVAL_STRATEGIES),
        ):
            if getattr(self, name) not in allowed:
                _fail(name, f"one of {allowed}", getattr(self, name))
        if self.eval_strategy == "steps" and self.eval_every is None:
            _fail("eval_every", "set when eval_strategy='steps'", self.eval_every)
        metric = self.metric_for_best
        if not isinstance(metric, str) or metric.removeprefix("eval_") in ("", "step"):
            _fail("metric_for_best", "the name of an eval metric, e.g. 'eval_accuracy'", metric)
        # Evaluation names its metrics eval_<name>; the Hugging Face Trainer adds the prefix too.
        self.metric_for_best = metric if metric.startswith("eval_") else f"eval_{metric}"
        self.adam_betas = tuple(float(beta) for beta in betas)  # type: ignore[assignment]

    @property
    def maximize_metric(self) -> bool:
        if self.greater_is_better is not None:
            return self.greater_is_better
        # Losses and errors fall as a model improves: eval_loss, eval_mse (a regression task)
        name = self.metric_for_best.removeprefix("eval_")
        return not ("loss" in name or name in ("mse", "rmse", "mae"))
