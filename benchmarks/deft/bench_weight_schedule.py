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

The record is rewritten after every row and a rerun with --resume resumes after the last finished
one (also when settings are added). `python -m benchmarks.run deft-weight-schedule` (about 8 min per
row on a quiet 2-core CPU, twice that while another job runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.deft.bench_minilm import METHODS, THRESHOLDS, _train
from benchmarks.deft.measurements import accuracy
from benchmarks.deft.single_seed_rows import (
    SEED,
    Setup,
    compare_with_plain,
    print_row,
    recorded_rows,
    single_seed_record,
    threshold_baseline,
)
from benchmarks.records import record_path, write_record

METHOD = "LoRA"
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


def _record(rows: dict[str, dict], config: dict[str, Any], name: str) -> dict[str, Any]:
    for row in rows.values():
        compare_with_plain(row, rows.get(PLAIN))
    method = (
        "LoRA + density loss: constant λ vs λ held at 0 then ramped in, against plain LoRA "
        "and the matched-density threshold baseline"
    )
    return single_seed_record(name, method, rows, config)


def main(quick: bool = False) -> list[Path]:
    setup = Setup.load(quick, EPOCHS)
    name = RECORD_NAME + (" quick" if quick else "")
    settings = {setting: list(values) for setting, values in SETTINGS.items()}
    config = setup.config(method=METHOD, settings=settings)
    rows = recorded_rows(name, config, SETTINGS, ignoring=("settings",))
    task, epochs, test_batches = setup.task, setup.epochs, setup.test_batches
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
                plain_model, row, setup.calibration, test_batches
            )
        rows[setting] = row
        print_row(row)
        write_record(_record(rows, config, name))
    return [record_path(name)]
