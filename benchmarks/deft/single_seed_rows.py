"""What the single-seed DEFT suites (`deft-weight-schedule`, `deft-lora-targets`) share.

Both train LoRA rows on the same 2,000 MiniLM sentences with one seed, compare every DEFT row
with a plain row and with the matched-density threshold baseline, and write one record:

- :class:`Setup`: the task, its test batches and the calibration batches τ is fitted on, and the
  part of the record's configuration every such suite shares;
- :func:`recorded_rows`: the rows an interrupted earlier invocation recorded;
- :func:`threshold_baseline`: the plain model thresholded at a row's masked density;
- :func:`compare_with_plain`: accuracy change, relative density reduction, DEFT − baseline;
- :func:`single_seed_record`: the record of a set of rows;
- :func:`print_row`: one progress line per finished row.
"""

from __future__ import annotations

from dataclasses import dataclass
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
)
from benchmarks.deft.measurements import batches, thresholded
from benchmarks.records import make_record, read_matching_record

SEED = 0


@dataclass
class Setup:
    """The sentences every row of a suite sees (a ``--quick`` run: 64 of them, 32 to test)."""

    task: Any
    test_batches: list
    calibration: list
    max_train: int
    epochs: float
    calibration_examples: int
    quick: bool

    @classmethod
    def load(cls, quick: bool, epochs: float) -> Setup:
        from peft_core.recipes import load_text_task, random_subset

        max_train = 64 if quick else MAX_TRAIN
        calibration_examples = 32 if quick else CALIBRATION_EXAMPLES
        task = load_text_task(max_train=max_train, seed=SEED, verbose=False)
        if quick:
            task = _quick_task(task, QUICK_EVAL, SEED)
        calibration_set = random_subset(task.train, calibration_examples, SEED + 1)
        return cls(
            task=task,
            test_batches=batches(task.test, task.collate, EVAL_BATCH_SIZE),
            calibration=batches(calibration_set, task.collate, EVAL_BATCH_SIZE),
            max_train=max_train,
            epochs=0.5 if quick else epochs,
            calibration_examples=calibration_examples,
            quick=quick,
        )

    def config(self, **suite: Any) -> dict[str, Any]:
        """The LoRA recipe and data of every row, with the suite's own entries added."""
        return {
            "learning_rate": METHODS["LoRA"][1],
            "seed": SEED,
            "epochs": self.epochs,
            "batch_size": BATCH_SIZE,
            "warmup_ratio": 0.06,
            "max_train": self.max_train,
            "thresholds": list(THRESHOLDS),
            "calibration_examples": self.calibration_examples,
            "quick": self.quick,
            **suite,
        }


def recorded_rows(
    name: str, config: dict[str, Any], settings: dict[str, Any], ignoring: tuple[str, ...]
) -> dict[str, dict]:
    """Rows of ``settings`` an earlier invocation with this configuration recorded.

    ``ignoring`` names the configuration entries a rerun may change (settings added or dropped):
    rows of settings dropped since are left out.
    """
    earlier = read_matching_record(name, config, ignoring=ignoring)
    rows = {} if earlier is None else earlier["eval_info"]["settings"]
    return {setting: row for setting, row in rows.items() if setting in settings}


def threshold_baseline(plain: Any, row: dict, calibration: list, test_batches: list) -> dict:
    """The plain model thresholded (|a| ≤ τ zeroed) at ``row``'s masked density."""
    target = row["report"]["mean"]["masked"] / 100
    taus, report, test_accuracy = thresholded(
        plain, calibration, target, test_batches, thresholds=THRESHOLDS
    )
    return {
        "target_density_percent": 100 * target,
        "taus": taus,
        "test_accuracy": test_accuracy,
        "report": report.to_dict(),
    }


def compare_with_plain(row: dict, plain: dict | None) -> None:
    """Add to ``row`` its accuracy change and density reduction vs ``plain``, and vs its baseline."""
    if plain is not None and row is not plain:
        row["accuracy_change_points"] = 100 * (row["test_accuracy"] - plain["test_accuracy"])
        base, now = plain["report"]["mean"]["masked"], row["report"]["mean"]["masked"]
        row["masked_reduction_relative_percent"] = 100 * (base - now) / base
    if "threshold_baseline" in row:
        row["deft_minus_threshold_baseline_points"] = 100 * (
            row["test_accuracy"] - row["threshold_baseline"]["test_accuracy"]
        )


def single_seed_record(
    name: str, method: str, rows: dict[str, dict], config: dict[str, Any]
) -> dict[str, Any]:
    """The record of ``rows`` (setting -> measured row), each compared beforehand."""
    data = (
        f"Rotten-Tomatoes polarity: {config['max_train']} random training sentences (seed {SEED}), "
    )
    return make_record(
        name,
        method=method,
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


def print_row(row: dict[str, Any], extra: str = "") -> None:
    line = (
        f"   {row['setting']}: accuracy {row['test_accuracy']:.4f}, masked density "
        f"{row['report']['mean']['masked']:.2f}%, |a|>1e-3 "
        f"{row['report']['mean']['thresholded@0.001']:.2f}%"
    )
    if "threshold_baseline" in row:
        line += f"; threshold baseline {row['threshold_baseline']['test_accuracy']:.4f}"
    print(line + extra, flush=True)
