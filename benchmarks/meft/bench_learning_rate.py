"""Is MEFT's remaining accuracy gap a matter of step size?

At 6 epochs (`meft-accuracy-long`) MEFT1 at lr 5e-3 lands 1.6 points below full fine-tuning. That
learning rate was picked by hand for the 2-epoch budget; the reference tunes 3e-4 ... 8e-4 over
10 - 40 epochs. This suite trains MEFT1 for 6 epochs at several learning rates on seed 0 and picks
the rate by **validation** accuracy (test accuracy is recorded for every rate but plays no part in
the pick), so a better rate, if there is one, can be rerun over seeds 0-2 without having been
chosen on test data.

Rates tied on validation accuracy are all reported as picked.

`python -m benchmarks.run meft-learning-rate` (about 8 min per run on a quiet 2-core CPU; with
--resume, lr 5e-3 is taken from the `meft-accuracy-long` record when that has its seed-0 run with
the last epoch evaluated, and a rerun with --resume resumes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.meft import bench_accuracy, bench_accuracy_long
from benchmarks.records import make_record, read_matching_record, write_record

SETTING = "MEFT1 (float64 streams)"
LEARNING_RATES = (1e-3, 2e-3, 5e-3, 1e-2)
SEED = 0
RECORD_NAME = "meft learning rate minilm rotten-tomatoes"


def _run_from_long_record(learning_rate: float) -> dict[str, Any] | None:
    """The seed-0 run of :data:`SETTING` that `meft-accuracy-long` already trained at this rate."""
    if learning_rate != bench_accuracy.SETTINGS[SETTING][1]:
        return None
    config = bench_accuracy.run_config(
        bench_accuracy_long.NAMES, bench_accuracy_long.EPOCHS, bench_accuracy.SEEDS,
        bench_accuracy.MAX_TRAIN,
    )  # fmt: skip
    run = bench_accuracy.finished_runs(bench_accuracy_long.LONG_RECORD_NAME, config).get(
        (SETTING, SEED)
    )
    return run if bench_accuracy.is_current(run) else None  # validation must cover every epoch


def main(quick: bool = False) -> list[Path]:
    epochs = 0.5 if quick else bench_accuracy_long.EPOCHS
    max_train = 128 if quick else bench_accuracy.MAX_TRAIN
    rates = LEARNING_RATES[:2] if quick else LEARNING_RATES
    name = RECORD_NAME + (" quick" if quick else "")
    config = {
        "setting": SETTING, "epochs": epochs, "batch_size": bench_accuracy.BATCH_SIZE,
        "seed": SEED, "warmup_ratio": bench_accuracy.WARMUP_RATIO, "max_train": max_train,
        "learning_rates": list(rates),
    }  # fmt: skip
    earlier = read_matching_record(name, config)
    finished = (
        {run["learning_rate"]: run for run in earlier["eval_info"]["runs"]} if earlier else {}
    )
    runs: list[dict[str, Any]] = []
    path = None
    for rate in rates:
        run = finished.get(rate) or (None if quick else _run_from_long_record(rate))
        run = run or bench_accuracy.run_one(SETTING, SEED, max_train, epochs, learning_rate=rate)
        runs.append({**run, "learning_rate": rate})
        path = write_record(_record(name, config, runs))
    return [path]


def _record(name: str, config: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    # Quick runs end before the first end-of-epoch evaluation, so they have no validation score.
    # Ties are kept, not broken: validation accuracy that cannot separate two rates picks neither.
    best = max(run["best_validation_accuracy"] or 0.0 for run in runs)
    picked = [run for run in runs if (run["best_validation_accuracy"] or 0.0) == best]
    return make_record(
        name,
        method=f"{SETTING}: learning-rate sweep, picked by validation accuracy",
        model=bench_accuracy.MODEL,
        data=bench_accuracy.data_description(config["max_train"]),
        config=config,
        seed=SEED,
        eval_info={
            "runs": runs,
            "picked_learning_rates": [run["learning_rate"] for run in picked],
            "picked_test_accuracies": [run["test_accuracy"] for run in picked],
            bench_accuracy.LAST_EPOCH_KEY: bench_accuracy.best_validation_includes_last_epoch(runs),
            "metric": "best validation accuracy over epochs picks the rate; test accuracy of "
            "the final weights",
        },
    )
