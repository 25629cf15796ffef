"""Run benchmark suites: `python -m benchmarks.run [suite ...]` (default: all)."""

from __future__ import annotations

import argparse
import importlib
import sys

# suite name -> module with a main(quick: bool) -> list[Path]
SUITES = {
    "core": "benchmarks.core.bench_core",
    "meft": "benchmarks.meft.bench_memory_speed",
    "meft-accuracy": "benchmarks.meft.bench_accuracy",
    "meft-accuracy-long": "benchmarks.meft.bench_accuracy_long",
    "meft-accuracy-10-epochs": "benchmarks.meft.bench_accuracy_10_epochs",
    "meft-learning-rate": "benchmarks.meft.bench_learning_rate",
    "meft-reconstruction": "benchmarks.meft.bench_reconstruction",
    "point-grouping": "benchmarks.point.bench_grouping",
    "point-backbone": "benchmarks.point.bench_backbone",
    "point-peft": "benchmarks.point.bench_finetune",
    "point-pretraining": "benchmarks.point.bench_pretraining",
    "deft-sparse": "benchmarks.deft.bench_sparse",
    "deft-minilm": "benchmarks.deft.bench_minilm",
    "deft-smollm2": "benchmarks.deft.bench_smollm2",
    "deft-weight-sweep": "benchmarks.deft.bench_weight_sweep",
    "deft-weight-sweep-long": "benchmarks.deft.bench_weight_sweep_long",
    "deft-reference-setup": "benchmarks.deft.bench_reference_setup",
    "deft-weight-schedule": "benchmarks.deft.bench_weight_schedule",
    "deft-lora-targets": "benchmarks.deft.bench_lora_targets",
    "deft-threshold-in-training": "benchmarks.deft.bench_threshold_in_training",
    "deft-threshold-in-training-low": "benchmarks.deft.bench_threshold_in_training_low",
    "deft-qlora": "benchmarks.deft.bench_qlora",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "suites", nargs="*", choices=[*SUITES, []], help="suites to run (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    for suite in args.suites or list(SUITES):
        print(f"== benchmark suite: {suite}", flush=True)
        module = importlib.import_module(SUITES[suite])
        for path in module.main(quick=args.quick):
            print(f"   wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
