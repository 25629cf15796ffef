"""Once the threshold is part of training, does the density loss beat thresholding after training?

On MiniLM the paper's loss cannot beat the matched-density threshold baseline (`deft-minilm`,
`deft-weight-schedule`, `deft-lora-targets`): with ε = 1e-7, s(a) = a²/(a²+ε) is flat wherever
|a| ≫ 3e-4, which is almost every GELU output, while zeroing |a| ≤ τ after training already
reaches 30 % density for nothing. This suite puts the two together (LoRA r=8 on Q/V, lr 2e-3,
:data:`EPOCHS` epochs of the same 2,000 sentences, training seeds 0–4, side by side per seed):

- plain LoRA (λ = 0), the reference, thresholded after training for the baselines;
- LoRA trained with the threshold in place: τ calibrated per layer on the starting model
  (LoRA starts at the base model) so that :data:`TRAINING_DENSITY` of the activations stay
  non-zero, |a| ≤ τ zeroed in every forward pass of training and evaluation
  (:func:`deft.calibrate_threshold`, :func:`deft.apply_threshold`), λ = 0: what training with
  the zeros costs or buys on its own;
- the same plus the density loss with ε = :data:`EPS` ≈ τ² (s(a) then bends around the threshold
  instead of around 3e-4, so it pushes the activations just above τ below it), λ = 5 held at 0
  for an epoch and ramped in over the next (:class:`deft.DensityWeightSchedule`).

Every row with a threshold is compared with the plain model thresholded after training to the
row's own test density (τ calibrated on training sentences): the matched-density baseline.

`deft-threshold-in-training-low` repeats the suite at 10 % density
(:mod:`benchmarks.deft.bench_threshold_in_training_low`), where thresholding after training
starts to cost accuracy. The record is rewritten after every row and a rerun with --resume
resumes after the last finished one.
`python -m benchmarks.run deft-threshold-in-training` (about 5 min per row on a quiet 2-core CPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.deft.bench_minilm import METHODS, THRESHOLDS, _train
from benchmarks.deft.measurements import accuracy, summary
from benchmarks.deft.single_seed_rows import (
    Setup,
    compare_with_plain,
    print_row,
    threshold_baseline,
)
from benchmarks.records import make_record, read_matching_record, record_path, write_record

SEEDS = (0, 1, 2, 3, 4)
EPOCHS = 4.0
TRAINING_DENSITY = 0.3  # the fraction of activations the training threshold keeps non-zero
EPS = 0.02  # ≈ τ² for the τ ≈ 0.15–0.16 that keeps 30 % of MiniLM's GELU outputs
PLAIN = "plain LoRA"
WITH_THRESHOLD = "trained with the threshold"
RECORD_NAME = "deft threshold in training minilm"
# the density-loss row's schedule: λ, and the delay and ramp as fractions of training
LOSS_WEIGHT, LOSS_DELAY, LOSS_RAMP = 5.0, 0.25, 0.25


def with_loss(eps: float) -> str:
    """The label of the row trained with the threshold and the density loss (built from its
    schedule, so the label cannot drift from what ran)."""
    delay, ramp = LOSS_DELAY * EPOCHS, LOSS_RAMP * EPOCHS
    schedule = f"after {delay:g} epoch{'s' * (delay != 1)}, ramped over {ramp:g}"
    return (
        f"trained with the threshold + density loss (λ = {LOSS_WEIGHT:g}, ε = {eps:g}, {schedule})"
    )


def settings(eps: float) -> dict[str, tuple[bool, float, float, float]]:
    """setting -> (threshold in training, λ, delay, ramp)."""
    return {
        PLAIN: (False, 0.0, 0.0, 0.0),
        WITH_THRESHOLD: (True, 0.0, 0.0, 0.0),
        with_loss(eps): (True, LOSS_WEIGHT, LOSS_DELAY, LOSS_RAMP),
    }


def train_row(
    setup: Setup, setting: str, seed: int, training_density: float = TRAINING_DENSITY,
    eps: float = EPS,
) -> tuple[Any, dict]:  # fmt: skip
    """Train ``setting`` with ``seed``; the model (its threshold left installed) and its row."""
    from deft import DensityWeightSchedule, apply_threshold, calibrate_threshold, measure_density

    in_training, weight, delay, ramp = settings(eps)[setting]
    schedule = DensityWeightSchedule(weight, delay=delay, ramp=ramp) if weight else 0.0
    installed: dict[str, Any] = {}

    def install_threshold(model: Any) -> None:
        # calibrated on the starting model: LoRA's B = 0, so this is the base model's τ
        taus = calibrate_threshold(model, setup.calibration, training_density)
        installed["handle"] = apply_threshold(model, taus)

    method, learning_rate = METHODS["LoRA"]
    model, result = _train(
        setup.task, method, learning_rate, seed, schedule, setup.epochs, eps=eps,
        before_training=install_threshold if in_training else None,
    )  # fmt: skip
    report = measure_density(model, setup.test_batches, thresholds=THRESHOLDS)
    row = {
        "setting": setting,
        "seed": seed,
        "threshold_in_training": in_training,
        "weight": weight,
        "test_accuracy": accuracy(model, setup.test_batches),
        "report": report.to_dict(),
        "train_seconds": result["train_seconds"],
        "steps": result["steps"],
        "loss_curve": result["loss_curve"],
    }
    if in_training:
        handle = installed["handle"]
        row["taus"] = handle.thresholds
        handle.remove()  # what the trained weights score without their zeros
        row["test_accuracy_threshold_removed"] = accuracy(model, setup.test_batches)
    return model, row


def _summaries(seeds: dict[str, dict[str, dict]], eps: float) -> dict[str, dict]:
    """Per setting, mean ± std over the seeds that finished it."""
    out: dict[str, dict] = {}
    for setting in settings(eps):
        rows = [by_setting[setting] for by_setting in seeds.values() if setting in by_setting]
        if not rows:
            continue
        entry = {
            "seeds": len(rows),
            "test_accuracy": summary([row["test_accuracy"] for row in rows]),
            "masked_density_percent": summary([row["report"]["mean"]["masked"] for row in rows]),
        }
        compared = [row for row in rows if "threshold_baseline" in row]
        if compared:
            entry["threshold_baseline_accuracy"] = summary(
                [row["threshold_baseline"]["test_accuracy"] for row in compared]
            )
            entry["minus_threshold_baseline_points"] = summary(
                [row["deft_minus_threshold_baseline_points"] for row in compared]
            )
            entry["masked_reduction_relative_percent"] = summary(
                [row["masked_reduction_relative_percent"] for row in compared]
            )
            entry["accuracy_change_points"] = summary(
                [row["accuracy_change_points"] for row in compared]
            )
        out[setting] = entry
    return out


def _record(seeds: dict[str, dict[str, dict]], config: dict[str, Any], name: str) -> dict:
    for by_setting in seeds.values():
        for row in by_setting.values():
            compare_with_plain(row, by_setting.get(PLAIN))
    data = f"Rotten-Tomatoes polarity: {config['max_train']} random training sentences (seed 0), "
    return make_record(
        name,
        method="LoRA r=8 on Q/V: plain, trained with |a| ≤ τ zeroed, and that plus the density "
        "loss with ε ≈ τ², against the plain model thresholded after training",
        model="all-MiniLM-L6-v2 (real weights), sequence classification head, fp32",
        data=data + ("32-sentence test subset" if config["quick"] else "full test split"),
        config=config,
        seed=None,
        train_info={
            f"{seed} / {setting}": row["train_seconds"]
            for seed, by_setting in seeds.items()
            for setting, row in by_setting.items()
        },
        eval_info={
            "seeds": seeds,
            "summary": _summaries(seeds, config["eps"]),
            "metric": "test accuracy of the final weights (with the training threshold in place "
            "where there is one); density in % of non-zero GELU outputs on the test split, fp32",
        },
    )


def _finished(row: dict | None) -> bool:
    if row is None:
        return False
    return row["setting"] == PLAIN or "threshold_baseline" in row


def main(quick: bool = False) -> list[Path]:
    return run(quick, TRAINING_DENSITY, EPS, RECORD_NAME)


def run(quick: bool, training_density: float, eps: float, record_name: str) -> list[Path]:
    """Train every setting for every seed with this training density and ε; write the record."""
    setup = Setup.load(quick, EPOCHS)
    name = record_name + (" quick" if quick else "")
    seeds_to_run = SEEDS[:1] if quick else SEEDS
    rows_of = settings(eps)
    config = setup.config(
        seeds=list(seeds_to_run),
        training_density=training_density,
        eps=eps,
        settings={setting: list(values) for setting, values in rows_of.items()},
    )
    config.pop("seed")
    earlier = read_matching_record(name, config, ignoring=("seeds",))
    seeds: dict[str, dict[str, dict]] = {} if earlier is None else earlier["eval_info"]["seeds"]
    for seed in seeds_to_run:
        by_setting = seeds.setdefault(str(seed), {})
        plain_model = None
        for setting in rows_of:
            if _finished(by_setting.get(setting)):
                continue  # finished by an interrupted earlier invocation
            if plain_model is None:
                # the plain model is needed for the baselines (training is seeded: same weights)
                plain_model, by_setting[PLAIN] = train_row(setup, PLAIN, seed)
                print_row(by_setting[PLAIN], f" (seed {seed})")
                write_record(_record(seeds, config, name))
            if setting == PLAIN:
                continue
            _, row = train_row(setup, setting, seed, training_density, eps)
            row["threshold_baseline"] = threshold_baseline(
                plain_model, row, setup.calibration, setup.test_batches
            )
            by_setting[setting] = row
            print_row(row, f" (seed {seed})")
            write_record(_record(seeds, config, name))
    return [record_path(name)]
