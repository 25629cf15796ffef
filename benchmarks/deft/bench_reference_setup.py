"""Which part of the reference setup lets the task survive the paper's λ = 1?

On real MiniLM with our recipe (LoRA, lr 2e-3, batch 32, 2 epochs of 2,000 sentences, density loss
over real tokens only), λ = 1 drives the representation to collapse (`deft-weight-sweep`). The
reference scripts differ in three ways, each a row here, LoRA r=8 on Q/V, seed 0, same data:

- the step size and length: AdamW lr 3e-4, batch 64, 10 epochs (the spec's GLUE recipe),
  against lr 3e-4 for our 2 epochs (so that step size and length can be told apart);
- the loss counts padding: batches padded to 128 tokens and the density loss averaged over every
  position (`count_padding=True`), as the reference does, so it can fall on pads alone;
- plain LoRA at each step size is the baseline.

Reported per row: test accuracy, exact-zero density on the test split in fp32 (masked: real
tokens only, and reference: every position of batches padded to 128, as the reference measured
it), the loss curve. The record is rewritten after every row; a rerun with --resume resumes after
the last one.

`python -m benchmarks.run deft-reference-setup` (5-15 min per row on a quiet 2-core CPU; the rows
padded to 128 and the 10-epoch rows are the slow ones).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from benchmarks.deft.bench_minilm import (
    EVAL_BATCH_SIZE,
    MAX_TRAIN,
    QUICK_EVAL,
    THRESHOLDS,
    _quick_task,
    _train,
)
from benchmarks.deft.measurements import accuracy, batches
from benchmarks.records import make_record, read_matching_record, record_path, write_record

SEED = 0
REFERENCE_LENGTH = 128  # the reference pads every sentence to this many tokens


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    learning_rate: float
    batch_size: int
    epochs: float
    weight: float
    pads_counted: bool = False  # pad to REFERENCE_LENGTH and count the pads in the loss


# New information first: a rerun with --resume after an interruption resumes in this order.
SETTINGS = (
    Setting("paper recipe, plain LoRA", 3e-4, 64, 10.0, 0.0),
    Setting("paper recipe, λ = 1", 3e-4, 64, 10.0, 1.0),
    Setting("lr 2e-3, 2 epochs, λ = 1, pads counted", 2e-3, 32, 2.0, 1.0, True),
    Setting("lr 3e-4, 2 epochs, plain LoRA", 3e-4, 32, 2.0, 0.0),
    Setting("lr 3e-4, 2 epochs, λ = 1", 3e-4, 32, 2.0, 1.0),
    Setting("lr 3e-4, 2 epochs, λ = 1, pads counted", 3e-4, 32, 2.0, 1.0, True),
    Setting("paper recipe, λ = 1, pads counted", 3e-4, 64, 10.0, 1.0, True),
)
RECORD_NAME = "deft reference setup minilm lora"


def fixed_length(collate: Any, length: int) -> Any:
    """The task's collator, padding every batch to ``length`` tokens instead."""
    from peft_core.data import DynamicPaddingCollator

    return DynamicPaddingCollator(
        collate.pad_token_id,
        pad_token_type_id=collate.pad_values["token_type_ids"],
        padding_side=collate.padding_side,
        pad_to_length=length,
    )


def measure_setting(task: Any, setting: Setting, epochs: float) -> dict[str, Any]:
    """Train LoRA under ``setting``; accuracy, densities (masked; reference at 128) and curve."""
    from deft import measure_density

    padded = fixed_length(task.collate, REFERENCE_LENGTH)
    train_task = dataclasses.replace(task, collate=padded) if setting.pads_counted else task
    model, result = _train(
        train_task, "lora", setting.learning_rate, SEED, setting.weight, epochs,
        batch_size=setting.batch_size, count_padding=setting.pads_counted,
    )  # fmt: skip
    test_batches = batches(task.test, task.collate, EVAL_BATCH_SIZE)
    padded_batches = batches(task.test, padded, EVAL_BATCH_SIZE)
    report = measure_density(model, test_batches, thresholds=THRESHOLDS)
    padded_report = measure_density(model, padded_batches, thresholds=())
    return {
        **dataclasses.asdict(setting),
        "epochs": epochs,
        "test_accuracy": accuracy(model, test_batches),
        "report": report.to_dict(),
        f"reference_density_padded_to_{REFERENCE_LENGTH}": padded_report.mean("reference"),
        "train_seconds": result["train_seconds"],
        "steps": result["steps"],
        "loss_curve": result["loss_curve"],
    }


def _config(settings, max_train: int, quick: bool) -> dict[str, Any]:
    return {
        "method": "LoRA r=8 (query, value)",
        "seed": SEED,
        "settings": [dataclasses.asdict(s) for s in settings],
        "max_train": max_train,
        "reference_length": REFERENCE_LENGTH,
        "thresholds": list(THRESHOLDS),
        "quick": quick,
    }


def _record(rows: list[dict[str, Any]], config: dict[str, Any], name: str) -> dict[str, Any]:
    quick = config["quick"]
    return make_record(
        name,
        method="LoRA with and without the density loss under parts of the reference setup",
        model="all-MiniLM-L6-v2 (real weights), sequence classification head, fp32",
        data=f"Rotten-Tomatoes polarity: {config['max_train']} random training sentences (seed "
        f"{SEED}), " + (f"{QUICK_EVAL}-sentence test subset" if quick else "full test split"),
        config=config,
        seed=SEED,
        train_info={row["name"]: row["train_seconds"] for row in rows},
        eval_info={
            "settings": rows,
            "completed": [row["name"] for row in rows],
            "metric": "test accuracy of the final weights; density in % of non-zero MLP "
            "activations (GELU output) on the test split, fp32",
        },
    )


def main(quick: bool = False) -> list[Path]:
    from peft_core.recipes import load_text_task

    settings, name = SETTINGS, RECORD_NAME
    if quick:  # a smoke run: one padded and one plain setting, half an epoch on 64 sentences
        settings, name = (SETTINGS[2], SETTINGS[3]), RECORD_NAME + " quick"
    max_train = 64 if quick else MAX_TRAIN
    config = _config(settings, max_train, quick)
    earlier = read_matching_record(name, config)
    rows = [] if earlier is None else list(earlier["eval_info"]["settings"])
    task = load_text_task(max_train=max_train, seed=SEED, verbose=False)
    if quick:
        task = _quick_task(task, QUICK_EVAL, SEED)
    for setting in settings:
        if any(row["name"] == setting.name for row in rows):
            continue  # finished by an interrupted earlier invocation
        row = measure_setting(task, setting, 0.5 if quick else setting.epochs)
        rows.append(row)
        print(
            f"   {setting.name}: accuracy {row['test_accuracy']:.4f}, masked density "
            f"{row['report']['mean']['masked']:.2f}%, padded to {REFERENCE_LENGTH} "
            f"{row[f'reference_density_padded_to_{REFERENCE_LENGTH}']:.2f}%",
            flush=True,
        )
        write_record(_record(rows, config, name))
    return [record_path(name)]
