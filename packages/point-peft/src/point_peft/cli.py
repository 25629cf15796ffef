"""``point-peft``: the command line of point-peft, one subcommand per task.

    point-peft pretrain                                  # small Point-MAE, procedural shapes (+ cached
                                                         # CGAL / KiCad clouds), 1 epoch
    point-peft pretrain --epochs 4 --threads 1           # longer; one thread is fastest on 2 busy cores
    point-peft pretrain --size official --modelnet40 data/modelnet40_normal_resampled \\
                        --scanobjectnn data/h5_files --epochs 300 --batch-size 128
    point-peft pretrain --resume --output-dir runs/pretrain   # continue an interrupted run

    point-peft train                                     # Point-PEFT, the small pre-trained
                                                         # backbone, procedural hard scans
    point-peft train --method full                       # or linear, adapter, vpt-deep, bitfit
    point-peft train --dataset kicad --votes 10          # real CAD models; 10-vote evaluation
    point-peft train --backbone pretrain.pth --num-groups 128 --num-points 2048 \\
                     --scanobjectnn data/h5_files --epochs 300   # the official file and data
    point-peft train --resume --output-dir runs/train    # continue an interrupted run

``pretrain`` shows a progress bar, writes resumable checkpoints every ``--save-every`` steps, and
ends with ``<output-dir>/point_mae_pretrain.pth`` (the official Point-MAE pre-train layout, which
``PointMAE.from_pretrained`` loads) and ``<output-dir>/pretrain_result.json`` (architecture,
recipe, loss curve, held-out reconstruction loss before and after, time), whose summary it prints.

``train`` builds Point-PEFT's memory bank (a progress bar), fine-tunes with the same progress bar
and checkpoints, evaluates the final weights on the test split and ends with
``<output-dir>/result.json`` (method, dataset, trainable / total parameters, accuracy, mean class
accuracy, step time, loss curve, seed, versions) and ``<output-dir>/final/`` (the trained tensors,
which ``peft_core.load`` puts back on the backbone), printing a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Each entry adds one subcommand to the parser and sets ``handler`` (args -> exit code) on it.
CommandRegistrar = Callable[[Any], None]


class UsageError(Exception):
    """A problem with the command line or the output folder, reported without a traceback."""


# -- pretrain ------------------------------------------------------------------------------------

_ARCHITECTURE_OPTIONS = {
    "--embed-dim": ("embed_dim", int),
    "--depth": ("depth", int),
    "--num-heads": ("num_heads", int),
    "--num-groups": ("num_groups", int),
    "--group-size": ("group_size", int),
    "--decoder-depth": ("decoder_depth", int),
    "--decoder-num-heads": ("decoder_num_heads", int),
    "--mask-ratio": ("mask_ratio", float),
    "--drop-path-rate": ("drop_path_rate", float),
}


def _add_run_options(parser: Any, default_output: Path) -> None:
    """The options every training subcommand shares: output folder, checkpoints, resume, device."""
    from peft_core.argument_types import positive_int

    run = parser.add_argument_group("run")
    run.add_argument(
        "--output-dir", type=Path, default=default_output,
        help="checkpoints, log and results (default: %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--save-every",
        type=positive_int,
        default=100,
        help="steps between checkpoints (default: %(default)s)",
    )
    run.add_argument(
        "--log-every",
        type=positive_int,
        default=10,
        help="steps between loss records (default: %(default)s)",
    )
    run.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    run.add_argument(
        "--overwrite", action="store_true", help="discard an earlier run in --output-dir"
    )
    run.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads")
    run.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    run.add_argument(
        "--mixed-precision", choices=("no", "fp16", "bf16"), default="no",
        help="accelerate's mixed precision; fp16 needs a GPU (default: %(default)s)",
    )  # fmt: skip
    run.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_pretrain_command(commands: Any) -> None:
    parser = commands.add_parser(
        "pretrain",
        help="pre-train a Point-MAE backbone (masked patch reconstruction)",
        description="Pre-train a Point-MAE backbone: 60% of the patches masked, the encoder on "
        "the visible ones, a decoder reconstructing the masked patches' points (Chamfer-L2).",
    )
    model = parser.add_argument_group("architecture")
    model.add_argument(
        "--size", choices=("small", "official"), default="small",
        help="small: 4 x 96 on 32 patches of 16 (minutes on a CPU); official: 12 x 384, "
        "64 patches of 32, 4-block decoder",
    )  # fmt: skip
    model.add_argument(
        "--model-config", type=Path, default=None,
        help="a PointTransformerConfig JSON file (replaces --size)",
    )  # fmt: skip
    for flag, (field, kind) in _ARCHITECTURE_OPTIONS.items():
        model.add_argument(flag, dest=field, type=kind, default=None, help=f"override {field}")

    data = parser.add_argument_group("data")
    data.add_argument(
        "--data", nargs="+", default=["auto"], metavar="SOURCE",
        help="procedural-clean, procedural-hard, cgal, kicad, modelnet40=DIR, scanobjectnn=DIR, "
        "... or auto (default: procedural + the corpora already cached)",
    )  # fmt: skip
    data.add_argument("--modelnet40", type=Path, default=None, help="add a ModelNet40 folder")
    data.add_argument(
        "--scanobjectnn", type=Path, default=None, help="add a ScanObjectNN h5_files folder"
    )
    data.add_argument(
        "--scanobjectnn-variant", choices=("PB_T50_RS", "OBJ_BG", "OBJ_ONLY"), default="PB_T50_RS",
        help="which ScanObjectNN split (default: %(default)s)",
    )  # fmt: skip
    data.add_argument(
        "--num-points", type=int, default=1024, help="points per cloud (default: %(default)s)"
    )
    data.add_argument(
        "--samples-per-class", type=int, default=None,
        help="procedural clouds per class and variant (default 200)",
    )  # fmt: skip
    data.add_argument(
        "--cgal-samples-per-mesh", type=int, default=8,
        help="clouds sampled from each CGAL mesh (default: %(default)s)",
    )  # fmt: skip
    data.add_argument("--no-augmentation", action="store_true", help="no scale-and-translate")
    data.add_argument("--cache-dir", type=Path, default=None, help="corpus cache folder")
    data.add_argument(
        "--download", action="store_true", help="let cgal / kicad fetch their Debian packages"
    )

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=float, default=1.0, help="(default: %(default)s)")
    train.add_argument("--max-steps", type=int, default=None, help="overrides --epochs")
    train.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    train.add_argument(
        "--learning-rate", type=float, default=1e-3, help="AdamW peak (default: %(default)s)"
    )
    train.add_argument(
        "--weight-decay", type=float, default=0.05, help="AdamW (default: %(default)s)"
    )
    train.add_argument(
        "--warmup-ratio", type=float, default=0.05,
        help="share of the optimizer steps that warm the learning rate up (default: %(default)s)",
    )  # fmt: skip
    train.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    train.add_argument(
        "--eval-samples-per-class", type=int, default=4,
        help="held-out clouds per class and variant for the reconstruction loss before and "
        "after training, 0 to skip (default: %(default)s)",
    )  # fmt: skip

    _add_run_options(parser, default_output=Path("runs/pretrain"))
    parser.set_defaults(handler=run_pretrain)


def pretrain_model_config(args: argparse.Namespace):
    """The architecture the pretrain options describe."""
    from peft_core import ConfigError
    from point_peft.models import PointTransformerConfig

    overrides = {
        field: getattr(args, field)
        for field, _ in _ARCHITECTURE_OPTIONS.values()
        if getattr(args, field) is not None
    }
    try:
        if args.model_config is not None:
            base = PointTransformerConfig.from_json_file(args.model_config)
        elif args.size == "official":
            base = PointTransformerConfig.point_mae()
        else:
            base = PointTransformerConfig.small()
        return base.replace(**overrides)
    except (ConfigError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None


def pretrain_recipe(args: argparse.Namespace):
    """The :class:`~point_peft.pretraining_recipe.PretrainingRecipe` the pretrain options describe."""
    from peft_core import ConfigError
    from point_peft.pretraining_data import PretrainingSource
    from point_peft.pretraining_recipe import PretrainingRecipe

    sources = list(args.data)
    if args.modelnet40 is not None:
        sources.append(f"modelnet40={args.modelnet40}")
    if args.scanobjectnn is not None:
        variant = args.scanobjectnn_variant
        sources.append(f"scanobjectnn-{variant}={args.scanobjectnn}")
    try:
        for source in sources:
            if source != "auto":
                PretrainingSource.parse(source)  # pretrain() checks that its folder exists
        return PretrainingRecipe(
            data=tuple(sources), num_points=args.num_points,
            procedural_samples_per_class=args.samples_per_class,
            cgal_samples_per_mesh=args.cgal_samples_per_mesh, epochs=args.epochs,
            max_steps=args.max_steps, batch_size=args.batch_size,
            learning_rate=args.learning_rate, weight_decay=args.weight_decay,
            warmup_ratio=args.warmup_ratio,
            augmentation="none" if args.no_augmentation else "scale_translate",
            eval_samples_per_class=args.eval_samples_per_class, seed=args.seed,
        )  # fmt: skip
    except (ConfigError, ValueError) as error:
        raise UsageError(str(error)) from None


def run_pretrain(args: argparse.Namespace) -> int:
    import torch

    from peft_core import ConfigError
    from point_peft.data import DatasetFileError, ReaderDependencyError
    from point_peft.pretraining_recipe import RESULT_NAME, pretrain

    config, recipe = pretrain_model_config(args), pretrain_recipe(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        result = pretrain(
            config, recipe, args.output_dir, resume=args.resume, overwrite=args.overwrite,
            save_every=args.save_every, log_every=args.log_every, progress=not args.no_progress,
            cache_dir=args.cache_dir, download=args.download, cpu=args.cpu,
            mixed_precision=args.mixed_precision,
        )  # fmt: skip
    # pretrain() checks the architecture and the dataset folders before it builds any data; a
    # dataset file that is there but unusable is a problem with the data, not a crash
    except (
        FileExistsError, FileNotFoundError, ConfigError, DatasetFileError, ReaderDependencyError,
    ) as error:  # fmt: skip
        raise UsageError(str(error)) from None
    summary = {key: value for key, value in result.items() if key != "loss_curve"}
    print(json.dumps(summary, indent=2))
    print(f"loss curve and everything above: {Path(args.output_dir) / RESULT_NAME}")
    return 0


# -- train ---------------------------------------------------------------------------------------


def add_train_command(commands: Any) -> None:
    from point_peft.finetuning_choices import AUGMENTATIONS, METHODS

    parser = commands.add_parser(
        "train",
        help="fine-tune a pre-trained backbone with Point-PEFT or a baseline",
        description="Fine-tune a pre-trained Point-MAE / Point-BERT backbone on a labelled task "
        "with Point-PEFT (memory-bank prompts, geometry-aware adapters) or a baseline, then "
        "evaluate it on the test split.",
    )
    method = parser.add_argument_group("method and backbone")
    method.add_argument(
        "--method", choices=METHODS, default="point-peft",
        help="point-peft, or a baseline: full fine-tuning, linear probe, bottleneck adapters, "
        "VPT-deep prompts, BitFit (default: point-peft)",
    )  # fmt: skip
    method.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", dest="options",
        help="a method setting, repeatable: a PointPeftConfig field for point-peft "
        "(prompt_layers=2, cache_query_features=true), a get_baseline_model option otherwise "
        "(bottleneck_dim=8, num_prompts=4); values are read as JSON, else as text",
    )  # fmt: skip
    method.add_argument(
        "--backbone", type=Path, default=None, metavar="PATH",
        help="a Point-MAE / Point-BERT pre-train checkpoint in the official layout (default: "
        "the small Point-MAE pre-trained here once and cached)",
    )  # fmt: skip
    method.add_argument(
        "--backbone-config", type=Path, default=None, metavar="JSON",
        help="the backbone's PointTransformerConfig, for files that record none (official "
        "files: default the official architecture)",
    )  # fmt: skip
    method.add_argument("--num-groups", type=int, default=None, help="backbone patches per cloud")
    method.add_argument("--group-size", type=int, default=None, help="backbone points per patch")

    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset", default=None, metavar="NAME",
        help="procedural-hard (default), procedural-clean, kicad, modelnet40=DIR, "
        "modelnet10=DIR, scanobjectnn=DIR, scanobjectnn-OBJ_BG=DIR, scanobjectnn-OBJ_ONLY=DIR",
    )  # fmt: skip
    data.add_argument("--modelnet40", type=Path, default=None, metavar="DIR",
                      help="same as --dataset modelnet40=DIR")  # fmt: skip
    data.add_argument("--scanobjectnn", type=Path, default=None, metavar="DIR",
                      help="same as --dataset scanobjectnn-<variant>=DIR (h5_files folder)")  # fmt: skip
    data.add_argument(
        "--scanobjectnn-variant", choices=("PB_T50_RS", "OBJ_BG", "OBJ_ONLY"), default="PB_T50_RS",
        help="which ScanObjectNN split (default: %(default)s)",
    )  # fmt: skip
    data.add_argument(
        "--num-points", type=int, default=1024, help="points per cloud (default: %(default)s)"
    )
    data.add_argument(
        "--samples-per-class", type=int, default=None,
        help="procedural training clouds per class (default 200)",
    )  # fmt: skip
    data.add_argument(
        "--test-samples-per-class", type=int, default=None,
        help="procedural test clouds per class (default 50)",
    )  # fmt: skip
    data.add_argument("--data-seed", type=int, default=0, help="seeds the procedural shapes")
    data.add_argument("--cache-dir", type=Path, default=None, help="corpus and backbone cache")
    data.add_argument("--download", action="store_true", help="let kicad fetch its package")

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=float, default=None, help="default 4")
    train.add_argument("--max-steps", type=int, default=None, help="overrides --epochs")
    train.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    train.add_argument(
        "--learning-rate", type=float, default=None,
        help="default: the method's (point-peft 5e-3, full fine-tuning 2e-3, the others 1e-2)",
    )  # fmt: skip
    train.add_argument(
        "--weight-decay", type=float, default=0.05, help="AdamW (default: %(default)s)"
    )
    train.add_argument(
        "--warmup-ratio", type=float, default=0.1,
        help="share of the run's optimizer steps that warm the learning rate up (default: "
        "%(default)s; the official recipe's 10 of 300 epochs: 0.0333)",
    )  # fmt: skip
    train.add_argument(
        "--augmentation", choices=AUGMENTATIONS, default="scale-rotate",
        help="training augmentation (default: %(default)s)",
    )  # fmt: skip
    train.add_argument("--label-smoothing", type=float, default=None,
                       help="default: the backbone's (Point-BERT 0.2)")  # fmt: skip
    train.add_argument(
        "--votes", type=int, default=1,
        help="test-time votes over the --augmentation (scale-translate with 'none'); default 1: none",
    )  # fmt: skip
    train.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")

    _add_run_options(parser, default_output=Path("runs/train"))
    parser.set_defaults(handler=run_train)


_PYTHON_CONSTANTS = {"True": True, "False": False, "None": None}


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["prompt_layers=2", "adapter_init=xavier"]`` -> ``{"prompt_layers": 2, ...}``."""
    options: dict[str, Any] = {}
    for item in items:
        key, separator, text = item.partition("=")
        if not separator or not key.strip():
            raise UsageError(f"--option takes KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            # Python's spelling of the JSON constants is what people type after KEY=
            value = _PYTHON_CONSTANTS.get(text, text)
        options[key.strip()] = value
    return options


def train_dataset(args: argparse.Namespace) -> str:
    """The one dataset the data options name."""
    from point_peft._runs import check_dataset_folder

    named = []
    if args.dataset is not None:
        named.append(args.dataset)
    if args.modelnet40 is not None:
        named.append(f"modelnet40={args.modelnet40}")
    if args.scanobjectnn is not None:
        named.append(f"scanobjectnn-{args.scanobjectnn_variant}={args.scanobjectnn}")
    if len(named) > 1:
        raise UsageError(f"name one dataset, not {len(named)}: {', '.join(named)}")
    dataset = named[0] if named else "procedural-hard"
    try:
        check_dataset_folder(dataset)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    return dataset


def train_recipe(args: argparse.Namespace):
    """The :class:`~point_peft.finetuning.FinetuneRecipe` the train options describe."""
    from peft_core import ConfigError
    from point_peft.finetuning import FinetuneRecipe

    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    try:
        return FinetuneRecipe(
            dataset=train_dataset(args), tuning_method=args.method,
            method_options=parse_options(args.options), num_points=args.num_points,
            samples_per_class=args.samples_per_class,
            test_samples_per_class=args.test_samples_per_class, data_seed=args.data_seed,
            max_steps=args.max_steps, batch_size=args.batch_size,
            learning_rate=args.learning_rate, weight_decay=args.weight_decay,
            warmup_ratio=args.warmup_ratio, augmentation=args.augmentation,
            label_smoothing=args.label_smoothing, votes=args.votes, seed=args.seed, **epochs,
        )  # fmt: skip
    except ConfigError as error:
        raise UsageError(str(error)) from None


def train_backbone_config(args: argparse.Namespace):
    """The backbone architecture the options give, or None (the file's, else the official)."""
    from peft_core import CheckpointError, ConfigError
    from point_peft.models import PointTransformerConfig

    overrides = {
        name: getattr(args, name)
        for name in ("num_groups", "group_size")
        if getattr(args, name) is not None
    }
    if args.backbone_config is None and not overrides:
        return None
    try:
        if args.backbone_config is not None:
            base = PointTransformerConfig.from_json_file(args.backbone_config)
        elif args.backbone is not None:
            from point_peft.finetuning_methods import backbone_config_of

            base = backbone_config_of(args.backbone)
        else:
            raise UsageError("--num-groups / --group-size describe a --backbone file")
        return base.replace(**overrides)
    except (ConfigError, CheckpointError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None


def run_train(args: argparse.Namespace) -> int:
    import torch

    from peft_core import CheckpointError, ConfigError
    from point_peft.data import DatasetFileError, ReaderDependencyError
    from point_peft.finetuning import RESULT_NAME, finetune

    if args.backbone is not None and not args.backbone.is_file():
        raise UsageError(f"--backbone {args.backbone}: no such file")
    recipe = train_recipe(args)
    backbone_config = train_backbone_config(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        result = finetune(
            recipe, args.output_dir, backbone=args.backbone, backbone_config=backbone_config,
            resume=args.resume, overwrite=args.overwrite, save_every=args.save_every,
            log_every=args.log_every, progress=not args.no_progress, cache_dir=args.cache_dir,
            download=args.download, cpu=args.cpu, mixed_precision=args.mixed_precision,
        )  # fmt: skip
    except (
        FileExistsError, FileNotFoundError, CheckpointError, ConfigError, DatasetFileError,
        ReaderDependencyError,
    ) as error:  # fmt: skip
        raise UsageError(str(error)) from None
    except (TypeError, ValueError) as error:
        if not args.options:
            raise
        raise UsageError(f"{error} (from --option)") from None
    print(format_train_summary(result))
    print(f"loss curve and everything above: {Path(args.output_dir) / RESULT_NAME}")
    return 0


def format_train_summary(result: dict[str, Any]) -> str:
    """A few lines a person reads: what ran, what it reached, what it cost."""
    parameters = result["parameters"]
    step = result["step_time"]
    votes = f" ({result['votes']} votes)" if result["votes"] > 1 else ""
    lines = [
        f"method          {result['method']} on {result['dataset']} "
        f"({result['data']['train_clouds']} train / {result['data']['test_clouds']} test clouds, "
        f"{len(result['data']['classes'])} classes)",
        f"backbone        {result['backbone']['checkpoint']}" + _dropped_head(result["backbone"]),
        f"trainable       {parameters['trainable']:,} of {parameters['total']:,} parameters "
        f"({parameters['trainable_percent']:.2f}%)",
        f"test accuracy   {100 * result['test_accuracy']:.2f}%{votes}, mean class accuracy "
        f"{100 * result['mean_class_accuracy']:.2f}%",
        f"training        {result['steps']} steps, lr {result['learning_rate']:g}, loss "
        f"{_loss(result['first_loss'])} -> {_loss(result['last_loss'])}, "
        f"{result['seconds']['train']:.0f} s"
        + (f", median step {1000 * step['median_s']:.0f} ms" if step else ""),
    ]
    return "\n".join(lines)


def _dropped_head(backbone: dict) -> str:
    classes = backbone.get("dropped_head_classes")
    return f" (its {classes}-class head replaced by a new one)" if classes else ""


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# -- the program ---------------------------------------------------------------------------------

#: Subcommands, in the order ``--help`` lists them.
COMMANDS: list[CommandRegistrar] = [add_pretrain_command, add_train_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="point-peft", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``point-peft`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"point-peft {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from peft_core.command_checks import interrupted_message

        folders = [args.output_dir] if getattr(args, "output_dir", None) else []
        print(interrupted_message(f"point-peft {args.command}", *folders), file=sys.stderr)
        return 130  # the shell's code for a SIGINT


if __name__ == "__main__":
    sys.exit(main())
