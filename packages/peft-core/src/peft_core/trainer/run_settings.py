"""What a resumed run must share with the run whose checkpoint it continues.

A resume reaches the weights an uninterrupted run would reach only when it has that run's
hyperparameters, method and training set. Each checkpoint records them, and a resume that differs
is refused with every difference named, as is a model whose frozen weights differ (see
``frozen_weights``). Otherwise it would go on silently with, say, another batch
size (the saved position in the data would point at other examples), another schedule length (the
learning rate would jump) or another method config (other adapters under the same tensor names).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from peft_core.trainer.frozen_weights import fingerprint_differences

RUN_SETTINGS_FILE = "run_settings.json"

# Fields that change only where, how often or how visibly things are written, the evaluation batch
# size, the device, or how data is loaded (each example's random draws are seeded by its index, so
# results do not depend on num_workers). They may differ between the segments of one run.
FREE_ON_RESUME = frozenset(
    {
        "output_dir",
        "resume",
        "overwrite_output_dir",
        "progress_bar",
        "log_every",
        "save_every",
        "save_total_limit",
        "num_workers",
        "eval_batch_size",
        "cpu",
        "ddp_find_unused_parameters",
    }
)
# How long the run is. Under a schedule that does not depend on it, a longer resume (extending a
# finished run) takes exactly the steps an uninterrupted longer run would, so it may change.
_RUN_LENGTH = frozenset({"num_epochs", "max_steps"})
# A library upgrade between segments may resume a run; its version stamp is not a setting.
_VERSION_STAMPS = frozenset({"library_version"})


class ResumeMismatchError(ValueError):
    """A resume whose settings differ from those of the run that wrote the checkpoint.

    ``checkpoint`` is that checkpoint, ``changes`` one ``"name: checkpoint A, this run B"`` per
    difference (a command line words its own remedy from them).
    """

    def __init__(self, message: str, checkpoint: Path, changes: list[str]) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.changes = changes


def describe_run(
    args: Any,
    method_config: Any,
    train_examples: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings a resume must match, as they read back from JSON (tuples become lists).

    ``extra`` holds what the trainer cannot see itself: the model, the data source, a loss
    weight kept in a callback, a PEFT config that is not a ``MethodConfig``.
    """
    free = FREE_ON_RESUME | (_RUN_LENGTH if _schedule_ignores_run_length(args) else set())
    arguments = {
        name: value for name, value in dataclasses.asdict(args).items() if name not in free
    }
    config = None
    if method_config is not None:
        config = {
            key: value
            for key, value in method_config.to_dict().items()
            if key not in _VERSION_STAMPS
        }
    settings = {
        "training_arguments": arguments,
        "method_config": config,
        "train_examples": train_examples,
        "run_settings": extra,
    }
    return json.loads(json.dumps(settings, default=str))


def _schedule_ignores_run_length(args: Any) -> bool:
    """A constant learning rate, warmed up over a fixed number of steps (or not at all)."""
    return args.lr_schedule == "constant" and (
        args.warmup_steps is not None or args.warmup_ratio == 0
    )


def write_run_settings(directory: Path, settings: dict[str, Any]) -> None:
    (directory / RUN_SETTINGS_FILE).write_text(
        json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def check_resume_matches(
    checkpoint: Path, settings: dict[str, Any], frozen_weights: dict[str, list] | None = None
) -> None:
    """Raise :class:`ResumeMismatchError` when ``settings``, or the ``frozen_weights``
    fingerprint, differ from the checkpoint's.

    What a checkpoint written before it was recorded lacks is not checked.
    """
    changes = []
    recorded = checkpoint / RUN_SETTINGS_FILE
    if recorded.is_file():
        saved = json.loads(recorded.read_text(encoding="utf-8"))
        changes += setting_differences(saved, settings)
    if frozen_weights is not None:
        changes += fingerprint_differences(checkpoint, frozen_weights)
    if changes:
        listed = "; ".join(changes)
        raise ResumeMismatchError(
            f"cannot resume from {checkpoint}: this run differs from the run that wrote it "
            f"({listed}). Resume with that run's settings and model, or start afresh in "
            "another output_dir, or delete that run with resume=False and "
            "overwrite_output_dir=True",
            checkpoint,
            changes,
        )


def setting_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """``"name: checkpoint A, this run B"`` for every leaf setting that differs."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(saved.keys() | current.keys()):
            name = f"{prefix}.{key}" if prefix else key
            found += setting_differences(saved.get(key), current.get(key), name)
        return found
    if saved == current:
        return []
    return [f"{prefix}: checkpoint {saved!r}, this run {current!r}"]
