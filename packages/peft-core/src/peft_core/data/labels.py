"""Turning raw label values (names or ids) into class ids plus the list of class names."""

from __future__ import annotations

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
) -> tuple[list[int], list[str]]:
    """Map raw labels to class ids; return ``(ids, label_names)``.

    * ``str`` values are class names: with ``label_names`` given, a name's id is its index there;
      otherwise names are sorted (numerically when all are integers) and numbered from 0.
    * ``int`` values are already class ids; ``label_names`` (default ``"0"``, ``"1"``, ...) only
      names them and bounds them. ``bool`` values are ids 0 and 1. Integer strings none of which
      is in ``label_names`` are ids too: a CSV file's ``0``/``1`` read as text.

    Example:
        >>> encode_labels(["pos", "neg", "pos"])
        ([1, 0, 1], ['neg', 'pos'])
        >>> encode_labels(["5", "10", "5"])
        ([0, 1, 0], ['5', '10'])
        >>> encode_labels([2, 0], label_names=["a", "b", "c"])
        ([2, 0], ['a', 'b', 'c'])
    """
    if label_names is not None:
        label_names = [str(name) for name in label_names]
        if len(set(label_names)) != len(label_names):
            raise ValueError(f"label_names has duplicates: {label_names}")
    kinds = {type(v) for v in values}
    if kinds <= {str}:
        names = [str(v) for v in values]
        if label_names is not None and _ids_as_text(names, label_names):
            return _encode_ids([int(v) for v in names], label_names)
        return _encode_names(names, label_names)
    if kinds <= {int, bool}:
        return _encode_ids([int(v) for v in values], label_names)  # type: ignore[call-overload]
    found = sorted(kind.__name__ for kind in kinds)
    raise TypeError(
        f"labels must be all class names (str) or all class ids (int); found {found}. "
        "Float labels (regression) are not supported."
    )


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
