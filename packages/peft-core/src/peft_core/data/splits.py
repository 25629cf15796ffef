"""Deterministic train/validation/test splits that never put one text on both sides.

How a split is made (stable across runs, platforms and Python versions, and independent of the
order the examples come in):

1. Examples are grouped by ``(text, text_pair)``, so exact duplicates (common in scraped corpora:
   the embedded TREC file holds each question up to 15 times) land in the same split and cannot
   leak from train into test.
2. Each group is ranked by the BLAKE2b hash of ``seed`` and its text; unlike ``random.shuffle``,
   whose algorithm Python does not promise to keep, a hash ranks the same way everywhere.
3. Walking groups in rank order, the first ``round(test_fraction * n)`` examples go to ``test``,
   the next ``round(validation_fraction * n)`` to ``validation``, the rest to ``train``. Sizes are
   exact without duplicates and off by less than one group's size with them. Because test is
   filled first, changing ``validation_fraction`` never changes the test set.

Within a split, examples keep their original order.
"""

from __future__ import annotations

import hashlib
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

    A split whose fraction is 0 is left out of the result.

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

    n = len(examples)
    n_test = round(test_fraction * n)
    n_test_or_validation = n_test + round(validation_fraction * n)
    assignment = [""] * n
    placed = 0
    for key in sorted(groups, key=lambda k: _rank(k, seed)):
        name = (
            "test"
            if placed < n_test
            else "validation"
            if placed < n_test_or_validation
            else "train"
        )
        for index in groups[key]:
            assignment[index] = name
        placed += len(groups[key])

    wanted = ["train"]
    wanted += ["validation"] if validation_fraction > 0 else []
    wanted += ["test"] if test_fraction > 0 else []
    return {
        name: [ex for ex, a in zip(examples, assignment, strict=True) if a == name]
        for name in wanted
    }


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
