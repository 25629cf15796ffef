"""Run benchmark suites: `python -m benchmarks.run SUITE [SUITE ...]`, or `... all` for every one.

Records land in benchmarks/results/ (`--quick`: benchmarks/results-quick/, which git ignores and
the report leaves out; `--output-dir DIR` for another folder). A rerun measures afresh and
overwrites the record; `--resume` continues one that an interrupted run with the same
configuration wrote on this device.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import sys

from benchmarks import records

# suite name -> module with a main(quick: bool) -> list[Path]
SUITES = {
    "core": "benchmarks.core.bench_core",
    "core-startup": "benchmarks.core.bench_startup",
    "meft": "benchmarks.meft.bench_memory_speed",
    "meft-step-time": "benchmarks.meft.bench_step_time",
    "meft-allocator": "benchmarks.meft.bench_allocator",
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
ALL = "all"
_TIME_UNIT = re.compile(r"\b(h|hours?|min|minutes?|s|seconds?)\b")


def stated_duration(suite: str) -> str | None:
    """The duration the suite's module docstring gives after `python -m benchmarks.run SUITE`
    (the parenthesis up to its first ';'), if it names one; read without importing the suite."""
    try:
        spec = importlib.util.find_spec(SUITES[suite])
        with open(spec.origin, encoding="utf-8") as source:
            docstring = ast.get_docstring(ast.parse(source.read())) or ""
    except (ImportError, ValueError, AttributeError, TypeError, OSError, SyntaxError):
        return None  # not a source file here: listed without a duration
    command = re.escape(f"benchmarks.run {suite}")
    match = re.search(rf"{command}`+\s*\(([^;)]*)", " ".join(docstring.split()))
    if match is None or not _TIME_UNIT.search(match.group(1)):
        return None
    duration = match.group(1).strip().rstrip(",")
    return duration if len(duration) <= 60 else duration[:59].rsplit(" ", 1)[0] + " …"


def _suite_list() -> str:
    width = max(map(len, SUITES))
    lines = ["suites (durations as their docstrings state them):"]
    for suite in SUITES:
        duration = stated_duration(suite)
        lines.append(f"  {suite:<{width}}  {duration or ''}".rstrip())
    lines.append(f"  {ALL:<{width}}  every suite above, one after another (10+ hours)")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        epilog=_suite_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"a suite below, or '{ALL}'")
    records.add_run_arguments(parser)
    return parser


def selected_suites(parser: argparse.ArgumentParser, names: list[str]) -> list[str]:
    """The suites ``names`` asks for, in order; a usage error for none or an unknown one."""
    known = ", ".join(SUITES)
    if not names:
        parser.error(
            f"name at least one suite, or '{ALL}' for every one (all {len(SUITES)} take 10+ "
            f"hours); suites: {known}"
        )
    unknown = [name for name in names if name != ALL and name not in SUITES]
    if unknown:
        parser.error(f"unknown suite {', '.join(map(repr, unknown))}; suites: {known}, or '{ALL}'")
    if ALL in names:
        return list(SUITES)
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    suites = selected_suites(parser, args.suites)
    directory = records.configure(quick=args.quick, resume=args.resume, directory=args.output_dir)
    print(f"== records go to {directory}" + (" (resuming matching ones)" if args.resume else ""))
    for suite in suites:
        print(f"== benchmark suite: {suite}", flush=True)
        module = importlib.import_module(SUITES[suite])
        for path in module.main(quick=args.quick):
            print(f"   record: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
