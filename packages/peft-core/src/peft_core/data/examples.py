"""One labelled text (or text pair): the unit every loader produces and every split holds."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Example:
    """A text, an optional second text for pair tasks (NLI, paraphrase), and its label: a class
    id (an ``int``), or a regression target (a ``float``, as GLUE's STS-B similarity scores).

    Example:
        >>> Example("a gripping film", 1)
        Example(text='a gripping film', label=1, text_pair=None)
        >>> Example("A man sleeps.", 0, text_pair="Nobody sleeps.").text_pair
        'Nobody sleeps.'
        >>> Example("A man plays.", 3.8, text_pair="A man is playing.").label
        3.8
    """

    text: str
    label: int | float
    text_pair: str | None = None

    def __post_init__(self) -> None:
        # Catch loader bugs here, where the bad row is still known, not deep inside a tokenizer.
        if not isinstance(self.text, str):
            raise TypeError(
                f"Example.text must be a str, got {type(self.text).__name__}: {self.text!r}"
            )
        if self.text_pair is not None and not isinstance(self.text_pair, str):
            raise TypeError(
                f"Example.text_pair must be a str or None, got {type(self.text_pair).__name__}"
            )
        if isinstance(self.label, float):
            if not math.isfinite(self.label):
                raise ValueError(
                    f"Example.label, a regression target, must be finite, got {self.label!r}"
                )
        elif isinstance(self.label, bool) or not isinstance(self.label, int) or self.label < 0:
            raise ValueError(
                "Example.label must be a class id (an int >= 0) or a regression target (a float), "
                f"got {self.label!r}"
            )

    @property
    def is_regression(self) -> bool:
        """True when the label is a regression target rather than a class id."""
        return isinstance(self.label, float)


@dataclasses.dataclass
class RawSplit:
    """Columns of one split as a source gives them, before labels become class ids."""

    texts: list[str]
    labels: list[object]
    text_pairs: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)
