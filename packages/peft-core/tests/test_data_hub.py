"""Hugging Face datasets as a source, offline: in-memory datasets and the packaged csv builder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from peft_core.data import load_text_classification


def test_missing_datasets_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match=r'pip install "peft-core\[datasets\]"'):
        load_text_classification("hf:glue", subset="sst2", text_column="sentence")


def test_datasets_is_not_imported_by_other_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,x\n", encoding="utf-8")
    assert len(load_text_classification(path, validation_fraction=0, test_fraction=0)["train"]) == 1


@pytest.fixture
def hf() -> Any:
    """The datasets module; tests using it skip where the extra is not installed."""
    return pytest.importorskip("datasets", reason="the datasets extra is not installed")


def _sst2_like(hf: Any, n: int) -> Any:
    features = hf.Features(
        {"sentence": hf.Value("string"), "label": hf.ClassLabel(names=["negative", "positive"])}
    )
    rows = {"sentence": [f"sentence {i}" for i in range(n)], "label": [i % 2 for i in range(n)]}
    return hf.Dataset.from_dict(rows, features=features)


def test_dataset_dict_keeps_its_splits_and_class_names(hf: Any) -> None:
    source = hf.DatasetDict({"train": _sst2_like(hf, 6), "validation": _sst2_like(hf, 2)})
    data = load_text_classification(source, text_column="sentence")
    assert list(data.splits) == ["train", "validation"]
    assert data.label_names == ["negative", "positive"]
    assert [(ex.text, ex.label) for ex in data["validation"]] == [
        ("sentence 0", 0),
        ("sentence 1", 1),
    ]
    assert data.name == "DatasetDict"


def test_hidden_test_labels_drop_the_split_with_a_warning(hf: Any) -> None:
    hidden = hf.Dataset.from_dict({"sentence": ["x", "y"], "label": [-1, -1]})
    source = hf.DatasetDict(
        {"train": _sst2_like(hf, 4), "validation": _sst2_like(hf, 2), "test": hidden}
    )
    with pytest.warns(UserWarning, match="dropping split 'test'"):
        data = load_text_classification(source, text_column="sentence")
    assert list(data.splits) == ["train", "validation"]


def test_a_lone_dataset_is_split_like_a_file(hf: Any) -> None:
    data = load_text_classification(
        _sst2_like(hf, 50),
        text_column="sentence",
        validation_fraction=0.2,
        test_fraction=0.2,
        seed=4,
    )
    assert {name: len(split) for name, split in data.splits.items()} == {
        "train": 30,
        "validation": 10,
        "test": 10,
    }
    again = load_text_classification(
        _sst2_like(hf, 50),
        text_column="sentence",
        validation_fraction=0.2,
        test_fraction=0.2,
        seed=4,
    )
    assert again.splits == data.splits


def test_an_evaluation_only_source_is_split_with_a_note_and_a_warning(hf: Any) -> None:
    # Eval-only Hub datasets hold just a test split: training on part of it must not pass unseen.
    source = hf.DatasetDict({"test": _sst2_like(hf, 30)})
    with pytest.warns(UserWarning, match="the model trains on part of it"):
        data = load_text_classification(source, text_column="sentence")
    assert list(data.splits) == ["train", "validation", "test"]
    assert data.notes == ["DatasetDict's only split, 'test', was split into train/validation/test"]
    assert "note: DatasetDict's only split, 'test'" in data.summary()


def test_string_labels_and_pairs(hf: Any) -> None:
    source = hf.Dataset.from_dict(
        {
            "premise": ["p1", "p2", "p3"],
            "hypothesis": ["h1", "h2", "h3"],
            "gold": ["yes", "no", "yes"],
        }
    )
    data = load_text_classification(
        source,
        text_column="premise",
        text_pair_column="hypothesis",
        label_column="gold",
        validation_fraction=0,
        test_fraction=0,
    )
    assert data.label_names == ["no", "yes"]
    assert [(ex.text, ex.text_pair, ex.label) for ex in data["train"]] == [
        ("p1", "h1", 1),
        ("p2", "h2", 0),
        ("p3", "h3", 1),
    ]


def test_bad_column_names_the_split_and_its_columns(hf: Any) -> None:
    with pytest.raises(
        ValueError,
        match=r"text_column='text' is not a column of the 'train' split; its columns are \['sentence', 'label'\]",
    ):
        load_text_classification(_sst2_like(hf, 4))


def test_non_string_text_is_an_error(hf: Any) -> None:
    source = hf.Dataset.from_dict({"text": ["a", None], "label": [0, 1]})
    with pytest.raises(ValueError, match=r"split 'train', row 1: column 'text' holds None"):
        load_text_classification(source)


def test_hub_id_goes_through_load_dataset(hf: Any, tmp_path: Path) -> None:
    # The packaged "csv" builder needs no network, so this exercises the "hf:" path offline.
    train = tmp_path / "train.csv"
    train.write_text("text,label\ngood,pos\nbad,neg\nfine,pos\n", encoding="utf-8")
    test = tmp_path / "test.csv"
    test.write_text("text,label\nawful,neg\n", encoding="utf-8")
    data = load_text_classification(
        "hf:csv",
        data_files={"train": str(train), "test": str(test)},
        cache_dir=str(tmp_path / "cache"),
    )
    assert data.name == "csv"
    assert list(data.splits) == ["train", "test"]
    assert data.label_names == ["neg", "pos"]
    assert [ex.label for ex in data["train"]] == [1, 0, 1]


def test_subset_is_refused_for_a_loaded_dataset(hf: Any) -> None:
    with pytest.raises(ValueError, match="only apply to Hub sources"):
        load_text_classification(_sst2_like(hf, 4), text_column="sentence", subset="sst2")


def test_a_folder_saved_with_save_to_disk_keeps_every_split(hf: Any, tmp_path: Path) -> None:
    # load_dataset read such a folder by file pattern and lost splits with other names.
    hidden = hf.Dataset.from_dict(
        {"sentence": ["x", "y"], "label": [-1, -1]}, features=_sst2_like(hf, 1).features
    )
    source = hf.DatasetDict(
        {"train": _sst2_like(hf, 6), "validation_matched": _sst2_like(hf, 2), "unlabelled": hidden}
    )
    source.save_to_disk(str(tmp_path / "saved"))
    with pytest.warns(UserWarning, match="dropping split 'unlabelled'"):
        data = load_text_classification(f"hf:{tmp_path / 'saved'}", text_column="sentence")
    assert list(data.splits) == ["train", "validation_matched"]
    assert data.label_names == ["negative", "positive"]
    _sst2_like(hf, 10).save_to_disk(str(tmp_path / "lone"))  # one Dataset: split like a file
    data = load_text_classification(f"hf:{tmp_path / 'lone'}", text_column="sentence")
    assert {name: len(split) for name, split in data.splits.items()} == {
        "train": 8,
        "validation": 1,
        "test": 1,
    }


def test_an_empty_split_is_an_error_naming_it(hf: Any) -> None:
    source = hf.DatasetDict({"train": _sst2_like(hf, 4), "test": _sst2_like(hf, 0)})
    with pytest.raises(
        ValueError, match=r"DatasetDict: the split\(s\) \['test'\] hold no examples"
    ):
        load_text_classification(source, text_column="sentence")
