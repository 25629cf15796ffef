"""Turning raw label values into class ids plus the list of class names, or into regression
targets."""

from __future__ import annotations

import math
from collections.abc import Sequence


def _sort_key(name: str) -> tuple[int, int | str]:
    # "2" < "10" when every name is an integer: star ratings read from CSV stay in rating order.
    return (0, int(name)) if _is_int(name) else (1, name)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def encode_labels(
    values: Sequence[object], label_names: Sequence[str] | None = None
) -> tuple[list[int] | list[float], list[str]]:
    """Map raw labels to class ids, or read them as regression targets; return
    ``(labels, label_names)``.

    * ``str`` values are class names: with ``label_names`` given, a name's id is its index there;
      otherwise names are sorted (numerically when all are integers) and numbered from 0.
    * ``int`` values are already class ids; ``label_names`` (default ``"0"``, ``"1"``, ...) only
      names them and bounds them. ``bool`` values are ids 0 and 1. Integer strings none of which
      is in ``label_names`` are ids too: a CSV file's ``0``/``1`` read as text.
    * ``float`` values (ints among them read as floats) are regression targets, as are strings
      that are all numbers, one at least with a fraction (a CSV file's ``3.8``): the labels come
      back as floats and ``label_names`` is empty. A task of them trains a one-output head.

    Example:
        >>> encode_labels(["pos", "neg", "pos"])
        ([1, 0, 1], ['neg', 'pos'])
        >>> encode_labels(["5", "10", "5"])
        ([0, 1, 0], ['5', '10'])
        >>> encode_labels([2, 0], label_names=["a", "b", "c"])
        ([2, 0], ['a', 'b', 'c'])
        >>> encode_labels([3.8, 0.5, 5])
        ([3.8, 0.5, 5.0], [])
    """
    if label_names is not None:
        label_names = [str(name) for name in label_names]
        if len(set(label_names)) != len(label_names):
            raise ValueError(f"label_names has duplicates: {label_names}")
    kinds = {type(v) for v in values}
    if kinds <= {str}:
        names = [str(v) for v in values]
        if label_names is None and _are_fractional_numbers(names):
            return _regression_targets([float(v) for v in names], label_names)
        if label_names is not None and _ids_as_text(names, label_names):
            return _encode_ids([int(v) for v in names], label_names)
        return _encode_names(names, label_names)
    if kinds <= {int, bool}:
        return _encode_ids([int(v) for v in values], label_names)  # type: ignore[call-overload]
    if float in kinds and kinds <= {int, float}:
        return _regression_targets([float(v) for v in values], label_names)  # type: ignore[arg-type]
    found = sorted(kind.__name__ for kind in kinds)
    raise TypeError(
        "labels must be all class names (str), all class ids (int) or all regression targets "
        f"(float); found {found}"
    )


def _are_fractional_numbers(values: list[str]) -> bool:
    """All numbers and one at least not a whole number: ``"3.8"`` is a score, ``"1.0"`` may
    still name a class."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return False
    return any(math.isfinite(n) and not n.is_integer() for n in numbers)


def _regression_targets(
    values: list[float], label_names: list[str] | None
) -> tuple[list[float], list[str]]:
    if label_names is not None:
        raise ValueError(
            f"label_names={label_names} names classes, but the labels are regression targets "
            "(floats); leave label_names unset"
        )
    bad = next((v for v in values if not math.isfinite(v)), None)
    if bad is not None:
        raise ValueError(f"regression targets must be finite numbers, found {bad}")
    return values, []


def _ids_as_text(values: list[str], label_names: list[str]) -> bool:
    return all(_is_int(v) for v in values) and not set(values) & set(label_names)


def _encode_names(values: list[str], label_names: list[str] | None) -> tuple[list[int], list[str]]:
    if label_names is None:
        label_names = sorted(set(values), key=_sort_key)
    index = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(values) - index.keys())
    if unknown:
        raise ValueError(f"labels {unknown[:10]} are not in label_names={label_names}")
    return [index[v] for v in values], label_names


def _encode_ids(values: list[int], label_names: list[str] | None) -> tuple[list[int], list[str]]:
    if values and min(values) < 0:
        raise ValueError(
            f"integer labels are class ids and must be >= 0, found {min(values)} "
            "(Hugging Face marks hidden test labels with -1)"
        )
    if label_names is None:
        label_names = [str(i) for i in range(max(values, default=-1) + 1)]
    elif values and max(values) >= len(label_names):
        raise ValueError(
            f"label id {max(values)} is out of range for {len(label_names)} label_names={label_names}"
        )
    return list(values), label_names
