"""Run folders of the ``point-peft`` commands: one run per folder, resumable, and its loss curve.

``pretrain`` and ``train`` both keep the peft-core trainer's ``checkpoints/`` and ``log.jsonl`` in
their output folder, next to a record of what the run is (``<command>_config.json``), so that a
second run never mixes its checkpoints with an earlier one's and ``--resume`` refuses a folder
that was started with other settings. Also the checks both commands make before they read any
data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from peft_core import ConfigError, atomic_write_text

# Version stamps that an upgrade changes without changing what a run computes.
_STAMPS = ("library_version",)


def prepare_output_dir(
    output_dir: Path,
    run_config: dict[str, Any],
    *,
    record_name: str,
    artifacts: Iterable[str],
    resume: bool,
    overwrite: bool,
    what: str = "settings",
    write_record: bool = True,
) -> None:
    """Refuse to mix two runs in ``output_dir``; remember what this one is, for a later resume.

    Args:
        run_config: what defines the run (JSON-able); a resume must match it, version stamps aside.
        record_name: the file in ``output_dir`` that records ``run_config``.
        artifacts: files the run writes besides the trainer's; ``overwrite`` deletes them too.
        what: how the refusal to resume names the settings ("architecture or recipe", ...).
        write_record: write the record now; ``False`` leaves it to :func:`write_run_record`, once
            the run has got past what may still fail (a failed start then leaves no record).
    """
    from peft_core.command_checks import earlier_run_in
    from peft_core.trainer.checkpointing import checkpoint_directories, delete_run_outputs
    from peft_core.trainer.run_settings import setting_differences

    earlier = checkpoint_directories(output_dir)
    record = output_dir / record_name
    if overwrite:
        delete_run_outputs(output_dir)  # the trainer's checkpoints, final and best weights
        for name in ("log.jsonl", record_name, *artifacts):
            (output_dir / name).unlink(missing_ok=True)
    elif (refusal := earlier_run_in(output_dir, resume=resume, files=tuple(artifacts))) is not None:
        raise FileExistsError(refusal)
    elif earlier and record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        if comparable(saved) != comparable(run_config):
            # The JSON texts decide (1 and 1.0, true and 1, null and a missing key differ there);
            # setting_differences names what differs where Python's == can tell.
            changes = setting_differences(
                json.loads(comparable(saved)), json.loads(comparable(run_config))
            ) or ["a setting differs only in its JSON type (1 vs 1.0) or in being null vs absent"]
            raise FileExistsError(
                f"cannot resume {output_dir}: it was started with another {what}: "
                f"{'; '.join(changes)} (recorded in {record}); use the same options, or "
                "--overwrite"
            )
    if write_record:
        write_run_record(output_dir, run_config, record_name=record_name)


def write_run_record(output_dir: Path, run_config: dict[str, Any], *, record_name: str) -> None:
    """Write ``run_config`` to ``output_dir / record_name`` (what a later resume must match)."""
    atomic_write_text(Path(output_dir) / record_name, json.dumps(run_config, indent=2) + "\n")


def comparable(run_config: dict[str, Any]) -> str:
    """The run description without the library version stamps (an upgrade may resume a run)."""
    cleaned = {
        key: {k: v for k, v in value.items() if k not in _STAMPS}
        if isinstance(value, dict)
        else value
        for key, value in run_config.items()
    }
    return json.dumps(cleaned, sort_keys=True)


def loss_curve(log_path: Path) -> list[list[float]]:
    """``[step, mean loss since the previous record]`` for every train record of the whole run.

    Read from the trainer's log rather than its in-memory history, which a resumed run starts
    empty; the trainer rewrites the log from the checkpoint on, so it holds one run's records.
    """
    if not log_path.is_file():
        return []
    curve = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("type") == "train":
            curve.append([record["step"], record["loss"]])
    return curve


def require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_optimisation_fields(
    recipe: Any, augmentations: Iterable[str], *, learning_rate_may_be_none: bool = False
) -> None:
    """The fields a pre-training and a fine-tuning recipe share: epochs, learning rate (None,
    where allowed, means the method's default), weight decay, warm-up, gradient clipping,
    augmentation."""
    for name in ("epochs", "learning_rate"):
        value = getattr(recipe, name)
        if value is None and name == "learning_rate" and learning_rate_may_be_none:
            continue
        if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
            raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
    if not (isinstance(recipe.weight_decay, (int, float)) and recipe.weight_decay >= 0):
        raise ConfigError(f"weight_decay must be >= 0, got {recipe.weight_decay!r}")
    if not (isinstance(recipe.warmup_ratio, (int, float)) and 0 <= recipe.warmup_ratio < 1):
        raise ConfigError(f"warmup_ratio must be in [0, 1), got {recipe.warmup_ratio!r}")
    if recipe.max_grad_norm is not None and not recipe.max_grad_norm > 0:
        raise ConfigError(f"max_grad_norm must be None or positive, got {recipe.max_grad_norm!r}")
    augmentations = tuple(augmentations)
    if recipe.augmentation not in augmentations:
        raise ConfigError(
            f"augmentation must be one of {augmentations}, got {recipe.augmentation!r}"
        )


def check_points_per_cloud(num_points: int, config: Any, *, model: str = "backbone") -> None:
    """Patch centres are distinct points, and each patch takes ``group_size`` neighbours: refuse
    clouds with fewer points than either, before training rather than in its first step.

    ``model`` names the network in the message ("backbone", "model").
    """
    needed = max(config.num_groups, config.group_size)
    if num_points < needed:
        raise ConfigError(
            f"num_points={num_points} is too few for the {model}'s {config.num_groups} patches "
            f"of {config.group_size} points: use at least {needed} points per cloud"
        )


def check_dataset_folder(source: str) -> None:
    """Raise ``FileNotFoundError`` when a ``kind=DIR`` data source names no folder; other
    sources (``procedural-hard``, ``kicad``, ...) pass."""
    root = str(source).partition("=")[2]
    if root and not Path(root).expanduser().is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
