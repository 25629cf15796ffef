"""Label encoding and the TextClassificationData container (sizes, balance, errors)."""

from __future__ import annotations

import pytest

from peft_core.data import Example, TextClassificationData, encode_labels, with_evaluation_splits


def test_encode_string_labels() -> None:
    assert encode_labels(["b", "a", "b"]) == ([1, 0, 1], ["a", "b"])
    assert encode_labels(["b", "a"], label_names=["b", "a"]) == ([0, 1], ["b", "a"])
    assert encode_labels(["-1", "1", "0"]) == ([0, 2, 1], ["-1", "0", "1"])
    assert encode_labels(["10", "9", "x"]) == ([1, 0, 2], ["9", "10", "x"])  # numbers before words


def test_encode_int_labels() -> None:
    assert encode_labels([1, 0, 1]) == ([1, 0, 1], ["0", "1"])
    assert encode_labels([], label_names=None) == ([], [])


def test_booleans_and_ids_read_as_text_are_class_ids() -> None:
    assert encode_labels([True, False]) == ([1, 0], ["0", "1"])
    # A CSV file's 0/1 are strings; named classes make them ids rather than unknown names.
    assert encode_labels(["1", "0"], label_names=["neg", "pos"]) == ([1, 0], ["neg", "pos"])
    assert encode_labels(["1"], label_names=["0", "1"]) == (
        [1],
        ["0", "1"],
    )  # names when they match
    with pytest.raises(ValueError, match="out of range"):
        encode_labels(["2"], label_names=["neg", "pos"])


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


def _train(n: int) -> list[Example]:
    return [Example(f"text {i}", i % 2) for i in range(n)]


def test_a_missing_validation_split_is_carved_from_train() -> None:
    # IMDb's shape: train and test, no validation.
    test = [Example("held out", 1)]
    data = TextClassificationData({"train": _train(40), "test": test}, ["neg", "pos"], name="imdb")
    completed = with_evaluation_splits(data, seed=3)
    assert list(completed.splits) == ["train", "validation", "test"]
    assert (len(completed["train"]), len(completed["validation"])) == (36, 4)
    assert completed["test"] == test
    assert sorted(completed["train"] + completed["validation"], key=lambda ex: ex.text) == sorted(
        _train(40), key=lambda ex: ex.text
    )
    assert completed.splits == with_evaluation_splits(data, seed=3).splits  # seeded
    assert completed["validation"] != with_evaluation_splits(data, seed=4)["validation"]
    assert "validation = 4 examples carved from the source's train split" in completed.summary()
    assert data.notes == []  # the input is left alone


def test_without_a_test_split_validation_becomes_test() -> None:
    # GLUE's shape: the test labels are hidden, so only train and validation are loaded.
    validation = [Example("dev 0", 0), Example("dev 1", 1)]
    data = TextClassificationData(
        {"train": _train(20), "validation": validation}, ["neg", "pos"], name="glue"
    )
    completed = with_evaluation_splits(data)
    assert completed["test"] == validation
    assert (len(completed["train"]), len(completed["validation"])) == (18, 2)
    assert not {ex.text for ex in completed["validation"]} & {ex.text for ex in validation}
    assert completed.notes[0] == (
        "test = the source's 'validation' split (glue has no labelled test split)"
    )
    assert "note: test = the source's 'validation' split" in completed.summary()


def test_complete_data_is_kept_and_unusable_data_is_an_error() -> None:
    splits = {"train": _train(5), "validation": [Example("v", 0)], "test": [Example("t", 1)]}
    data = TextClassificationData(splits, ["neg", "pos"])
    assert with_evaluation_splits(data).splits == splits
    with pytest.raises(ValueError, match=r"no 'train' split.*\['validation', 'test'\]"):
        with_evaluation_splits(
            TextClassificationData({k: splits[k] for k in ("validation", "test")}, ["a", "b"])
        )
    only_train = TextClassificationData({"train": _train(2)}, ["neg", "pos"], name="tiny")
    with pytest.raises(ValueError, match="tiny's train split: cannot split 2 examples"):
        with_evaluation_splits(only_train)
    with pytest.raises(ValueError, match=r"no validation split, and \['validation_fraction'\] = 0"):
        with_evaluation_splits(
            TextClassificationData({"train": _train(9), "test": _train(1)}, ["neg", "pos"]),
            validation_fraction=0,
        )
