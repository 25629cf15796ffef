"""Does LoRA on the MLP input give the density loss the lever that LoRA on Q/V lacks?

The paper puts LoRA on the attention's query and value. Then the pre-activation ``X W1`` of every
MLP moves only through the attention output, the residual add and a LayerNorm, and on MiniLM the
exact-zero density barely moves unless the task is destroyed (`deft-weight-sweep`,
`deft-weight-schedule`). This suite adds LoRA on every MLP input projection with its bias trained
(``apply_method(model, "lora", mlp_inputs=True, bias="lora_only")``, :mod:`deft.mlp_inputs`) and
compares, on the same data, seed and data order (LoRA r=8, lr 2e-3, :data:`EPOCHS` epochs of 2,000
sentences, seed 0):

- plain LoRA for each target set (λ = 0), the reference of that set's density reductions;
- λ = 1 from the first step (the paper's), λ = 1 and λ = 10 held at 0 for an epoch and ramped in
  over the next (:class:`deft.DensityWeightSchedule`);

and for every DEFT row the matched-density threshold baseline of the same target set (plain LoRA
with |a| ≤ τ zeroed, τ calibrated per layer on training sentences to the row's masked density).
Each plain row also records the threshold baseline's accuracy from 90 down to 10 % density (τ
calibrated on training sentences; the density reached on the test split is recorded next to it):
the curve a DEFT row has to lie above.

The record is rewritten after every row and a rerun with --resume resumes after the last finished
one (also when settings are added). `python -m benchmarks.run deft-lora-targets` (about 5 min per
row on a quiet 2-core CPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.deft.bench_minilm import METHODS, THRESHOLDS, _train
from benchmarks.deft.measurements import accuracy, thresholded
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

EPOCHS = 4.0
QV = "Q/V"
QV_MLP = "Q/V + MLP inputs"
TARGETS: dict[str, dict[str, Any]] = {
    QV: {},
    QV_MLP: {"mlp_inputs": True, "bias": "lora_only"},
}
# setting -> (target set, λ, delay, ramp); delay and ramp are fractions of the run
SETTINGS: dict[str, tuple[str, float, float, float]] = {
    f"{QV}, λ = 0": (QV, 0.0, 0.0, 0.0),
    f"{QV}, λ = 10 after 1 epoch, ramped in over 1 epoch": (QV, 10.0, 0.25, 0.25),
    f"{QV_MLP}, λ = 0": (QV_MLP, 0.0, 0.0, 0.0),
    f"{QV_MLP}, λ = 1 from the first step": (QV_MLP, 1.0, 0.0, 0.0),
    f"{QV_MLP}, λ = 1 after 1 epoch, ramped in over 1 epoch": (QV_MLP, 1.0, 0.25, 0.25),
    f"{QV_MLP}, λ = 10 after 1 epoch, ramped in over 1 epoch": (QV_MLP, 10.0, 0.25, 0.25),
}
# masked densities of the plain rows' threshold curve; 30 % and below is where sparse inference
# pays (`deft-sparse`)
CURVE_DENSITIES = (0.9, 0.75, 0.5, 0.3, 0.2, 0.1)
RECORD_NAME = "deft lora targets minilm"


def _plain(targets: str) -> str:
    return next(name for name, (t, weight, *_) in SETTINGS.items() if t == targets and not weight)


def train_row(task: Any, setting: str, epochs: float, test_batches: list) -> tuple[Any, dict]:
    """Train LoRA on ``setting``'s targets under its λ schedule; the model and its measured row."""
    from deft import DensityWeightSchedule, measure_density

    targets, weight, delay, ramp = SETTINGS[setting]
    schedule = DensityWeightSchedule(weight, delay=delay, ramp=ramp) if weight else 0.0
    method, learning_rate = METHODS["LoRA"]
    model, result = _train(
        task, method, learning_rate, SEED, schedule, epochs, method_options=TARGETS[targets]
    )
    report = measure_density(model, test_batches, thresholds=THRESHOLDS)
    return model, {
        "setting": setting,
        "targets": targets,
        "weight": weight,
        "delay": delay,
        "ramp": ramp,
        "test_accuracy": accuracy(model, test_batches),
        "report": report.to_dict(),
        "trainable_params": result["trainable_params"],
        "train_seconds": result["train_seconds"],
        "steps": result["steps"],
        "loss_curve": result["loss_curve"],
    }


def threshold_curve(plain: Any, calibration: list, test_batches: list) -> dict[str, dict]:
    """Test accuracy and the density reached on the test split, for each calibrated density.

    τ is calibrated on training sentences, so the test split's density is measured, not assumed.
    """
    curve = {}
    for density in CURVE_DENSITIES:
        _, report, test_accuracy = thresholded(
            plain, calibration, density, test_batches, thresholds=()
        )
        curve[_curve_key(density)] = {
            "test_accuracy": test_accuracy,
            "test_masked_density_percent": report.mean("masked"),
        }
    return curve


def _record(rows: dict[str, dict], config: dict[str, Any], name: str) -> dict[str, Any]:
    for row in rows.values():
        compare_with_plain(row, rows.get(_plain(row["targets"])))
    method = (
        "LoRA on Q/V vs LoRA on Q/V + every MLP input projection (bias trained), each plain "
        "and with the density loss, against the matched-density threshold baseline"
    )
    return single_seed_record(name, method, rows, config)


def _finished(row: dict | None) -> bool:
    if row is None:
        return False
    if row["weight"]:
        return "threshold_baseline" in row
    return set(row.get("threshold_curve", ())) >= {_curve_key(d) for d in CURVE_DENSITIES}


def _curve_key(density: float) -> str:
    return f"{100 * density:g}"


def main(quick: bool = False) -> list[Path]:
    setup = Setup.load(quick, EPOCHS)
    name = RECORD_NAME + (" quick" if quick else "")
    config = setup.config(
        targets=TARGETS,
        settings={setting: list(values) for setting, values in SETTINGS.items()},
        curve_densities=list(CURVE_DENSITIES),
    )
    rows = recorded_rows(name, config, SETTINGS, ignoring=("settings", "curve_densities"))
    task, epochs, test_batches = setup.task, setup.epochs, setup.test_batches
    plain_models: dict[str, Any] = {}
    for setting, (targets, *_) in SETTINGS.items():
        if _finished(rows.get(setting)):
            continue  # finished by an interrupted earlier invocation
        plain = _plain(targets)
        if targets not in plain_models:
            # the plain model of these targets is needed for the baselines (training is seeded)
            plain_models[targets], plain_row = train_row(task, plain, epochs, test_batches)
            plain_row["threshold_curve"] = threshold_curve(
                plain_models[targets], setup.calibration, test_batches
            )
            rows[plain] = plain_row
            print_row(plain_row, _curve_text(plain_row["threshold_curve"]))
            write_record(_record(rows, config, name))
        if setting == plain:
            continue
        _, row = train_row(task, setting, epochs, test_batches)
        row["threshold_baseline"] = threshold_baseline(
            plain_models[targets], row, setup.calibration, test_batches
        )
        rows[setting] = row
        print_row(row)
        write_record(_record(rows, config, name))
    return [record_path(name)]


def _curve_text(curve: dict[str, dict]) -> str:
    return "".join(
        f"; thresholded to {density}%: accuracy {point['test_accuracy']:.4f} at "
        f"{point['test_masked_density_percent']:.2f}%"
        for density, point in curve.items()
    )
