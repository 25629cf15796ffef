"""How the density-loss weight λ trades accuracy for density on real MiniLM + LoRA.

The main DEFT suite (`deft-minilm`) uses the paper's λ = 1, one point of a trade-off: a small λ
may leave the exact-zero density where plain LoRA has it, a large one may cost the task (the
record shows where both happen for this model and budget). This suite measures the curve:
LoRA (r=8 on Q/V, the `deft-minilm` recipe and learning rate), the same 2,000 training sentences,
seed and data order for every λ, test accuracy and activation density (masked and thresholded)
per λ, and the task and density losses along training.

The record is rewritten after every λ, and a rerun with --resume resumes after the last finished
one.

`python -m benchmarks.run deft-weight-sweep` (about 5 min per λ on a quiet 2-core CPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.deft.bench_minilm import (
    BATCH_SIZE,
    EPOCHS,
    EVAL_BATCH_SIZE,
    MAX_TRAIN,
    METHODS,
    QUICK_EVAL,
    THRESHOLDS,
    _quick_task,
    _train,
)
from benchmarks.deft.measurements import accuracy, batches
from benchmarks.records import make_record, read_matching_record, record_path, write_record

METHOD = "LoRA"
SEED = 0
WEIGHTS = (0.0, 0.3, 0.5, 0.7, 1.0)
RECORD_NAME = "deft density-weight sweep minilm lora"


def measure_weight(task: Any, weight: float, epochs: float) -> dict[str, Any]:
    """Train LoRA with density weight ``weight``; accuracy, densities and loss curve."""
    from deft import measure_density

    method, learning_rate = METHODS[METHOD]
    model, result = _train(task, method, learning_rate, SEED, weight, epochs)
    test_batches = batches(task.test, task.collate, EVAL_BATCH_SIZE)
    report = measure_density(model, test_batches, thresholds=THRESHOLDS)
    return {
        "weight": weight,
        "test_accuracy": accuracy(model, test_batches),
        "report": report.to_dict(),
        "train_seconds": result["train_seconds"],
        "steps": result["steps"],
        "loss_curve": result["loss_curve"],
    }


def _config(weights, max_train, epochs, quick) -> dict[str, Any]:
    return {
        "method": METHOD,
        "learning_rate": METHODS[METHOD][1],
        "seed": SEED,
        "weights": list(weights),
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "max_train": max_train,
        "thresholds": list(THRESHOLDS),
        "quick": quick,
    }


def _record(rows: list[dict[str, Any]], config: dict[str, Any], name: str) -> dict[str, Any]:
    quick = config["quick"]
    return make_record(
        name,
        method="LoRA + density loss with weight λ swept, against λ = 0 (plain LoRA)",
        model="all-MiniLM-L6-v2 (real weights), sequence classification head, fp32",
        data=f"Rotten-Tomatoes polarity: {config['max_train']} random training sentences (seed "
        f"{SEED}), " + (f"{QUICK_EVAL}-sentence test subset" if quick else "full test split"),
        config=config,
        seed=SEED,
        train_info={_key(row["weight"]): row["train_seconds"] for row in rows},
        eval_info={
            "weights": rows,
            "completed": [row["weight"] for row in rows],
            "metric": "test accuracy of the final weights; density in % of non-zero MLP "
            "activations (GELU output) on the test split, fp32",
        },
    )


def _key(weight: float) -> str:
    return f"lambda={weight:g}"


def run_sweep(weights, epochs: float, record_name: str, quick: bool = False) -> list[Path]:
    """Train and measure LoRA for every λ in ``weights``; resume a matching earlier record."""
    from peft_core.recipes import load_text_task

    if quick:  # a smoke run: the two ends of the sweep, half an epoch on 64 sentences
        weights, epochs, record_name = (weights[0], weights[-1]), 0.5, record_name + " quick"
    max_train = 64 if quick else MAX_TRAIN
    config = _config(weights, max_train, epochs, quick)
    earlier = read_matching_record(record_name, config)
    rows = [] if earlier is None else list(earlier["eval_info"]["weights"])
    task = load_text_task(max_train=max_train, seed=SEED, verbose=False)
    if quick:
        task = _quick_task(task, QUICK_EVAL, SEED)
    for weight in weights:
        if any(row["weight"] == weight for row in rows):
            continue  # finished by an interrupted earlier invocation
        row = measure_weight(task, weight, epochs)
        rows.append(row)
        masked = row["report"]["mean"]["masked"]
        print(
            f"   λ={weight:g}, {epochs:g} epochs: accuracy {row['test_accuracy']:.4f}, masked "
            f"density {masked:.2f}%, |a|>1e-3 {row['report']['mean']['thresholded@0.001']:.2f}%",
            flush=True,
        )
        write_record(_record(rows, config, record_name))
    return [record_path(record_name)]


def main(quick: bool = False) -> list[Path]:
    return run_sweep(WEIGHTS, EPOCHS, RECORD_NAME, quick)
