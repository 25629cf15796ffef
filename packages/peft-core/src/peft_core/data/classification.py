"""The result of loading a task: named splits of examples plus the class names."""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from typing import TYPE_CHECKING, Any

from peft_core.data.examples import Example

if TYPE_CHECKING:
    from peft_core.data.tokenization import TokenizedDataset


@dataclasses.dataclass
class TextClassificationData:
    """Splits of a text-classification task (``"train"``, ``"validation"``, ``"test"``, or the
    source's own names) and the names of its classes; label ``i`` means ``label_names[i]``.

    A sequence-regression task (float labels, as GLUE's STS-B) is held the same way, with no
    class names: what Hugging Face's ``AutoModelForSequenceClassification`` trains with
    ``num_labels=1``.

    Example:
        >>> data = TextClassificationData(
        ...     {"train": [Example("good", 1), Example("bad", 0)], "test": [Example("fine", 1)]},
        ...     ["negative", "positive"],
        ...     name="toy",
        ... )
        >>> data.num_labels, len(data["train"])
        (2, 2)
        >>> print(data.summary())
        toy: 2 labels, 3 examples
          train      2  negative 50.0%  positive 50.0%
          test       1  negative 0.0%  positive 100.0%
        >>> scores = TextClassificationData({"train": [Example("a", 4.0), Example("b", 1.0)]}, [])
        >>> scores.num_labels
        1
        >>> print(scores.summary())
        data: regression targets, 2 examples
          train      2  mean 2.5 ± 1.5, from 1 to 4
    """

    splits: dict[str, list[Example]]
    label_names: list[str]
    name: str = ""
    #: How splits were made when the source lacked them (see ``with_evaluation_splits``).
    notes: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        kinds = {ex.is_regression for examples in self.splits.values() for ex in examples}
        if len(kinds) > 1:
            raise ValueError("the examples mix class ids (int) and regression targets (float)")
        if kinds == {True}:
            if self.label_names:
                raise ValueError(
                    f"label_names={self.label_names} names classes, but the labels are "
                    "regression targets (floats): pass label_names=[]"
                )
            return
        for split, examples in self.splits.items():
            bad = next((ex.label for ex in examples if ex.label >= len(self.label_names)), None)
            if bad is not None:
                raise ValueError(
                    f"split {split!r} has label {bad}, but there are only {len(self.label_names)} "
                    f"label_names={self.label_names}"
                )

    @property
    def is_regression(self) -> bool:
        """True when the labels are regression targets (floats), not class ids."""
        # Construction checked every example: targets come without class names, and class ids
        # need them, so this holds without scanning the examples again.
        return not self.label_names and any(self.splits.values())

    @property
    def num_labels(self) -> int:
        """What a sequence-classification head's ``num_labels`` should be: the number of classes,
        or 1 for a regression task (Hugging Face models then train with a mean squared error)."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair_task(self) -> bool:
        """True when examples carry a ``text_pair``."""
        return any(ex.text_pair is not None for examples in self.splits.values() for ex in examples)

    def __getitem__(self, split: str) -> list[Example]:
        if split not in self.splits:
            raise KeyError(f"no split {split!r}; this data has {list(self.splits)}")
        return self.splits[split]

    def label_counts(self, split: str) -> list[int]:
        """How many examples of ``split`` carry each label, indexed by label id."""
        if self.is_regression:
            raise ValueError("a regression task has targets, not classes to count")
        counts = Counter(ex.label for ex in self[split])
        return [counts[i] for i in range(self.num_labels)]

    def summary(self) -> str:
        """Split sizes and label balance (a regression task: the targets' mean, spread and
        range), one line per split."""
        total = sum(len(examples) for examples in self.splits.values())
        kind = "regression targets" if self.is_regression else f"{self.num_labels} labels"
        lines = [f"{self.name or 'data'}: {kind}, {total} examples"]
        width = max((len(str(len(examples))) for examples in self.splits.values()), default=1)
        for split, examples in self.splits.items():
            shares = self._target_spread(split) if self.is_regression else self._shares(split)
            lines.append(f"  {split:<10} {len(examples):>{width}}  {shares}".rstrip())
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def _shares(self, split: str) -> str:
        size = max(len(self[split]), 1)
        return "  ".join(
            f"{name} {100 * count / size:.1f}%"
            for name, count in zip(self.label_names, self.label_counts(split), strict=True)
        )

    def _target_spread(self, split: str) -> str:
        targets = [ex.label for ex in self[split]]
        if not targets:
            return ""
        spread = statistics.pstdev(targets)
        return (
            f"mean {statistics.fmean(targets):.3g} ± {spread:.3g}, "
            f"from {min(targets):.3g} to {max(targets):.3g}"
        )

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={len(examples)}" for split, examples in self.splits.items())
        return (
            f"TextClassificationData(name={self.name!r}, {sizes}, label_names={self.label_names})"
        )

    def tokenize(
        self, tokenizer: Any, split: str = "train", max_length: int | None = 128
    ) -> TokenizedDataset:
        """Tokenize one split into a map-style torch dataset (see :class:`TokenizedDataset`)."""
        from peft_core.data.tokenization import TokenizedDataset

        return TokenizedDataset(self[split], tokenizer, max_length=max_length)
