"""Choosing which parameters train."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable

from torch import nn


def _as_patterns(trainable: str | Iterable[str]) -> list[str]:
    if isinstance(trainable, str):
        return [trainable]
    if not isinstance(trainable, Iterable):
        raise TypeError(
            "freeze(trainable=...) expects a glob pattern or a list of them, "
            f"got {type(trainable).__name__}: {trainable!r}"
        )
    patterns = list(trainable)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(
                f"freeze(trainable=...) expects glob patterns as strings, got {type(pattern).__name__}: {pattern!r}"
            )
    return patterns


def _close_matches(pattern: str, names: list[str], limit: int = 5) -> list[str]:
    """Names that look like what the user meant, for the error message."""
    literal = pattern.replace("*", "").replace("?", "")
    close = difflib.get_close_matches(pattern, names, n=limit, cutoff=0.5)
    # Parameter names are long dotted paths; also compare the last components, where typos live.
    if len(close) < limit and literal:
        by_suffix = {name.split(".")[-1]: name for name in names}
        for suffix in difflib.get_close_matches(literal.split(".")[-1], list(by_suffix), n=limit):
            if by_suffix[suffix] not in close:
                close.append(by_suffix[suffix])
    return close[:limit]


def freeze(model: nn.Module, trainable: str | Iterable[str] = ()) -> list[str]:
    """Freeze every parameter of ``model`` except those whose name matches one of ``trainable``.

    Patterns are shell-style globs over the names of ``model.named_parameters()``, e.g.
    ``"classifier.*"`` or ``"*.adapter.*"``. A parameter shared under several names (tied weights)
    stays trainable if any of its names matches.

    Returns the names of the parameters left trainable, in model order.

    Raises:
        ValueError: a pattern matches no parameter (the message lists close matches), or matches
            a parameter that cannot train (an integer dtype: quantized weights). The model is
            left unchanged.
        TypeError: ``trainable`` is not a pattern or an iterable of string patterns.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> freeze(model, trainable=["1.*"])
        ['1.weight', '1.bias']
    """
    patterns = _as_patterns(trainable)
    named = list(model.named_parameters(remove_duplicate=False))
    all_names = [name for name, _ in named]

    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in all_names)]
    if unmatched:
        details = []
        for pattern in unmatched:
            close = _close_matches(pattern, all_names)
            hint = f" (close matches: {', '.join(close)})" if close else ""
            details.append(f"{pattern!r}{hint}")
        raise ValueError(
            "freeze(trainable=...): these patterns match no parameter of "
            f"{type(model).__name__}: {'; '.join(details)}"
        )

    keep: set[int] = set()
    for name, parameter in named:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            keep.add(id(parameter))
    _refuse_untrainable_dtypes(model, named, keep)
    for _, parameter in named:
        parameter.requires_grad_(id(parameter) in keep)
    return [name for name, parameter in model.named_parameters() if id(parameter) in keep]


def _refuse_untrainable_dtypes(
    model: nn.Module, named: list[tuple[str, nn.Parameter]], keep: set[int]
) -> None:
    """Refuse, before touching the model, to train integer tensors (quantized weights).

    torch would raise mid-loop with a message naming no parameter, leaving the model half frozen.
    """
    bad = [
        f"{name} ({parameter.dtype}, {type(parameter).__name__})"
        for name, parameter in named
        if id(parameter) in keep and not (parameter.is_floating_point() or parameter.is_complex())
    ]
    if bad:
        raise ValueError(
            f"freeze(trainable=...): these parameters of {type(model).__name__} match but cannot "
            f"require gradients, their dtype is not floating point (quantized weights?): "
            f"{', '.join(bad)}. Narrow the patterns to exclude them."
        )


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that currently require gradients (tied parameters listed once)."""
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]
