"""Does holding λ at 0 until the task is learned keep DEFT from destroying the task?

With the paper's constant λ = 1 and LoRA's step size (2e-3), MiniLM's task loss never leaves
ln 2 (`deft-weight-sweep`): the density term wins from the first step. A
:class:`deft.DensityWeightSchedule` trains the first part of the run with λ = 0, then ramps λ in.
This suite compares, on the same data, seed and data order (LoRA r=8 on Q/V, the `deft-minilm`
recipe, :data:`EPOCHS` epochs of 2,000 sentences, seed 0):

- plain LoRA (λ = 0), the reference of every density reduction;
- λ = 1 from the first step (the paper's);
- λ = 1 after a delay and a linear ramp (the guard);

and for every DEFT row the matched-density threshold baseline: the plain LoRA model with
|a| ≤ τ zeroed, τ calibrated per layer on training sentences to the row's masked density. Each
row records test accuracy, the density report (masked, reference, thresholded) and the loss curve
with λ per step.

The record is rewritten after every row and a rerun resumes after the last finished one (also
when settings are added). `python -m benchmarks.run deft-weight-schedule` (about 8 min per row on
a quiet 2-core CPU, twice that while another job runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.deft.bench_minilm import (
    BATCH_SIZE,
    CALIBRATION_EXAMPLES,
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
EPOCHS = 4.0
PLAIN = "plain LoRA (λ = 0)"
# setting -> (λ, delay, ramp); delay and ramp are fractions of the run
SETTINGS: dict[str, tuple[float, float, float]] = {
    PLAIN: (0.0, 0.0, 0.0),
    "λ = 1 after 1 epoch, ramped in over 1 epoch": (1.0, 0.25, 0.25),
    "λ = 1 from the first step (the paper's)": (1.0, 0.0, 0.0),
}
RECORD_NAME = "deft density-weight schedule minilm lora"


def _schedule(setting: str):
    from deft import DensityWeightSchedule

    weight, delay, ramp = SETTINGS[setting]
    return DensityWeightSchedule(weight, delay=delay, ramp=ramp)


def train_row(task: Any, setting: str, epochs: float, test_batches: list) -> tuple[Any, dict]:
    """Train LoRA under ``setting``'s λ schedule; the model and its measured row."""
    from deft import measure_density

    method, learning_rate = METHODS[METHOD]
    schedule = _schedule(setting)
    weight = schedule if schedule.weight else 0.0
    model, result = _train(task, method, learning_rate, SEED, weight, epochs)
    report = measure_density(model, test_batches, thresholds=THRESHOLDS)
    return model, {
        "setting": setting,
        "weight": schedule.weight,
        "delay": schedule.delay,
        "ramp": schedule.ramp,
        "test_accuracy": accuracy(model, test_batches),
        "report": report.to_dict(),
        "train_seconds": result["train_seconds"],
        "steps": result["steps"],
        "loss_curve": result["loss_curve"],
    }


def threshold_baseline(plain: Any, row: dict, calibration: list, test_batches: list) -> dict:
    """The plain model thresholded (|a| ≤ τ zeroed) at ``row``'s masked density."""
    from deft import apply_threshold, calibrate_threshold, measure_density

    target = row["report"]["mean"]["masked"] / 100
    taus = calibrate_threshold(plain, calibration, target)
    with apply_threshold(plain, taus):
        report = measure_density(plain, test_batches, thresholds=THRESHOLDS)
        test_accuracy = accuracy(plain, test_batches)
    return {
        "target_density_percent": 100 * target,
        "taus": taus,
        "test_accuracy": test_accuracy,
        "report": report.to_dict(),
    }


def _config(max_train: int, epochs: float, calibration_examples: int, quick: bool) -> dict:
    return {
        "method": METHOD,
        "learning_rate": METHODS[METHOD][1],
        "seed": SEED,
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "warmup_ratio": 0.06,
        "max_train": max_train,
        "thresholds": list(THRESHOLDS),
        "calibration_examples": calibration_examples,
        "settings": {name: list(values) for name, values in SETTINGS.items()},
        "quick": quick,
    }


def _record(rows: dict[str, dict], config: dict[str, Any], name: str) -> dict[str, Any]:
    plain = rows.get(PLAIN)
    for row in rows.values():
        if plain is not None and row is not plain:
            row["accuracy_change_points"] = 100 * (row["test_accuracy"] - plain["test_accuracy"])
            base, now = plain["report"]["mean"]["masked"], row["report"]["mean"]["masked"]
            row["masked_reduction_relative_percent"] = 100 * (base - now) / base
        if "threshold_baseline" in row:
            row["deft_minus_threshold_baseline_points"] = 100 * (
                row["test_accuracy"] - row["threshold_baseline"]["test_accuracy"]
            )
    data = (
        f"Rotten-Tomatoes polarity: {config['max_train']} random training sentences (seed {SEED}), "
    )
    return make_record(
        name,
        method="LoRA + density loss: constant λ vs λ held at 0 then ramped in, against plain LoRA "
        "and the matched-density threshold baseline",
        model="all-MiniLM-L6-v2 (real weights), sequence classification head, fp32",
        data=data
        + (f"{QUICK_EVAL}-sentence test subset" if config["quick"] else "full test split"),
        config=config,
        seed=SEED,
        train_info={setting: row["train_seconds"] for setting, row in rows.items()},
        eval_info={
            "settings": rows,
            "completed": list(rows),
            "metric": "test accuracy of the final weights; density in % of non-zero MLP "
            "activations (GELU output) on the test split, fp32",
        },
    )


def main(quick: bool = False) -> list[Path]:
    from peft_core.recipes import load_text_task, random_subset

    max_train = 64 if quick else MAX_TRAIN
    epochs = 0.5 if quick else EPOCHS
    calibration_examples = 32 if quick else CALIBRATION_EXAMPLES
    name = RECORD_NAME + (" quick" if quick else "")
    config = _config(max_train, epochs, calibration_examples, quick)
    earlier = read_matching_record(name, config, ignoring=("settings",))
    rows: dict[str, dict] = {} if earlier is None else dict(earlier["eval_info"]["settings"])
    rows = {k: v for k, v in rows.items() if k in SETTINGS}  # settings dropped since are gone
    task = load_text_task(max_train=max_train, seed=SEED, verbose=False)
    if quick:
        task = _quick_task(task, QUICK_EVAL, SEED)
    test_batches = batches(task.test, task.collate, EVAL_BATCH_SIZE)
    calibration_set = random_subset(task.train, calibration_examples, SEED + 1)
    calibration = batches(calibration_set, task.collate, EVAL_BATCH_SIZE)
    plain_model = None
    for setting in SETTINGS:
        if setting in rows and (setting == PLAIN or "threshold_baseline" in rows[setting]):
            continue  # finished by an interrupted earlier invocation
        if setting != PLAIN and plain_model is None:
            # the plain model is needed for the threshold baseline: train it (deterministic)
            plain_model, plain_row = train_row(task, PLAIN, epochs, test_batches)
            rows.setdefault(PLAIN, plain_row)
        model, row = train_row(task, setting, epochs, test_batches)
        if setting == PLAIN:
            plain_model = model
        else:
            row["threshold_baseline"] = threshold_baseline(
                plain_model, row, calibration, test_batches
            )
        rows[setting] = row
        _print(row)
        write_record(_record(rows, config, name))
    return [record_path(name)]


def _print(row: dict[str, Any]) -> None:
    line = (
        f"   {row['setting']}: accuracy {row['test_accuracy']:.4f}, masked density "
        f"{row['report']['mean']['masked']:.2f}%, |a|>1e-3 "
        f"{row['report']['mean']['thresholded@0.001']:.2f}%"
    )
    if "threshold_baseline" in row:
        line += f"; threshold baseline {row['threshold_baseline']['test_accuracy']:.4f}"
    print(line, flush=True)
