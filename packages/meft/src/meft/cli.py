r"""``meft train``: fine-tune a model with MEFT on a text-classification task, offline by default.

    meft train                                   # real MiniLM + Rotten-Tomatoes polarity, MEFT1
    meft train --variant meft3 --epochs 3 --stream-dtype float32   # the paper's streams
    meft train --model bert-base-uncased --dataset hf:glue --dataset-subset sst2 \
               --text-column sentence                                        # when online

Prints a progress bar and the result, and writes it to <output-dir>/result.json together with
the trained adapters (``final/``, loadable with ``peft_core.load``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn

# Only what the parser needs is imported here (no torch), so --help and usage errors are instant.
from meft.config import VARIANTS, MeftConfig
from peft_core import ConfigError, atomic_write_text


def _parser() -> argparse.ArgumentParser:
    from peft_core.argument_types import positive_int
    from peft_core.recipe_arguments import add_recipe_arguments

    parser = argparse.ArgumentParser(
        prog="meft", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="fine-tune with MEFT and report accuracy and memory")
    add_recipe_arguments(train)
    train.add_argument(
        "--variant", choices=VARIANTS, default="meft1", help="(default: %(default)s)"
    )
    train.add_argument(
        "--adapter-dim", type=int, default=8,
        help="bottleneck width r of every adapter (default: %(default)s)",
    )  # fmt: skip
    train.add_argument(
        "--stream-dtype", choices=("float32", "float64"), default="float64",
        help="dtype of the two streams (default float64, as the README's accuracy runs: with the "
        "paper's float32, MEFT1 reconstructs real MiniLM's bottom layer 13–26 %% off)",
    )  # fmt: skip
    train.add_argument(
        "--num-reversible-layers", type=int, default=None, metavar="K",
        help="make the bottom K layers reversible, the rest train with vanilla backprop "
        "(default: all; 0 = the same architecture, all on vanilla backprop)",
    )  # fmt: skip
    train.add_argument(
        "--save-inputs-every", type=int, default=None, metavar="K",
        help="keep the exact inputs of every K-th reversible layer (deep stacks: bounds how far "
        "reconstruction rounding compounds; the conversion warning suggests a K)",
    )  # fmt: skip
    train.add_argument(
        "--save-every", type=positive_int, default=100,
        help="checkpoint interval in steps, for --resume (default: %(default)s)",
    )  # fmt: skip
    train.set_defaults(error=train.error)  # "meft train: error: ..." for values MEFT refuses
    return parser


def _full_fine_tuning_activation_bytes(task, seed: int) -> int:
    """What full fine-tuning of the same model saves for backward on the same batch (no training)."""
    import peft_core
    from peft_core.recipes import load_classifier

    full = load_classifier(task, seed).train()
    return peft_core.measure_activation_memory(lambda: full(**task.probe_batch).loss, full)


def _config(args: argparse.Namespace) -> MeftConfig:
    return MeftConfig(
        variant=args.variant, adapter_dim=args.adapter_dim, stream_dtype=args.stream_dtype,
        num_reversible_layers=args.num_reversible_layers,
        save_inputs_every=args.save_inputs_every,
    )  # fmt: skip


def train(
    args: argparse.Namespace,
    config: MeftConfig | None = None,
    fail: Callable[[str], NoReturn] | None = None,
) -> dict:
    """Convert, measure full fine-tuning's activation memory, train. ``fail`` reports a model the
    configuration does not fit (before the measurement), e.g. ``parser.error``."""
    from meft.model import get_meft_model
    from peft_core.command_checks import recipe_run_settings
    from peft_core.recipes import fine_tune, load_classifier, task_from_arguments

    config = config or _config(args)
    task = task_from_arguments(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = get_meft_model(load_classifier(task, args.seed), config)
        except ValueError as error:  # e.g. more reversible layers than the model has
            if fail is None:
                raise
            fail(str(error))
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    full_activation = _full_fine_tuning_activation_bytes(task, args.seed)
    result = fine_tune(
        model, task, args.output_dir, name=args.variant.upper(), learning_rate=args.learning_rate or 5e-3,
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, method_config=config,
        save_every=args.save_every, resume=args.resume, overwrite=args.overwrite,
        progress_bar=not args.no_progress,
        run_settings=recipe_run_settings(args),  # the variant and its fields: in method_config
    )  # fmt: skip
    result["config"] = config.to_dict()
    result["full_fine_tuning_activation_mib"] = full_activation / 2**20
    result["activation_ratio_to_full_fine_tuning"] = (
        result["activation_mib"] * 2**20 / full_activation
    )
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from peft_core.command_checks import (  # after parsing: they import torch
        earlier_run_refusal,
        interrupted_message,
        missing_packages_refusal,
        recipe_source_refusal,
        resume_mismatch_refusal,
    )
    from peft_core.trainer import ResumeMismatchError

    install = 'pip install "meft[hf]"'
    if (refusal := missing_packages_refusal(["transformers"], install)) is not None:
        args.error(refusal)
    if (refusal := earlier_run_refusal(args)) is not None:
        args.error(refusal)
    if (refusal := recipe_source_refusal(args)) is not None:
        args.error(refusal)
    try:  # bad values are reported at once, as argparse reports its own, not after the run
        config = _config(args)
    except ConfigError as error:
        args.error(str(error))
    try:
        result = train(args, config, fail=args.error)
    except ResumeMismatchError as error:  # found once the trainer reads the checkpoint
        args.error(resume_mismatch_refusal(error))
    except KeyboardInterrupt:
        print(interrupted_message("meft train", args.output_dir), file=sys.stderr)
        return 130  # the shell's code for a SIGINT
    # Atomic: an interrupted write never leaves a truncated result.json beside the checkpoint.
    atomic_write_text(args.output_dir / "result.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
