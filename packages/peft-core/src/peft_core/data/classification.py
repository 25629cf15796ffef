"""The result of loading a task: named splits of examples plus the class names."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING, Any

from peft_core.data.examples import Example

if TYPE_CHECKING:
    from peft_core.data.tokenization import TokenizedDataset


@dataclasses.dataclass
class TextClassificationData:
    """Splits of a text-classification task (``"train"``, ``"validation"``, ``"test"``, or the
    source's own names) and the names of its classes; label ``i`` means ``label_names[i]``.

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
    """

    splits: dict[str, list[Example]]
    label_names: list[str]
    name: str = ""
    #: How splits were made when the source lacked them (see ``with_evaluation_splits``).
    notes: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        for split, examples in self.splits.items():
            bad = next((ex.label for ex in examples if ex.label >= len(self.label_names)), None)
            if bad is not None:
                raise ValueError(
                    f"split {split!r} has label {bad}, but there are only {len(self.label_names)} "
                    f"label_names={self.label_names}"
                )

    @property
    def num_labels(self) -> int:
        """How many classes; what a classification head's ``num_labels`` should be."""
        return len(self.label_names)

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
        counts = Counter(ex.label for ex in self[split])
        return [counts[i] for i in range(self.num_labels)]

    def summary(self) -> str:
        """Split sizes and label balance, one line per split."""
        total = sum(len(examples) for examples in self.splits.values())
        title = f"{self.name or 'data'}: {self.num_labels} labels, {total} examples"
        lines = [title]
        width = max((len(str(len(examples))) for examples in self.splits.values()), default=1)
        for split, examples in self.splits.items():
            counts = self.label_counts(split)
            shares = "  ".join(
                f"{name} {100 * count / max(len(examples), 1):.1f}%"
                for name, count in zip(self.label_names, counts, strict=True)
            )
            lines.append(f"  {split:<10} {len(examples):>{width}}  {shares}".rstrip())
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

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
