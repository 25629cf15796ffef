"""Local CSV/TSV/JSON Lines/JSON files through load_text_classification and read_file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peft_core.data import load_text_classification
from peft_core.data.files import read_file

ALL = {"validation_fraction": 0, "test_fraction": 0}  # keep every row in "train"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    return _write(path, "".join(json.dumps(row) + "\n" for row in rows))


def test_csv_with_string_labels_maps_them_in_sorted_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "reviews.csv",
        'review,stars\n"Great, really",pos\nAwful,neg\n"Two\nlines",pos\nMeh,neutral\n',
    )
    data = load_text_classification(path, text_column="review", label_column="stars", **ALL)
    assert data.label_names == ["neg", "neutral", "pos"]
    assert [(ex.text, ex.label) for ex in data["train"]] == [
        ("Great, really", 2),
        ("Awful", 0),
        ("Two\nlines", 2),
        ("Meh", 1),
    ]
    assert data.name == "reviews.csv"


def test_numeric_string_labels_sort_numerically(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "text,label\na,10\nb,2\nc,1\nd,2\n")
    data = load_text_classification(str(path), **ALL)
    assert data.label_names == ["1", "2", "10"]
    assert [ex.label for ex in data["train"]] == [2, 1, 0, 1]


def test_given_label_names_fix_the_ids(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "text,label\na,positive\nb,negative\n")
    data = load_text_classification(path, label_names=["positive", "negative", "neutral"], **ALL)
    assert [ex.label for ex in data["train"]] == [0, 1]
    assert data.num_labels == 3


def test_a_label_outside_label_names_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "text,label\na,positive\nb,mixed\n")
    with pytest.raises(ValueError, match=r"\['mixed'\] are not in label_names"):
        load_text_classification(path, label_names=["negative", "positive"])


def test_sentence_pairs(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "nli.tsv",
        "premise\thypothesis\tgold\nA man sleeps.\tNobody sleeps.\tcontradiction\n"
        "A dog runs.\tAn animal moves.\tentailment\n",
    )
    data = load_text_classification(
        path, text_column="premise", text_pair_column="hypothesis", label_column="gold", **ALL
    )
    first, second = data["train"]
    assert (first.text, first.text_pair, first.label) == ("A man sleeps.", "Nobody sleeps.", 0)
    assert (second.text_pair, second.label) == ("An animal moves.", 1)
    assert data.is_pair_task


def test_jsonl_with_int_labels_keeps_them_as_ids(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 2}, {"text": "b", "label": 0}])
    data = load_text_classification(path, **ALL)
    assert [ex.label for ex in data["train"]] == [2, 0]
    assert data.label_names == ["0", "1", "2"]
    named = load_text_classification(path, label_names=["x", "y", "z"], **ALL)
    assert named.label_names == ["x", "y", "z"]


def test_int_labels_out_of_range_or_negative(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 3}])
    with pytest.raises(ValueError, match="label id 3 is out of range"):
        load_text_classification(path, label_names=["x", "y"])
    path = _jsonl(tmp_path / "e.jsonl", [{"text": "a", "label": -1}])
    with pytest.raises(ValueError, match=">= 0"):
        load_text_classification(path)


def test_mixed_labels_are_rejected_and_floats_are_regression_targets(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": "pos"}])
    with pytest.raises(TypeError, match=r"all class names \(str\), all class ids \(int\)"):
        load_text_classification(path)
    rows = [{"text": f"t {i}", "label": i / 2} for i in range(5)]
    data = load_text_classification(_jsonl(tmp_path / "f.jsonl", rows))
    assert data.is_regression
    assert sorted(ex.label for part in data.splits.values() for ex in part) == [0, 0.5, 1, 1.5, 2]


def test_json_array_and_blank_jsonl_lines(tmp_path: Path) -> None:
    array = _write(tmp_path / "d.json", json.dumps([{"t": "a", "y": "b"}, {"t": "c", "y": "a"}]))
    raw = read_file(array, text_column="t", label_column="y")
    assert (raw.texts, raw.labels, raw.text_pairs) == (["a", "c"], ["b", "a"], None)
    lines = _write(tmp_path / "d.jsonl", '{"t": "a", "y": 1}\n\n{"t": "b", "y": 0}\n')
    assert read_file(lines, text_column="t", label_column="y").labels == [1, 0]


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("text,label\nhi,a\n".encode("utf-8-sig"))
    assert read_file(path).texts == ["hi"]


@pytest.mark.parametrize(
    ("argument", "column"),
    [("text_column", "sentence"), ("label_column", "target"), ("text_pair_column", "hypothesis")],
)
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_bad_column_names_the_argument_the_column_and_the_columns(
    tmp_path: Path, argument: str, column: str, suffix: str
) -> None:
    path = tmp_path / f"d{suffix}"
    if suffix == ".csv":
        _write(path, "text,label\na,b\n")
    else:
        _jsonl(path, [{"text": "a", "label": "b"}])
    with pytest.raises(
        ValueError, match=rf"{argument}='{column}' is not a column of .*\['text', 'label'\]"
    ):
        load_text_classification(path, **{argument: column})


def test_missing_values_name_the_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "text,label\na,x\nb,\n")
    with pytest.raises(ValueError, match="line 3 has no value in label column 'label'"):
        load_text_classification(path)
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 0}, {"text": None, "label": 1}])
    with pytest.raises(ValueError, match="line 2 needs a string in column 'text'"):
        load_text_classification(path)
    path = _write(tmp_path / "e.jsonl", '{"text": "a", "label": 0}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2 is not a JSON object"):
        load_text_classification(path)


def test_unsupported_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"suffix must be one of \['.csv', '.tsv', '.jsonl', '.json'\]"
    ):
        load_text_classification(_write(tmp_path / "d.parquet", ""))
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        load_text_classification(tmp_path / "nope.csv")


def test_unknown_source_lists_the_options() -> None:
    with pytest.raises(
        ValueError, match=r"unknown source 'rotten_tomatos'.*'rotten_tomatoes'.*hf:"
    ):
        load_text_classification("rotten_tomatos")


def test_a_single_file_is_split_deterministically(tmp_path: Path) -> None:
    rows = [{"text": f"review number {i}", "label": ["neg", "pos"][i % 2]} for i in range(100)]
    path = _jsonl(tmp_path / "d.jsonl", rows)
    data = load_text_classification(path, seed=1, validation_fraction=0.2, test_fraction=0.1)
    assert {name: len(split) for name, split in data.splits.items()} == {
        "train": 70,
        "validation": 20,
        "test": 10,
    }
    again = load_text_classification(path, seed=1, validation_fraction=0.2, test_fraction=0.1)
    assert again.splits == data.splits


def test_a_mapping_of_files_keeps_its_splits_and_shares_label_ids(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\nc,pos\n")
    test = _write(tmp_path / "test.csv", "text,label\nd,pos\n")  # "neg" absent, ids still shared
    data = load_text_classification({"train": train, "test": test}, seed=123)
    assert list(data.splits) == ["train", "test"]
    assert [ex.label for ex in data["train"]] == [1, 0, 1]
    assert [ex.label for ex in data["test"]] == [1]


def test_deduplicate_drops_repeated_texts(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "text,label\na,x\nb,y\na,x\na,y\n")
    assert len(load_text_classification(path, **ALL)["train"]) == 4
    assert [ex.text for ex in load_text_classification(path, deduplicate=True, **ALL)["train"]] == [
        "a",
        "b",
    ]


def test_hub_arguments_are_refused_for_files(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "text,label\na,x\n")
    with pytest.raises(ValueError, match=r"\['subset', 'revision'\] only apply to Hub sources"):
        load_text_classification(path, subset="sst2", revision="main")


def test_a_csv_row_with_more_fields_than_the_header_is_an_error(tmp_path: Path) -> None:
    # csv.DictReader keeps the extra field aside: the label became " loved it".
    path = _write(tmp_path / "d.csv", "text,label\nawful,neg\ngreat movie, loved it,pos\n")
    with pytest.raises(
        ValueError, match=r"d\.csv: line 3 has 3 fields but the header names 2.*quoted"
    ):
        load_text_classification(path, **ALL)
    tsv = _write(tmp_path / "d.tsv", "text\tlabel\na\tb\tc\n")
    with pytest.raises(ValueError, match=r"d\.tsv: line 2 has 3 fields.*cannot contain a tab"):
        load_text_classification(tsv, **ALL)


def test_tsv_is_read_without_quoting_as_glue_writes_it(tmp_path: Path) -> None:
    # A sentence opening with a quote is text: read as a CSV quote it swallowed the next lines.
    tsv = _write(
        tmp_path / "d.tsv",
        'sentence\tlabel\n" bad \t0\nplain sentence\t1\nhe said "no" twice\t0\n',
    )
    split = read_file(tsv, text_column="sentence", label_column="label")
    assert split.texts == ['" bad ', "plain sentence", 'he said "no" twice']
    assert split.labels == ["0", "1", "0"]


def test_invalid_json_names_the_file_and_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.jsonl",
        '{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n{"text": "c", label: "x"}\n',
    )
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 4, column 15: invalid JSON"):
        load_text_classification(path, **ALL)
    array = _write(tmp_path / "bad.json", '[\n {"text": "a", "label": "x"},\n {"text": }\n]')
    with pytest.raises(ValueError, match=r"bad\.json: line 3, column 11: invalid JSON"):
        load_text_classification(array, **ALL)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'),
        ("d.json", '[{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]'),
    ],
)
def test_json_with_byte_order_mark(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8-sig"))
    assert read_file(path).texts == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("header.csv", "text,label\n", r"header\.csv holds no examples: only a header row"),
        ("empty.jsonl", "\n", r"empty\.jsonl holds no examples"),
        ("empty.json", "[]", r"empty\.json holds no examples"),
    ],
)
def test_a_file_without_rows_is_an_error_naming_it(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_text_classification(_write(tmp_path / name, text))
    train = _write(tmp_path / "train.csv", "text,label\na,x\nb,y\nc,x\n")
    with pytest.raises(ValueError, match=message):  # one empty split among several
        load_text_classification({"train": train, "test": tmp_path / name})


def test_too_few_rows_to_split_name_the_file_and_the_counts(tmp_path: Path) -> None:
    path = _write(tmp_path / "two.csv", "text,label\na,x\nb,y\n")
    with pytest.raises(ValueError, match=r"two\.csv: cannot split 2 examples .* 3 are needed"):
        load_text_classification(path)
    five = _write(tmp_path / "five.csv", "text,label\na,x\nb,y\nc,x\nd,y\ne,x\n")
    data = load_text_classification(five)
    assert {name: len(split) for name, split in data.splits.items()} == {
        "train": 3,
        "validation": 1,
        "test": 1,
    }


def test_a_saved_dataset_folder_without_hf_prefix_gets_a_hint(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "dataset_dict.json").write_text('{"splits": ["train"]}')
    with pytest.raises(ValueError, match=rf"save_to_disk: load it as 'hf:{folder}'"):
        load_text_classification(folder)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ValueError, match="suffix must be one of") as error:
        load_text_classification(plain)
    assert "hf:" not in str(error.value)
