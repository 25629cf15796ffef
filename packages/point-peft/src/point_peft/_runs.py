"""Run folders of the ``point-peft`` commands: one run per folder, resumable, and its loss curve.

``pretrain`` and ``train`` both keep the peft-core trainer's ``checkpoints/`` and ``log.jsonl`` in
their output folder, next to a record of what the run is (``<command>_config.json``), so that a
second run never mixes its checkpoints with an earlier one's and ``--resume`` refuses a folder
that was started with other settings.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from peft_core import atomic_write_text

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
) -> None:
    """Refuse to mix two runs in ``output_dir``; remember what this one is, for a later resume.

    Args:
        run_config: what defines the run (JSON-able); a resume must match it, version stamps aside.
        record_name: the file in ``output_dir`` that records ``run_config``.
        artifacts: files the run writes besides the trainer's; ``overwrite`` deletes them too.
        what: how the refusal to resume names the settings ("architecture or recipe", ...).
    """
    from peft_core.trainer.checkpointing import CHECKPOINT_DIR, checkpoint_directories

    earlier = checkpoint_directories(output_dir)
    record = output_dir / record_name
    if overwrite:
        for folder in (CHECKPOINT_DIR, "final"):
            shutil.rmtree(output_dir / folder, ignore_errors=True)
        for name in ("log.jsonl", record_name, *artifacts):
            (output_dir / name).unlink(missing_ok=True)
    elif earlier and not resume:
        raise FileExistsError(
            f"{output_dir} holds checkpoints of an earlier run (newest: {earlier[-1].name}); "
            "resume it (--resume), overwrite it (--overwrite), or use another output folder"
        )
    elif earlier and record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        if comparable(saved) != comparable(run_config):
            raise FileExistsError(
                f"cannot resume {output_dir}: it was started with another {what} "
                f"(see {record}); use the same options, or --overwrite"
            )
    atomic_write_text(record, json.dumps(run_config, indent=2) + "\n")


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
