"""Sequence regression (float labels, as GLUE's STS-B): reading the targets, holding and batching
them, and the metrics, checked on hand-computed examples."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from peft_core.data import (
    DynamicPaddingCollator,
    Example,
    TextClassificationData,
    load_text_classification,
    with_evaluation_splits,
)
from peft_core.data.labels import encode_labels
from peft_core.trainer import (
    TrainingArguments,
    default_metrics,
    pearson_correlation,
    regression_metrics,
    spearman_correlation,
)

# -- labels ---------------------------------------------------------------------------------------


def test_floats_and_fractional_number_strings_are_regression_targets():
    assert encode_labels([3.8, 0.0, 5]) == ([3.8, 0.0, 5.0], [])
    assert encode_labels(["3.8", "0", "5.0"]) == ([3.8, 0.0, 5.0], [])  # a CSV file's scores
    # Whole numbers written with ".0" may name classes (star ratings): they stay class names.
    assert encode_labels(["1.0", "2.0", "1.0"]) == ([0, 1, 0], ["1.0", "2.0"])
    assert encode_labels(["pos", "3.5"]) == ([1, 0], ["3.5", "pos"])  # not all numbers


def test_bad_regression_targets_are_refused_with_the_reason():
    with pytest.raises(
        ValueError, match=r"label_names=.* names classes, but the labels are regression"
    ):
        encode_labels([0.5, 1.5], label_names=["low", "high"])
    with pytest.raises(ValueError, match="finite numbers, found nan"):
        encode_labels([0.5, math.nan])
    with pytest.raises(
        TypeError, match=r"all regression targets \(float\); found \['float', 'str'\]"
    ):
        encode_labels([0.5, "high"])


def test_an_example_holds_a_finite_float_target():
    assert Example("a", 2.5).is_regression
    assert not Example("a", 2).is_regression
    with pytest.raises(ValueError, match="must be finite, got inf"):
        Example("a", math.inf)
    with pytest.raises(ValueError, match=r"a class id .* or a regression target"):
        Example("a", -1)


# -- the data -------------------------------------------------------------------------------------


def _scores(n: int, offset: float = 0.0) -> list[Example]:
    return [Example(f"pair {i}", offset + i / 4, text_pair=f"other {i}") for i in range(n)]


def test_regression_data_has_one_output_and_summarises_its_targets():
    data = TextClassificationData(
        {"train": _scores(5), "test": _scores(2, offset=2.0)}, [], name="sts"
    )
    assert data.is_regression
    assert data.num_labels == 1
    # train targets 0, .25, .5, .75, 1: mean .5, population std sqrt(.125) = .354
    assert data.summary().splitlines() == [
        "sts: regression targets, 7 examples",
        "  train      5  mean 0.5 ± 0.354, from 0 to 1",
        "  test       2  mean 2.12 ± 0.125, from 2 to 2.25",
    ]
    with pytest.raises(ValueError, match="has targets, not classes"):
        data.label_counts("train")


def test_mixed_or_named_regression_labels_are_refused():
    with pytest.raises(ValueError, match="mix class ids"):
        TextClassificationData({"train": [Example("a", 1), Example("b", 0.5)]}, ["x", "y"])
    with pytest.raises(ValueError, match="pass label_names=\\[\\]"):
        TextClassificationData({"train": _scores(3)}, ["low", "high"])


def test_a_csv_and_a_jsonl_of_scores_load_as_regression_and_get_their_splits(tmp_path: Path):
    csv = tmp_path / "sts.csv"
    csv.write_text(
        "s1,s2,score\n" + "".join(f"left {i},right {i},{i / 8:.3f}\n" for i in range(40)),
        encoding="utf-8",
    )
    data = load_text_classification(
        csv, text_column="s1", text_pair_column="s2", label_column="score"
    )
    assert data.is_regression
    assert data.label_names == []
    assert {ex.label for ex in data["train"]} <= {i / 8 for i in range(40)}
    assert sum(len(part) for part in data.splits.values()) == 40

    jsonl = tmp_path / "sts.jsonl"
    rows = [{"text": f"t {i}", "label": float(i)} for i in range(20)]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    split = with_evaluation_splits(
        load_text_classification({"train": jsonl, "validation": jsonl}), seed=0
    )
    assert list(split.splits) == ["train", "validation", "test"]
    assert split.is_regression
    assert split.num_labels == 1


def test_hidden_sts_b_test_scores_drop_the_split_but_negative_targets_stay():
    datasets = pytest.importorskip("datasets", reason="the datasets extra is not installed")

    def split(labels: list[float]) -> Any:
        texts = [f"sentence {i}" for i in range(len(labels))]
        return datasets.Dataset.from_dict({"text": texts, "label": labels})

    source = datasets.DatasetDict(
        {
            "train": split([-0.5, 0.25, 1.0, -1.0]),  # sentiment-like scores: negatives are real
            "validation": split([0.5, -0.25]),
            "test": split([-1.0, -1.0, -1.0]),  # how GLUE hides STS-B's test scores
        }
    )
    with pytest.warns(UserWarning, match="dropping split 'test'"):
        data = load_text_classification(source)
    assert list(data.splits) == ["train", "validation"]
    assert [ex.label for ex in data["train"]] == [-0.5, 0.25, 1.0, -1.0]


def test_the_collator_stacks_targets_as_float32_and_refuses_a_mixed_batch():
    collate = DynamicPaddingCollator(pad_token_id=0)
    batch = collate([{"input_ids": [5, 6], "labels": 3.75}, {"input_ids": [7], "labels": 0.5}])
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [3.75, 0.5]
    with pytest.raises(
        ValueError, match="item 1 of the batch has labels=1, but item 0's label is a regression"
    ):
        collate([{"input_ids": [5], "labels": 3.75}, {"input_ids": [7], "labels": 1}])
    with pytest.raises(
        ValueError, match=r"item 1 of the batch has labels=0\.5; labels must be integer"
    ):
        collate([{"input_ids": [5], "labels": 1}, {"input_ids": [7], "labels": 0.5}])


# -- metrics --------------------------------------------------------------------------------------


def test_pearson_and_mse_by_hand():
    predictions = torch.tensor([[1.0], [2.0], [3.0], [6.0]])  # a one-output head's logits
    targets = torch.tensor([1.0, 3.0, 2.0, 6.0])
    # centred: (-2, -1, 0, 3) and (-2, 0, -1, 3): dot 4 + 0 + 0 + 9 = 13, both norms sqrt(14)
    metrics = regression_metrics(predictions, targets)
    assert metrics["pearson"] == pytest.approx(13 / 14)
    assert metrics["mse"] == pytest.approx((0 + 1 + 1 + 0) / 4)
    # ranks (1, 2, 3, 4) and (1, 3, 2, 4): centred dot 2.25 - 0.25 - 0.25 + 2.25 = 4, norms sqrt(5)
    assert metrics["spearman"] == pytest.approx(4 / 5)
    assert default_metrics(predictions, targets) == metrics  # float labels pick regression


def test_spearman_gives_ties_their_average_rank():
    predictions = torch.tensor([1.0, 2.0, 2.0, 3.0])  # ranks 1, 2.5, 2.5, 4
    targets = torch.tensor([1.0, 2.0, 3.0, 4.0])  # ranks 1, 2, 3, 4
    # centred: (-1.5, 0, 0, 1.5) and (-1.5, -.5, .5, 1.5): dot 4.5, norms sqrt(4.5) and sqrt(5)
    assert spearman_correlation(predictions, targets) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert spearman_correlation(targets.flip(0), targets) == pytest.approx(-1.0)


def test_constant_predictions_correlate_zero_and_a_many_output_head_is_refused():
    assert pearson_correlation(torch.ones(4), torch.arange(4.0)) == 0.0
    assert spearman_correlation(torch.ones(4), torch.arange(4.0)) == 0.0
    with pytest.raises(ValueError, match=r"one output per example, got logits of shape \(4, 2\)"):
        regression_metrics(torch.zeros(4, 2), torch.arange(4.0))


def test_the_best_checkpoint_minimises_errors_and_maximises_correlations(tmp_path: Path):
    def maximizes(metric: str) -> bool:
        return TrainingArguments(str(tmp_path), metric_for_best=metric).maximize_metric

    assert maximizes("pearson")
    assert maximizes("eval_spearman")
    assert not maximizes("mse")
    assert not maximizes("eval_loss")
