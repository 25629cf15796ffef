"""Batching tokenized items: pad each batch to its own longest sequence (or to a fixed length)."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import torch


class DynamicPaddingCollator:
    """A ``collate_fn`` that pads ``input_ids``/``attention_mask``/``token_type_ids`` to the longest
    item of the batch (rounded up to ``pad_to_multiple_of``, which suits tensor cores when it is 8)
    and stacks ``labels``: integer class ids into a ``torch.long`` tensor, or regression targets
    (Python floats, every item's) into a ``torch.float32`` one. A batch mixing the two, or a
    ``None`` label, is an error naming the item, never a truncation. The token tensors are
    ``torch.long``.

    Padding uses ``pad_token_id`` for ids, 0 for the attention mask (so the model ignores it) and
    ``pad_token_type_id`` for token types. An item without ``attention_mask`` gets one of ones.
    ``pad_to_length`` pads every batch to that fixed length instead (a tokenizer's
    ``padding="max_length"``), for replicating scripts whose numbers depend on the pads.

    Example:
        >>> collate = DynamicPaddingCollator(pad_token_id=0, pad_to_multiple_of=4)
        >>> batch = collate(
        ...     [{"input_ids": [5, 6, 7], "labels": 1}, {"input_ids": [8], "labels": 0}]
        ... )
        >>> batch["input_ids"]
        tensor([[5, 6, 7, 0],
                [8, 0, 0, 0]])
        >>> batch["attention_mask"]
        tensor([[1, 1, 1, 0],
                [1, 0, 0, 0]])
        >>> batch["labels"]
        tensor([1, 0])
    """

    def __init__(
        self,
        pad_token_id: int = 0,
        *,
        pad_to_multiple_of: int | None = None,
        pad_token_type_id: int = 0,
        padding_side: str = "right",
        pad_to_length: int | None = None,
    ) -> None:
        if isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int):
            raise TypeError(
                f"pad_token_id must be an int, got {pad_token_id!r}; a tokenizer without a pad token "
                "(GPT-2, Llama) needs one first, e.g. tokenizer.pad_token = tokenizer.eos_token"
            )
        if pad_to_multiple_of is not None and (
            isinstance(pad_to_multiple_of, bool)
            or not isinstance(pad_to_multiple_of, int)
            or pad_to_multiple_of < 1
        ):
            raise ValueError(
                f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}"
            )
        if pad_to_length is not None and (
            isinstance(pad_to_length, bool)
            or not isinstance(pad_to_length, int)
            or pad_to_length < 1
        ):
            raise ValueError(f"pad_to_length must be a positive int or None, got {pad_to_length!r}")
        if pad_to_length is not None and pad_to_multiple_of is not None:
            raise ValueError(
                "give pad_to_length (one fixed length) or pad_to_multiple_of (round each batch "
                f"up), not both; got {pad_to_length!r} and {pad_to_multiple_of!r}"
            )
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_to_length = pad_to_length
        self.padding_side = padding_side
        self.pad_values = {
            "input_ids": pad_token_id,
            "attention_mask": 0,
            "token_type_ids": pad_token_type_id,
        }

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        *,
        pad_to_multiple_of: int | None = None,
        pad_to_length: int | None = None,
    ) -> DynamicPaddingCollator:
        """Take the pad id, pad token type and padding side from a Hugging Face tokenizer."""
        return cls(
            tokenizer.pad_token_id,
            pad_to_multiple_of=pad_to_multiple_of,
            pad_to_length=pad_to_length,
            pad_token_type_id=getattr(tokenizer, "pad_token_type_id", 0),
            padding_side=getattr(tokenizer, "padding_side", "right"),
        )

    def __repr__(self) -> str:
        return (
            f"DynamicPaddingCollator(pad_token_id={self.pad_token_id}, "
            f"pad_to_multiple_of={self.pad_to_multiple_of}, pad_to_length={self.pad_to_length}, "
            f"padding_side={self.padding_side!r})"
        )

    def __call__(self, batch: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if len(batch) == 0:
            raise ValueError("cannot collate an empty batch")
        keys = set(batch[0])
        if any(set(item) != keys for item in batch):
            raise ValueError(
                f"items of a batch must share their keys; got {sorted({k for i in batch for k in i})}"
            )
        unknown = keys - self.pad_values.keys() - {"labels"}
        if unknown:
            raise ValueError(
                f"do not know how to pad {sorted(unknown)}; items may hold {sorted(self.pad_values)} and 'labels'"
            )
        if "input_ids" not in keys:
            raise ValueError("items need 'input_ids'")
        sequences = {key: [item[key] for item in batch] for key in self.pad_values if key in keys}
        if "attention_mask" not in sequences:
            sequences["attention_mask"] = [[1] * len(ids) for ids in sequences["input_ids"]]
        for key, rows in sequences.items():
            if any(
                len(row) != len(ids) for row, ids in zip(rows, sequences["input_ids"], strict=True)
            ):
                raise ValueError(f"an item's {key!r} is not as long as its 'input_ids'")
        length = self._padded_length(max(len(ids) for ids in sequences["input_ids"]))
        out = {
            key: self._pad(rows, self.pad_values[key], length) for key, rows in sequences.items()
        }
        if "labels" in keys:
            out["labels"] = _labels([item["labels"] for item in batch])
        return out

    def _padded_length(self, longest: int) -> int:
        if self.pad_to_length is not None:
            if longest > self.pad_to_length:
                raise ValueError(
                    f"an item has {longest} tokens, more than pad_to_length={self.pad_to_length}: "
                    "truncate to that length when tokenizing"
                )
            return self.pad_to_length
        multiple = self.pad_to_multiple_of
        return longest if multiple is None else -(-longest // multiple) * multiple

    def _pad(self, rows: list[Sequence[int]], value: int, length: int) -> torch.Tensor:
        out = torch.full((len(rows), length), value, dtype=torch.long)
        for i, row in enumerate(rows):
            if len(row) == 0:
                continue
            target = (
                slice(0, len(row))
                if self.padding_side == "right"
                else slice(length - len(row), length)
            )
            out[i, target] = torch.as_tensor(row, dtype=torch.long)
        return out


def _labels(labels: list[Any]) -> torch.Tensor:
    """Class ids as a long tensor, or regression targets (when the first label is a float) as
    a float32 one."""
    if isinstance(labels[0], float):
        return torch.tensor(
            [_target(label, i) for i, label in enumerate(labels)], dtype=torch.float32
        )
    return torch.tensor([_class_id(label, i) for i, label in enumerate(labels)], dtype=torch.long)


def _target(label: Any, index: int) -> float:
    if isinstance(label, float):
        return label
    raise ValueError(
        f"item {index} of the batch has labels={label!r:.60}, but item 0's label is a regression "
        "target (float): a batch holds class ids or targets, not both"
    )


def _class_id(label: Any, index: int) -> int:
    """``label`` as an int, or a ``ValueError`` naming the item: a float among class ids would
    be truncated by the long tensor (0.7 -> 0)."""
    if not isinstance(label, bool):
        try:
            return operator.index(label)  # int, numpy integer, one-element integer tensor
        except TypeError:
            pass
    raise ValueError(
        f"item {index} of the batch has labels={label!r:.60}; labels must be integer class ids, "
        "or regression targets (floats) in every item"
    )
