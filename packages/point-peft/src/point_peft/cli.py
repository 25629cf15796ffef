"""``point-peft``: the command line of point-peft, one subcommand per task.

    point-peft pretrain                                  # small Point-MAE, procedural shapes (+ cached
                                                         # CGAL / KiCad clouds), 1 epoch
    point-peft pretrain --epochs 4 --threads 1           # longer; one thread is fastest on 2 busy cores
    point-peft pretrain --size official --modelnet40 data/modelnet40_normal_resampled \\
                        --scanobjectnn data/h5_files --epochs 300 --batch-size 128
    point-peft pretrain --resume --output-dir runs/pretrain   # continue an interrupted run

``pretrain`` shows a progress bar, writes resumable checkpoints every ``--save-every`` steps, and
ends with ``<output-dir>/point_mae_pretrain.pth`` (the official Point-MAE pre-train layout, which
``PointMAE.from_pretrained`` loads) and ``<output-dir>/pretrain_result.json`` (architecture,
recipe, loss curve, held-out reconstruction loss before and after, time), whose summary it prints.
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
        "--scanobjectnn-variant", choices=("PB_T50_RS", "OBJ_BG", "OBJ_ONLY"), default="PB_T50_RS"
    )
    data.add_argument("--num-points", type=int, default=1024)
    data.add_argument(
        "--samples-per-class", type=int, default=None,
        help="procedural clouds per class and variant (default 200)",
    )  # fmt: skip
    data.add_argument("--cgal-samples-per-mesh", type=int, default=8)
    data.add_argument("--no-augmentation", action="store_true", help="no scale-and-translate")
    data.add_argument("--cache-dir", type=Path, default=None, help="corpus cache folder")
    data.add_argument(
        "--download", action="store_true", help="let cgal / kicad fetch their Debian packages"
    )

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=float, default=1.0)
    train.add_argument("--max-steps", type=int, default=None, help="overrides --epochs")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--weight-decay", type=float, default=0.05)
    train.add_argument("--warmup-ratio", type=float, default=0.05)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--eval-samples-per-class", type=int, default=4)

    run = parser.add_argument_group("run")
    run.add_argument("--output-dir", type=Path, default=Path("runs/pretrain"))
    run.add_argument("--save-every", type=int, default=100, help="steps between checkpoints")
    run.add_argument("--log-every", type=int, default=10, help="steps between loss records")
    run.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    run.add_argument(
        "--overwrite", action="store_true", help="discard an earlier run in --output-dir"
    )
    run.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    run.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    run.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
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
                PretrainingSource.parse(source)
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

    from point_peft.pretraining_recipe import RESULT_NAME, pretrain

    config, recipe = pretrain_model_config(args), pretrain_recipe(args)
    for name in ("save_every", "log_every", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        result = pretrain(
            config, recipe, args.output_dir, resume=args.resume, overwrite=args.overwrite,
            save_every=args.save_every, log_every=args.log_every, progress=not args.no_progress,
            cache_dir=args.cache_dir, download=args.download, cpu=args.cpu,
            mixed_precision=args.mixed_precision,
        )  # fmt: skip
    except FileExistsError as error:
        raise UsageError(str(error)) from None
    summary = {key: value for key, value in result.items() if key != "loss_curve"}
    print(json.dumps(summary, indent=2))
    print(f"loss curve and everything above: {Path(args.output_dir) / RESULT_NAME}")
    return 0


# -- the program ---------------------------------------------------------------------------------

#: Subcommands, in the order ``--help`` lists them. ``train`` registers itself here too.
COMMANDS: list[CommandRegistrar] = [add_pretrain_command]


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


if __name__ == "__main__":
    sys.exit(main())
