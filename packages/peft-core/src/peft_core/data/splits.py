"""Deterministic train/validation/test splits that never put one text on both sides.

How a split is made (stable across runs, platforms and Python versions, and independent of the
order the examples come in):

1. Examples are grouped by ``(text, text_pair)``, so exact duplicates (common in scraped corpora:
   the embedded TREC file holds each question up to 15 times) land in the same split and cannot
   leak from train into test.
2. Each group is ranked by the BLAKE2b hash of ``seed`` and its text; unlike ``random.shuffle``,
   whose algorithm Python does not promise to keep, a hash ranks the same way everywhere.
3. Walking groups in rank order, the first ``test_fraction * n`` examples (rounded half up, and at
   least one when the fraction is not 0) go to ``test``, the next ``validation_fraction * n`` to
   ``validation``, the rest to ``train``. Sizes are exact without duplicates and off by less than
   one group's size with them. Because test is filled first, changing ``validation_fraction``
   never changes the test set (except on tiny data, below).
4. Every split asked for gets at least one group: on tiny data a split stops taking groups as soon
   as the groups left are just enough for the splits after it. Data with fewer distinct texts than
   splits asked for (3 for train/validation/test) is an error that says so.

Within a split, examples keep their original order.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence

from peft_core.data.examples import Example

Key = tuple[str, str | None]


def check_fractions(validation_fraction: float, test_fraction: float) -> None:
    """Raise ``ValueError`` unless both fractions are in [0, 1) and leave something to train on."""
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"validation_fraction + test_fraction must be < 1 to leave a train split, got "
            f"{validation_fraction} + {test_fraction}"
        )


def _rank(key: Key, seed: int) -> bytes:
    text, pair = key
    # The unit separator keeps ("ab", "c") and ("a", "bc") apart; "\x00" marks "no pair" vs "".
    payload = "\x1f".join((str(seed), text, "\x00" if pair is None else "\x01" + pair))
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def split_examples(
    examples: Sequence[Example],
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, list[Example]]:
    """Split ``examples`` into ``train``/``validation``/``test`` (see the module docstring for how).

    A split whose fraction is 0 is left out of the result; every other split gets at least one
    example (``ValueError`` when there are too few distinct texts for that).

    Example:
        >>> examples = [Example(f"text {i}", i % 2) for i in range(10)]
        >>> parts = split_examples(examples, validation_fraction=0.2, test_fraction=0.3, seed=1)
        >>> {name: len(part) for name, part in parts.items()}
        {'train': 5, 'validation': 2, 'test': 3}
    """
    check_fractions(validation_fraction, test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    groups: dict[Key, list[int]] = {}
    for index, example in enumerate(examples):
        groups.setdefault((example.text, example.text_pair), []).append(index)

    wanted = ["train"]
    wanted += ["validation"] if validation_fraction > 0 else []
    wanted += ["test"] if test_fraction > 0 else []
    n = len(examples)
    if len(groups) < len(wanted):
        raise ValueError(_too_few_message(n, len(groups), wanted))
    # Filled in this order, each up to its quota; train takes the rest.
    order = [name for name in ("test", "validation") if name in wanted] + ["train"]
    quotas = {"test": _quota(test_fraction, n), "validation": _quota(validation_fraction, n)}
    bounds = list(itertools.accumulate(quotas[name] for name in order[:-1]))
    assignment = [""] * n
    placed = stage = groups_in_stage = 0
    ranked = sorted(groups, key=lambda k: _rank(k, seed))
    for position, key in enumerate(ranked):
        later_splits = len(order) - 1 - stage
        while (
            groups_in_stage > 0
            and later_splits > 0
            and (placed >= bounds[stage] or len(ranked) - position <= later_splits)
        ):
            stage, groups_in_stage, later_splits = stage + 1, 0, later_splits - 1
        for index in groups[key]:
            assignment[index] = order[stage]
        placed += len(groups[key])
        groups_in_stage += 1

    return {
        name: [ex for ex, a in zip(examples, assignment, strict=True) if a == name]
        for name in wanted
    }


def _quota(fraction: float, n: int) -> int:
    # Half up, not round()'s half to even (which gives 0 for 0.1 * 5), and never 0 for a split
    # that was asked for.
    return 0 if fraction == 0 else max(1, math.floor(fraction * n + 0.5))


def _too_few_message(n: int, distinct: int, wanted: list[str]) -> str:
    if n == 0:
        return "there are no examples to split"
    rows = f"{n} examples" if distinct == n else f"{n} examples with {distinct} distinct texts"
    return (
        f"cannot split {rows} into {'/'.join(wanted)}: each split needs at least one distinct "
        f"text, so {len(wanted)} are needed. Give more data, or set validation_fraction or "
        "test_fraction to 0 for a split you do not need"
    )


def deduplicate(examples: Sequence[Example]) -> list[Example]:
    """Keep the first example of each ``(text, text_pair)``; later copies are dropped even if their
    label differs (the first label wins).

    Example:
        >>> deduplicate([Example("a", 0), Example("b", 1), Example("a", 1)])
        [Example(text='a', label=0, text_pair=None), Example(text='b', label=1, text_pair=None)]
    """
    seen: set[Key] = set()
    kept = []
    for example in examples:
        key = (example.text, example.text_pair)
        if key not in seen:
            seen.add(key)
            kept.append(example)
    return kept
