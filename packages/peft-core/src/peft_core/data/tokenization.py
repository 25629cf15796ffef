"""Tokenizing examples into a map-style torch dataset, without padding.

Padding is left to :class:`~peft_core.data.collate.DynamicPaddingCollator`, which pads each batch
only to its own longest sequence: with short texts such as movie snippets (about 25 tokens) that
is far less work than padding everything to ``max_length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from peft_core.data.examples import Example

# What a classifier consumes; other outputs a tokenizer may add (offsets, special-token masks)
# have no padding rule in the collator, so they are not kept.
FEATURES = ("input_ids", "attention_mask", "token_type_ids")


class TokenizedDataset(Dataset):
    """Examples tokenized by a Hugging Face tokenizer, truncated to ``max_length``, unpadded.

    Item ``i`` is ``{"input_ids": list[int], "attention_mask": list[int], "labels": int}`` (a
    float for a regression task), plus ``"token_type_ids"`` when the tokenizer makes them (BERT
    does). ``max_length=None`` means the tokenizer's own ``model_max_length``.

    Example::

        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
        train = TokenizedDataset([Example("a fine film", 1)], tokenizer, max_length=64)
        train[0]  # {'input_ids': [101, 1037, 2986, 2143, 102], 'token_type_ids': [0, 0, 0, 0, 0],
        #            'attention_mask': [1, 1, 1, 1, 1], 'labels': 1}
    """

    def __init__(
        self,
        examples: Sequence[Example],
        tokenizer: Any,
        max_length: int | None = 128,
        *,
        batch_size: int = 1024,
    ) -> None:
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        if not callable(tokenizer):
            raise TypeError(
                f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}"
            )
        has_pair = {ex.text_pair is not None for ex in examples}
        if len(has_pair) > 1:
            raise ValueError("examples mix single texts and text pairs; tokenize them separately")
        self.max_length = max_length
        self._items: list[dict[str, Any]] = []
        # Batches make fast (Rust) tokenizers work in parallel without holding every encoding twice.
        for start in range(0, len(examples), batch_size):
            self._items += _encode(examples[start : start + batch_size], tokenizer, max_length)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        # A fresh dict, so a caller adding keys cannot change what the next epoch sees.
        return dict(self._items[index])

    @property
    def lengths(self) -> list[int]:
        """Token count of every item (for length-grouped batching or statistics)."""
        return [len(item["input_ids"]) for item in self._items]


def _encode(
    examples: Sequence[Example], tokenizer: Any, max_length: int | None
) -> list[dict[str, Any]]:
    texts = [ex.text for ex in examples]
    pairs = [ex.text_pair for ex in examples] if examples[0].text_pair is not None else None
    encoding = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False)
    columns = {key: encoding[key] for key in FEATURES if key in encoding}
    if "input_ids" not in columns:
        raise TypeError(f"the tokenizer returned {list(encoding)}, without 'input_ids'")
    items = []
    for i, example in enumerate(examples):
        item = {key: [int(token) for token in values[i]] for key, values in columns.items()}
        item["labels"] = example.label
        items.append(item)
    return items
