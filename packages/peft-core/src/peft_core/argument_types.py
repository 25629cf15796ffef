"""``argparse`` types that check a number while the command line is parsed.

A bad ``--epochs`` or ``--batch-size`` is then reported at once, in argparse's own words and
naming the option (``argument --epochs: must be a positive number, got '0'``), rather than as a
traceback about ``TrainingArguments.num_epochs`` after the model and the data have loaded.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="train")
    >>> _ = parser.add_argument("--batch-size", type=positive_int, default=32)
    >>> parser.parse_args(["--batch-size", "8"]).batch_size
    8
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str, kind: Callable[[str], float], expected: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
    return value


def _checked(
    name: str, kind: Callable[[str], float], expected: str, accepts: Callable[[float], bool]
):
    def parse(text: str):
        value = _number(text, kind, expected)
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    parse.__name__ = parse.__qualname__ = name
    parse.__doc__ = f"``{kind.__name__}`` that must be {expected} (finite)."
    return parse


positive_int = _checked("positive_int", int, "a positive integer", lambda v: v >= 1)
non_negative_int = _checked("non_negative_int", int, "a non-negative integer", lambda v: v >= 0)
positive_float = _checked("positive_float", float, "a positive number", lambda v: v > 0)
non_negative_float = _checked(
    "non_negative_float", float, "a non-negative number", lambda v: v >= 0
)
fraction = _checked("fraction", float, "a number from 0 to 1", lambda v: 0 <= v <= 1)
open_fraction = _checked(
    "open_fraction", float, "a number strictly between 0 and 1", lambda v: 0 < v < 1
)
