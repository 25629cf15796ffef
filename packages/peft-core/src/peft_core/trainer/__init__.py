"""The training loop: :class:`Trainer`, :class:`TrainingArguments` and :class:`TrainerCallback`."""

from peft_core.trainer.arguments import TrainingArguments
from peft_core.trainer.callbacks import TrainerCallback
from peft_core.trainer.evaluation import (
    accuracy,
    default_metrics,
    macro_f1,
    matthews_correlation,
    pearson_correlation,
    regression_metrics,
    spearman_correlation,
)
from peft_core.trainer.run_settings import ResumeMismatchError
from peft_core.trainer.trainer import Trainer

__all__ = [
    "ResumeMismatchError",
    "Trainer",
    "TrainerCallback",
    "TrainingArguments",
    "accuracy",
    "default_metrics",
    "macro_f1",
    "matthews_correlation",
    "pearson_correlation",
    "regression_metrics",
    "spearman_correlation",
]
