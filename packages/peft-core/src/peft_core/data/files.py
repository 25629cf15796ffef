"""Reading labelled texts from local CSV, TSV, JSON Lines and JSON files."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from peft_core.data.examples import RawSplit

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
# What datasets' save_to_disk writes at the top of its folder (a DatasetDict, or a lone Dataset).
SAVED_DATASET_FILES = ("dataset_dict.json", "dataset_info.json")


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """True for a folder written by ``datasets``' ``save_to_disk`` (a DatasetDict or a Dataset)."""
    folder = Path(path)
    return folder.is_dir() and any((folder / name).is_file() for name in SAVED_DATASET_FILES)


def check_columns(present: Sequence[str], source: str, arguments: Mapping[str, str | None]) -> None:
    """Raise ``ValueError`` naming the argument whose column ``source`` lacks, and what it has.

    Example:
        >>> check_columns(["review", "stars"], "a.csv", {"text_column": "text"})
        Traceback (most recent call last):
        ...
        ValueError: text_column='text' is not a column of a.csv; its columns are ['review', 'stars']
    """
    for argument, column in arguments.items():
        if column is not None and column not in present:
            raise ValueError(
                f"{argument}={column!r} is not a column of {source}; its columns are {list(present)}"
            )


def read_file(
    path: str | os.PathLike,
    *,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
) -> RawSplit:
    """Read one file of labelled texts; the format follows the suffix.

    * ``.csv`` / ``.tsv``: a header row names the columns; every value is a string, so labels are
      class names (``"0"``/``"1"`` included, mapped in numeric order). CSV values may be quoted;
      TSV is read as GLUE writes it, without quoting (a ``"`` is text, a value holds no tab).
    * ``.jsonl``: one JSON object per line. ``.json``: a list of objects, or JSON lines.
      Labels may be names (strings) or class ids (ints).

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "reviews.csv"
        >>> _ = path.write_text("review,stars\\ngreat,5\\nawful,1\\n")
        >>> read_file(path, text_column="review", label_column="stars")
        RawSplit(texts=['great', 'awful'], labels=['5', '1'], text_pairs=None)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        hint = ""
        if is_saved_dataset(path):
            hint = (
                f"; {path} looks like a dataset saved with datasets' save_to_disk: "
                f"load it as 'hf:{path}'"
            )
        raise ValueError(f"cannot read {path}: the suffix must be one of {list(SUFFIXES)}{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if suffix in (".csv", ".tsv"):
        present, rows = _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    else:
        present, rows = _read_json(path)
    arguments = {
        "text_column": text_column,
        "label_column": label_column,
        "text_pair_column": text_pair_column,
    }
    if not rows:
        raise ValueError(f"{path} holds no examples" + (": only a header row" if present else ""))
    check_columns(present, str(path), arguments)
    return _columns(rows, path, text_column, label_column, text_pair_column)


def _read_delimited(path: Path, delimiter: str) -> tuple[list[str], list[tuple[str, dict]]]:
    # utf-8-sig: spreadsheets often save CSV with a byte-order mark glued to the first column name.
    tabs = delimiter == "\t"
    # TSV files (GLUE's among them) do not quote: a sentence opening with " is text, and reading
    # it as a quote would merge every line up to the next " into one example.
    quoting = csv.QUOTE_NONE if tabs else csv.QUOTE_MINIMAL
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=quoting)
        rows = []
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row:  # DictReader's key for the fields beyond the header's
                fix = (
                    "a TSV value cannot contain a tab (TSV is read without quoting)"
                    if tabs
                    else 'a value containing a comma must be quoted, e.g. "great movie, loved it"'
                )
                raise ValueError(
                    f"{path}: {where} has {len(reader.fieldnames or []) + len(row[None])} fields "
                    f"but the header names {len(reader.fieldnames or [])}; {fix}"
                )
            rows.append((where, row))
        present = list(reader.fieldnames or [])
    if not present:
        raise ValueError(f"{path} is empty: a header row naming the columns is expected")
    return present, rows


def _read_json(path: Path) -> tuple[list[str], list[tuple[str, dict]]]:
    # utf-8-sig, as for CSV: a byte-order mark left by an editor is not part of the JSON.
    text = path.read_text(encoding="utf-8-sig")
    records: Iterable[tuple[str, object]]
    if text.lstrip().startswith("["):
        items = enumerate(_parse_json(text, path, line_offset=0), start=1)
        records = ((f"item {n}", item) for n, item in items)
    else:
        lines = enumerate(text.splitlines(), start=1)
        records = (
            (f"line {n}", _parse_json(line, path, line_offset=n - 1))
            for n, line in lines
            if line.strip()
        )
    rows = []
    for where, record in records:
        if not isinstance(record, dict):
            raise ValueError(f"{path}: {where} is not a JSON object: {record!r:.60}")
        rows.append((where, record))
    present = list(dict.fromkeys(key for _, row in rows for key in row))
    return present, rows


def _parse_json(text: str, path: Path, line_offset: int) -> Any:
    """``json.loads``, its error naming the file and the line in the file (not in ``text``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: line {error.lineno + line_offset}, column {error.colno}: invalid JSON "
            f"({error.msg})"
        ) from error


def _columns(
    rows: list[tuple[str, dict]],
    path: Path,
    text_column: str,
    label_column: str,
    text_pair_column: str | None,
) -> RawSplit:
    texts, labels, pairs = [], [], []
    for where, row in rows:
        texts.append(_text(row, text_column, path, where))
        if text_pair_column is not None:
            pairs.append(_text(row, text_pair_column, path, where))
        label = row.get(label_column)
        if label is None or label == "":
            raise ValueError(f"{path}: {where} has no value in label column {label_column!r}")
        labels.append(label)
    return RawSplit(texts, labels, pairs if text_pair_column is not None else None)


def _text(row: dict, column: str, path: Path, where: str) -> str:
    value = row.get(column)
    if not isinstance(value, str):
        raise ValueError(f"{path}: {where} needs a string in column {column!r}, got {value!r:.60}")
    return value
