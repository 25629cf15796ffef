"""Resumable training checkpoints: trained tensors, optimizer, scheduler, RNG and loop position.

A checkpoint is one directory ``checkpoints/step-00000042`` that appears atomically (built under a
temporary name, then renamed), so a run killed at any moment resumes from the last complete one.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peft_core._atomic import remove_abandoned_staging
from peft_core.serialization import load_trainable

CHECKPOINT_DIR = "checkpoints"
_STEP_PATTERN = re.compile(r"^step-(\d+)$")


@dataclasses.dataclass
class TrainerState:
    """Where the loop is, and what early stopping remembers."""

    global_step: int = 0
    epoch: int = 0
    batches_into_epoch: int = 0  # micro-batches of this process already consumed in `epoch`
    best_metric: float | None = None
    best_step: int | None = None
    evaluations_without_improvement: int = 0
    world_size: int = 1
    # training seconds of the segments before this one, up to the checkpoint (0 in a fresh run;
    # checkpoints written before this field existed read as 0 too)
    train_seconds: float = 0.0
    # What a resume needs to continue the log exactly (absent in older checkpoints): the lines
    # log.jsonl held, the training values not yet averaged into a log line, and the last
    # scheduled evaluation (the final one reuses it when no step was taken since).
    log_lines: int | None = None
    unlogged: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    last_evaluation: dict[str, float] | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        return cls(**json.loads(text))


def capture_rng_state() -> dict[str, Any]:
    """Every random-number generator the training step can draw from, in loadable form."""
    numpy_state = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what user code draws from
    state: dict[str, Any] = {
        "python": random.getstate(),
        # int64, not uint32: older torch cannot serialise uint32 tensors.
        "numpy": (
            numpy_state[0],
            torch.from_numpy(numpy_state[1].astype(np.int64)),
            *numpy_state[2:],
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    # random.setstate insists on tuples, and serialisation may hand back lists.
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def checkpoint_directories(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    root = Path(output_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_PATTERN.match(path.name)
        if match and (path / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def checkpoint_path(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR / f"step-{step:08d}"


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    for path in checkpoint_directories(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def remove_unfinished_checkpoints(output_dir: str | Path) -> None:
    """Delete the staging folders of checkpoints whose writer was killed mid-write."""
    remove_abandoned_staging(Path(output_dir) / CHECKPOINT_DIR, "step-*")


# The weights a run leaves when it ends: the final ones, and the best evaluated ones.
RUN_WEIGHT_DIRS = ("final", "best")


def delete_run_outputs(output_dir: str | Path) -> None:
    """Remove what a training run leaves in ``output_dir``: checkpoints, final and best weights."""
    for folder in (CHECKPOINT_DIR, *RUN_WEIGHT_DIRS):
        shutil.rmtree(Path(output_dir) / folder, ignore_errors=True)


def finished_run_outputs(output_dir: str | Path, files: tuple[str, ...] = ()) -> list[str]:
    """The names of what a finished run left in ``output_dir``: its final and best weights and
    any of ``files`` (a result, a record). A run shorter than its checkpoint interval leaves no
    checkpoint, so these are how a folder shows that it holds one."""
    names = [*RUN_WEIGHT_DIRS, *files]
    return [name for name in names if (Path(output_dir) / name).exists()]


def load_torch(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint_tensors(model: torch.nn.Module, directory: Path) -> None:
    load_trainable(model, directory / "trainable", strict=True)
