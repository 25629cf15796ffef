"""DynamicPaddingCollator on hand-made items: padding values, masks, multiples, errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from peft_core.data import DynamicPaddingCollator


def _item(ids: list[int], label: int, types: bool = False) -> dict:
    item = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": label}
    if types:
        item["token_type_ids"] = [0] * (len(ids) - 1) + [1]
    return item


def test_pads_to_the_longest_in_the_batch() -> None:
    batch = DynamicPaddingCollator(pad_token_id=9)(
        [_item([1, 2, 3], 1), _item([4], 0), _item([5, 6], 1)]
    )
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 9, 9], [5, 6, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert batch["labels"].tolist() == [1, 0, 1]
    assert all(value.dtype == torch.long for value in batch.values())


def test_pad_to_multiple_of() -> None:
    collate = DynamicPaddingCollator(pad_token_id=0, pad_to_multiple_of=8)
    assert collate([_item(list(range(1, 10)), 0)])["input_ids"].shape == (1, 16)
    assert collate([_item(list(range(1, 9)), 0)])["input_ids"].shape == (1, 8)  # already a multiple
    assert collate([_item([1], 0)])["attention_mask"].tolist() == [[1] + [0] * 7]


def test_pad_to_length_pads_every_batch_to_one_fixed_length() -> None:
    collate = DynamicPaddingCollator(pad_token_id=9, pad_to_length=6)
    batch = collate([_item([1, 2, 3], 0), _item([4], 1)])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 9, 9, 9], [4, 9, 9, 9, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    assert collate([_item(list(range(1, 7)), 0)])["input_ids"].shape == (1, 6)
    with pytest.raises(ValueError, match=r"7 tokens, more than pad_to_length=6"):
        collate([_item(list(range(1, 8)), 0)])


def test_token_type_ids_use_their_own_pad_value() -> None:
    collate = DynamicPaddingCollator(pad_token_id=0, pad_token_type_id=3)
    batch = collate([_item([1, 2, 3], 0, types=True), _item([4, 5], 1, types=True)])
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 1, 3]]


def test_left_padding() -> None:
    batch = DynamicPaddingCollator(pad_token_id=7, padding_side="left")(
        [_item([1, 2], 0), _item([3], 1)]
    )
    assert batch["input_ids"].tolist() == [[1, 2], [7, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1], [0, 1]]


def test_a_missing_attention_mask_is_built() -> None:
    batch = DynamicPaddingCollator()(
        [{"input_ids": [1, 2], "labels": 0}, {"input_ids": [], "labels": 1}]
    )
    assert batch["attention_mask"].tolist() == [[1, 1], [0, 0]]
    assert batch["input_ids"].tolist() == [[1, 2], [0, 0]]


def test_items_without_labels_give_no_labels() -> None:
    batch = DynamicPaddingCollator()([{"input_ids": [1]}])
    assert set(batch) == {"input_ids", "attention_mask"}


def test_works_as_a_dataloader_collate_fn() -> None:
    items = [_item(list(range(1, n + 1)), n % 2) for n in (3, 5, 1, 2)]
    loader = DataLoader(
        items, batch_size=2, collate_fn=DynamicPaddingCollator(pad_to_multiple_of=4)
    )
    shapes = [tuple(batch["input_ids"].shape) for batch in loader]
    assert shapes == [(2, 8), (2, 4)]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], "empty batch"),
        ([_item([1], 0), {"input_ids": [1]}], "share their keys"),
        (
            [{"input_ids": [1], "offsets": [0], "labels": 0}],
            r"do not know how to pad \['offsets'\]",
        ),
        ([{"attention_mask": [1], "labels": 0}], "need 'input_ids'"),
        (
            [{"input_ids": [1, 2], "attention_mask": [1], "labels": 0}],
            "'attention_mask' is not as long",
        ),
    ],
)
def test_bad_batches(batch: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DynamicPaddingCollator()(batch)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"tokenizer\.pad_token = tokenizer\.eos_token"):
        DynamicPaddingCollator(pad_token_id=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        DynamicPaddingCollator(pad_to_multiple_of=0)
    with pytest.raises(ValueError, match="padding_side"):
        DynamicPaddingCollator(padding_side="middle")
    with pytest.raises(ValueError, match="pad_to_length must be a positive int"):
        DynamicPaddingCollator(pad_to_length=0)
    with pytest.raises(ValueError, match="not both"):
        DynamicPaddingCollator(pad_to_length=8, pad_to_multiple_of=8)


@pytest.mark.parametrize(
    ("label", "shown"),
    [(0.7, "labels=0.7"), (1.0, "labels=1.0"), (None, "labels=None"), ("pos", "labels='pos'")],
)
def test_a_label_that_is_not_a_class_id_is_an_error_naming_the_item(
    label: object, shown: str
) -> None:
    # A long tensor truncated 0.7 to 0; None gave an opaque TypeError from torch.tensor.
    with pytest.raises(ValueError, match=rf"item 1 of the batch has {shown}.*integer class ids"):
        DynamicPaddingCollator()([_item([1], 0), _item([2], label)])  # type: ignore[arg-type]


def test_integer_like_labels_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    items = [_item([1], np.int64(2)), _item([2], torch.tensor(1)), _item([3], 0)]
    assert DynamicPaddingCollator()(items)["labels"].tolist() == [2, 1, 0]
