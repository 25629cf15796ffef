r"""``deft train``: fine-tune with a PEFT method plus the DEFT density loss, offline by default.

    deft train                                     # real MiniLM + Rotten-Tomatoes polarity, LoRA + DEFT
    deft train --method adapter --compare-baseline # also the same run with λ = 0, side by side
    deft train --method prompt --num-virtual-tokens 20 --density-weight 2
    deft train --method qlora                      # MiniLM in 4-bit NF4 (bitsandbytes; CPU or CUDA)
    deft train --pad-to-max-length --max-length 128 --count-padding   # the reference's loss
    deft train --density-delay 0.5 --density-ramp 0.5  # λ = 0 for half the run, then ramped in
    deft train --density-weight 0 --threshold-density 0.3  # plain LoRA, then |a| <= τ zeroed
    deft train --model bert-base-uncased --dataset hf:glue --dataset-subset sst2 \
               --text-column sentence                                          # when online

Prints a progress bar, a table (test accuracy, trainable parameters, activation density) and the
per-layer density, and writes everything to <output-dir>/result.json: the accuracy, the density
report of the trained model on the test split (reference / masked / thresholded, per layer, in
percent of non-zero MLP activations, with its dtype), and with ``--compare-baseline`` the plain
PEFT run's accuracy and density and the reduction, relative and in percentage points.

``--threshold-density D`` zeroes every MLP activation with |a| <= τ, τ per layer calibrated on 512
training sentences so that a fraction D stays non-zero (after training, or from the first step
with ``--threshold-in-training``); the reported accuracy and density are those of the model with
its zeros, and τ is written to thresholds.json beside result.json, for ``deft.apply_threshold``
and ``deft.sparse.sparsify``.

Default learning rates (``--learning-rate`` overrides): the spec's 3e-4 is for GLUE-scale runs
(10 epochs of tens of thousands of examples); the embedded task is one short epoch, where each
method needs the step size it is usually run with to learn at all: LoRA and adapters 2e-3, IA3
1e-2, prefix tuning 1e-2, prompt tuning 3e-2 (it trains only a few input embeddings).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CLI_METHODS = ("lora", "qlora", "adapter", "prompt", "prefix", "ia3")
LORA_METHODS = ("lora", "qlora")
THRESHOLDS_FILE = "thresholds.json"
CALIBRATION_SENTENCES = 512  # training sentences τ is calibrated on
DEFAULT_LEARNING_RATES = {
    "lora": 2e-3,
    "qlora": 2e-3,
    "adapter": 2e-3,
    "ia3": 1e-2,
    "prefix": 1e-2,
    "prompt": 3e-2,
}
DISPLAY_NAMES = {
    "lora": "LoRA",
    "qlora": "QLoRA",
    "adapter": "Adapter",
    "prompt": "Prompt",
    "prefix": "Prefix",
    "ia3": "IA3",
}


def _parser() -> argparse.ArgumentParser:
    from peft_core.argument_types import (
        fraction,
        non_negative_float,
        open_fraction,
        positive_float,
        positive_int,
    )
    from peft_core.recipe_arguments import add_recipe_arguments

    parser = argparse.ArgumentParser(
        prog="deft", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="fine-tune with a PEFT method + the density loss; report accuracy and density"
    )
    add_recipe_arguments(train)
    train.set_defaults(error=train.error)  # "deft train: error: ..." for checks after parsing
    train.add_argument(
        "--method", choices=CLI_METHODS, default="lora",
        help="the PEFT method the density loss is added to (default: %(default)s; qlora: "
        "4-bit NF4 through bitsandbytes)",
    )  # fmt: skip
    train.add_argument(
        "--density-weight",
        type=non_negative_float,
        default=1.0,
        help="λ of L_task + λ·L_density (default 1.0, the paper's); 0 trains plain PEFT",
    )
    train.add_argument(
        "--density-delay",
        type=fraction,
        default=0.0,
        help="fraction of the training steps with λ = 0, so the task is learned first "
        "(default 0, the paper's constant λ)",
    )
    train.add_argument(
        "--density-ramp",
        type=fraction,
        default=0.0,
        help="fraction of the training steps over which λ then rises linearly to "
        "--density-weight (default 0)",
    )
    train.add_argument(
        "--density-eps",
        type=positive_float,
        default=None,
        help="ε of s(a) = a²/(a²+ε) in the density loss (default 1e-7, the paper's): s(a) is "
        "close to 1 wherever |a| >> sqrt(ε), so a larger ε lets the loss reach larger activations",
    )
    train.add_argument(
        "--count-padding",
        action="store_true",
        help="average the density loss over pad positions too, as the reference code does "
        "(pair with --pad-to-max-length and --max-length 128 to replicate it); default: real "
        "tokens only",
    )
    train.add_argument(
        "--compare-baseline",
        action="store_true",
        help="also train the same method with λ = 0 and report the density reduction",
    )
    train.add_argument(
        "--threshold-density",
        type=open_fraction,
        default=None,
        help="zero every MLP activation |a| <= τ, τ per layer calibrated on training sentences so "
        "that this fraction (0-1) stays non-zero; accuracy and density are measured with the "
        "zeros, and τ is saved to thresholds.json (for deft.apply_threshold / deft.sparse)",
    )
    train.add_argument(
        "--threshold-in-training",
        action="store_true",
        help="with --threshold-density: calibrate τ on the starting model and keep the zeros in "
        "every training step (default: calibrate and apply after training)",
    )
    train.add_argument(
        "--lora-rank",
        type=positive_int,
        default=8,
        help="LoRA r, alpha = 2r (default: %(default)s)",
    )
    train.add_argument(
        "--lora-mlp-inputs",
        action="store_true",
        help="LoRA also on every MLP input projection, with its bias trained: the density loss "
        "then acts on the pre-activations directly (default: Q/V only, the paper's)",
    )
    train.add_argument(
        "--adapter-reduction",
        type=positive_int,
        default=16,
        help="adapter d / bottleneck (default: %(default)s)",
    )
    train.add_argument(
        "--num-virtual-tokens",
        type=positive_int,
        default=60,
        help="prompt/prefix tuning tokens (default: %(default)s)",
    )
    train.add_argument(
        "--density-samples",
        type=positive_int,
        default=None,
        help="test examples the density is measured on (default: the whole test split)",
    )
    train.add_argument(
        "--save-every",
        type=positive_int,
        default=100,
        help="checkpoint interval in steps, for --resume (default: %(default)s)",
    )
    return parser


def _density_schedule(args: argparse.Namespace):
    from deft.schedule import DensityWeightSchedule

    try:
        return DensityWeightSchedule(
            args.density_weight, delay=args.density_delay, ramp=args.density_ramp
        )
    except ValueError as error:
        raise SystemExit(f"deft train: --density-delay / --density-ramp: {error}") from error


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.method in LORA_METHODS:
        options = {"r": args.lora_rank, "lora_alpha": 2 * args.lora_rank}
        if args.lora_mlp_inputs:
            options.update(mlp_inputs=True, bias="lora_only")
        return options
    if args.method == "adapter":
        return {"reduction_factor": args.adapter_reduction}
    if args.method in ("prompt", "prefix"):
        return {"num_virtual_tokens": args.num_virtual_tokens}
    return {}


def _jsonable_config(config: Any) -> dict[str, Any]:
    data = config.to_dict()
    return json.loads(
        json.dumps(data, default=lambda v: sorted(v) if isinstance(v, set) else str(v))
    )


def _density_batches(task: Any, samples: int | None):
    return _batches(task.test, task.collate, samples)


def _batches(data: Any, collate: Any, samples: int | None = None, batch_size: int = 64):
    count = len(data) if samples is None else min(samples, len(data))
    for start in range(0, count, batch_size):
        yield collate([data[i] for i in range(start, min(start + batch_size, count))])


def _run(task: Any, args: argparse.Namespace, weight: Any, output_dir: Path, name: str):
    """Train one model with density weight ``weight`` (λ or a schedule); return its result and
    density report."""
    from deft._threshold_after_training import ThresholdAfterTraining
    from deft.adapters import PfeifferAdapterConfig
    from deft.callbacks import DensityLossCallback
    from deft.loss import DEFAULT_EPS
    from deft.methods import apply_method, method_config, qlora_quantization_config
    from deft.metrics import measure_density
    from deft.monitor import DensityMonitor
    from deft.schedule import as_schedule
    from peft_core.command_checks import recipe_run_settings
    from peft_core.recipes import fine_tune, load_classifier

    quantization = qlora_quantization_config() if args.method == "qlora" else None
    base = load_classifier(task, args.seed, quantization_config=quantization)
    options = _method_options(args)
    model = apply_method(base, args.method, **options)
    # the config in use: peft completes its own (targets, heads to save) when wrapping
    peft_configs = getattr(model, "peft_config", None)
    config = (
        method_config(args.method, base, **options)
        if args.method == "adapter"
        else peft_configs["default"]
    )
    saved_config = _jsonable_config(config)  # recorded for a resume and in the result
    schedule = as_schedule(weight)
    monitor = DensityMonitor(model)
    eps = DEFAULT_EPS if args.density_eps is None else args.density_eps
    callbacks = (
        [DensityLossCallback(monitor, weight=schedule, count_padding=args.count_padding, eps=eps)]
        if schedule.weight
        else []
    )
    threshold = after_training = None
    if args.threshold_density is not None and args.threshold_in_training:
        threshold = _threshold(model, task, args, output_dir)  # before the first step
    elif args.threshold_density is not None:
        # installed when training ends, so that fine_tune's test evaluation sees the zeros
        after_training = ThresholdAfterTraining(
            lambda: _threshold(model, task, args, output_dir), task.test
        )
        callbacks.append(after_training)
    result = fine_tune(
        model, task, output_dir, name=name, learning_rate=_learning_rate(args), epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, callbacks=callbacks,
        method_config=config if isinstance(config, PfeifferAdapterConfig) else None,
        progress_bar=not args.no_progress, save_every=args.save_every, resume=args.resume,
        overwrite=args.overwrite,
        run_settings=recipe_run_settings(
            args, method=args.method, peft_config=saved_config,
            density_weight=float(schedule.weight), density_delay=schedule.delay,
            density_ramp=schedule.ramp, density_eps=eps, count_padding=args.count_padding,
            threshold_density=args.threshold_density,
            threshold_in_training=args.threshold_in_training,
        ),
    )  # fmt: skip
    if after_training is not None:
        threshold = after_training.handle
        without = after_training.metrics_without
        result["test_score_without_threshold"] = without[f"eval_{task.metric}"]
        result["test_accuracy_without_threshold"] = without.get("eval_accuracy")  # None: regression
    report = measure_density(model, _density_batches(task, args.density_samples), monitor=monitor)
    monitor.remove()
    if threshold is not None:
        threshold.remove()
        result["threshold"] = _threshold_summary(threshold.thresholds, args, output_dir)
    result.update(
        method=args.method,
        method_config=saved_config,
        density_weight=float(schedule.weight),
        density_schedule={"delay": schedule.delay, "ramp": schedule.ramp},
        density_eps=eps,
        density_loss_counts_padding=args.count_padding,
        padded_to_max_length=args.pad_to_max_length,
        learning_rate=_learning_rate(args),
    )
    return result, report


def _threshold(model: Any, task: Any, args: argparse.Namespace, output_dir: Path):
    """Calibrate τ on training sentences (or, resuming, read the τ saved before), save, install."""
    from deft.thresholding import apply_threshold, calibrate_threshold
    from peft_core import atomic_write_text
    from peft_core.recipes import random_subset

    path = output_dir / THRESHOLDS_FILE
    if args.resume and path.is_file():  # the run being resumed trained with these
        taus = json.loads(path.read_text(encoding="utf-8"))["taus"]
    else:
        calibration = random_subset(task.train, CALIBRATION_SENTENCES, args.seed + 1)
        taus = calibrate_threshold(
            model, _batches(calibration, task.collate), args.threshold_density
        )
        saved = _threshold_summary(taus, args, output_dir)
        del saved["file"]
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(saved, indent=2) + "\n")
    return apply_threshold(model, taus)


def _threshold_summary(taus: dict, args: argparse.Namespace, output_dir: Path) -> dict[str, Any]:
    return {
        "target_density": args.threshold_density,
        "in_training": args.threshold_in_training,
        "taus": taus,
        "file": str(output_dir / THRESHOLDS_FILE),
    }


def _learning_rate(args: argparse.Namespace) -> float:
    return args.learning_rate or DEFAULT_LEARNING_RATES[args.method]


def train(args: argparse.Namespace) -> dict[str, Any]:
    from peft_core.recipes import task_from_arguments

    schedule = _density_schedule(args)  # before loading anything: a bad one fails at once
    if args.lora_mlp_inputs and args.method not in LORA_METHODS:
        raise SystemExit(
            f"deft train: --lora-mlp-inputs needs --method lora or qlora, got {args.method}"
        )
    if args.method == "qlora":
        from deft.methods import qlora_unavailable_reason

        if (reason := qlora_unavailable_reason()) is not None:
            raise SystemExit(f"deft train: --method qlora: {reason}")
    if args.threshold_in_training and args.threshold_density is None:
        raise SystemExit("deft train: --threshold-in-training needs --threshold-density")
    task = task_from_arguments(args)
    label = DISPLAY_NAMES[args.method]
    baseline = baseline_report = None
    if args.compare_baseline:
        baseline, baseline_report = _run(task, args, 0.0, args.output_dir / "baseline", label)
    name = f"{label} + DEFT (λ={args.density_weight:g})" if args.density_weight else label
    result, report = _run(task, args, schedule, args.output_dir / "deft", name)
    report.baseline = baseline_report
    result["density"] = report.to_dict()
    result["density_mean_percent"] = report.mean("masked")
    if baseline is not None:
        baseline["density_mean_percent"] = baseline_report.mean("masked")
        result["baseline"] = baseline
    return result


def format_table(result: dict[str, Any]) -> str:
    """One row per run: accuracy, trainable parameters, mean densities (percent non-zero)."""
    rows = [result["baseline"], result] if "baseline" in result else [result]
    means = [result["density"]["mean"]]
    if "baseline" in result:
        means.insert(0, result["density"]["baseline"]["mean"])
    from peft_core.recipes import format_score, score_header

    header = (
        f"{'setting':<26} {score_header(rows):>9} {'trainable':>11} {'density':>9} "
        f"{'pads incl.':>10} {'|a|>1e-3':>9} {'time (s)':>9}"
    )
    lines = [header, "-" * len(header)]
    for row, mean in zip(rows, means, strict=True):
        lines.append(
            f"{row['setting']:<26} {format_score(row):>9} {row['trainable_params']:>11,} "
            f"{mean['masked']:>8.2f}% {mean['reference']:>9.2f}% "
            f"{mean.get('thresholded@0.001', float('nan')):>8.2f}% {row['train_seconds']:>9.1f}"
        )
    reduction = result["density"].get("reduction_vs_baseline", {}).get("masked")
    if reduction:
        lines.append(
            f"density reduction vs {rows[0]['setting']}: {reduction['relative_percent']:.2f}% "
            f"relative, {reduction['percentage_points']:.2f} percentage points"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from deft.report import DensityReport  # after parsing: these import torch
    from peft_core import atomic_write_text
    from peft_core.command_checks import (
        earlier_run_refusal,
        interrupted_message,
        missing_packages_refusal,
        recipe_source_refusal,
        resume_mismatch_refusal,
    )
    from peft_core.trainer import ResumeMismatchError

    needed, extra = ["transformers", "peft"], "hf"
    if args.method == "qlora":
        needed, extra = [*needed, "bitsandbytes"], "qlora"
    install = f'pip install "deft-peft[{extra}]"'
    if (refusal := missing_packages_refusal(needed, install)) is not None:
        args.error(refusal)
    folders = [args.output_dir / "deft"]
    if args.compare_baseline:
        folders.insert(0, args.output_dir / "baseline")
    if (refusal := earlier_run_refusal(args, *folders)) is not None:
        args.error(refusal)
    if (refusal := recipe_source_refusal(args)) is not None:
        args.error(refusal)
    try:
        result = train(args)
    except ResumeMismatchError as error:  # found once the trainer reads the checkpoint
        args.error(resume_mismatch_refusal(error))
    except KeyboardInterrupt:
        print(interrupted_message("deft train", *folders), file=sys.stderr)
        return 130  # the shell's code for a SIGINT
    # Atomic: an interrupted write never leaves a truncated result.json beside the checkpoint.
    atomic_write_text(args.output_dir / "result.json", json.dumps(result, indent=2) + "\n")
    print(DensityReport.from_dict(result["density"]).format_table())
    print(format_table(result))
    print(f"result: {args.output_dir / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
