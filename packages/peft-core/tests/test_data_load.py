"""Label encoding and the TextClassificationData container (sizes, balance, errors)."""

from __future__ import annotations

import pytest

from peft_core.data import Example, TextClassificationData, encode_labels


def test_encode_string_labels() -> None:
    assert encode_labels(["b", "a", "b"]) == ([1, 0, 1], ["a", "b"])
    assert encode_labels(["b", "a"], label_names=["b", "a"]) == ([0, 1], ["b", "a"])
    assert encode_labels(["-1", "1", "0"]) == ([0, 2, 1], ["-1", "0", "1"])
    assert encode_labels(["10", "9", "x"]) == ([1, 0, 2], ["9", "10", "x"])  # numbers before words


def test_encode_int_labels() -> None:
    assert encode_labels([1, 0, 1]) == ([1, 0, 1], ["0", "1"])
    assert encode_labels([], label_names=None) == ([], [])


def test_label_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="duplicates"):
        encode_labels(["a"], label_names=["a", "a"])


def test_example_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="class id"):
        Example("text", -1)
    with pytest.raises(ValueError, match="class id"):
        Example("text", True)
    with pytest.raises(TypeError, match="text must be a str"):
        Example(None, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text_pair"):
        Example("a", 0, text_pair=3)  # type: ignore[arg-type]


def _data() -> TextClassificationData:
    return TextClassificationData(
        {
            "train": [Example("a", 0), Example("b", 1), Example("c", 1), Example("d", 1)],
            "validation": [Example("e", 0)],
        },
        ["negative", "positive"],
        name="toy",
    )


def test_summary_and_repr_report_sizes_and_balance() -> None:
    data = _data()
    assert data.label_counts("train") == [1, 3]
    assert data.summary() == (
        "toy: 2 labels, 5 examples\n"
        "  train      4  negative 25.0%  positive 75.0%\n"
        "  validation 1  negative 100.0%  positive 0.0%"
    )
    assert repr(data) == (
        "TextClassificationData(name='toy', train=4, validation=1, label_names=['negative', 'positive'])"
    )
    assert data.num_labels == 2
    assert not data.is_pair_task


def test_unknown_split_lists_the_splits() -> None:
    with pytest.raises(KeyError, match=r"no split 'test'; this data has \['train', 'validation'\]"):
        _data()["test"]


def test_labels_must_fit_label_names() -> None:
    with pytest.raises(ValueError, match="split 'train' has label 2"):
        TextClassificationData({"train": [Example("a", 2)]}, ["x", "y"])
