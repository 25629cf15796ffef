"""One entry point that turns any supported source into split, labelled examples."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peft_core.data import splits as splitting
from peft_core.data.classification import TextClassificationData
from peft_core.data.corpora import CORPORA, DEFAULT_CORPUS, load_corpus
from peft_core.data.examples import Example, RawSplit
from peft_core.data.files import read_file
from peft_core.data.hub import is_hf_dataset, read_hub
from peft_core.data.labels import encode_labels

HUB_PREFIX = "hf:"


def load_text_classification(
    source: Any = DEFAULT_CORPUS,
    *,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    label_names: Sequence[str] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    deduplicate: bool = False,
    subset: str | None = None,
    **load_kwargs: Any,
) -> TextClassificationData:
    """Load a text-classification task and split it.

    ``source`` is one of:

    * an embedded corpus name (offline, see :func:`list_corpora`): ``"rotten_tomatoes"`` (the
      default), ``"rotten_tomatoes_ratings"`` (a regression task), ``"sms_spam"``, ``"trec"``;
      the column and label arguments do not apply;
    * a local ``.csv``/``.tsv``/``.jsonl``/``.json`` file, or a mapping of split name to file;
    * ``"hf:<repo id>"``: ``datasets.load_dataset(repo_id, name=subset, **load_kwargs)``;
    * an already loaded ``datasets.Dataset`` or ``DatasetDict``.

    Columns: ``text_column`` (and ``text_pair_column`` for sentence pairs) hold the texts,
    ``label_column`` the labels: class names (mapped to ids in sorted order, or by their index in
    ``label_names``), class ids (ints), or regression targets (floats, or numbers with a fraction
    in a CSV file, as GLUE's STS-B scores): a regression task has no ``label_names`` and its
    ``num_labels`` is 1 (see :func:`~peft_core.data.labels.encode_labels`).

    A source with several splits keeps them. A source with one (a file, a lone ``Dataset``, a
    ``DatasetDict`` holding one split) is split into ``train``/``validation``/``test`` by
    :func:`~peft_core.data.splits.split_examples`: seeded hashing of the texts, stable everywhere,
    duplicates kept together. ``deduplicate=True`` first drops repeated texts.

    Example:
        >>> data = load_text_classification("rotten_tomatoes", seed=0)  # doctest: +SKIP
        >>> data  # doctest: +SKIP
        TextClassificationData(name='rotten_tomatoes', train=8058, validation=1007, test=1007, ...)
        >>> load_text_classification(
        ...     "reviews.csv", text_column="review", label_column="stars"
        ... )  # doctest: +SKIP
        >>> load_text_classification(
        ...     "hf:glue", subset="sst2", text_column="sentence"
        ... )  # doctest: +SKIP
        >>> load_text_classification(  # regression: num_labels 1
        ...     "hf:glue", subset="stsb", text_column="sentence1", text_pair_column="sentence2"
        ... )  # doctest: +SKIP
    """
    splitting.check_fractions(validation_fraction, test_fraction)
    _refuse_hub_options_elsewhere(source, subset, load_kwargs)
    columns = {
        "text_column": text_column,
        "label_column": label_column,
        "text_pair_column": text_pair_column,
    }
    if isinstance(source, str) and source in CORPORA:
        _refuse_column_options_for_corpus(source, columns, label_names)
        corpus, label_names = load_corpus(source)
        examples, name = {"train": corpus}, source
    else:
        raw, name, class_names = _read(source, columns, subset, load_kwargs)
        examples, label_names = _encode(
            raw, label_names if label_names is not None else class_names
        )
    if not examples:
        raise ValueError(f"{name} has no labelled split to load")
    empty = [split for split, part in examples.items() if not part]
    if empty:
        raise ValueError(f"{name}: the split(s) {empty} hold no examples")
    if deduplicate:
        examples = {split: splitting.deduplicate(part) for split, part in examples.items()}
    notes = []
    if len(examples) == 1:
        fractions = {"validation_fraction": validation_fraction, "test_fraction": test_fraction}
        examples = _split_the_only_split(examples, name, notes, seed=seed, **fractions)
    return TextClassificationData(examples, list(label_names), name=name, notes=notes)


def _refuse_hub_options_elsewhere(source: Any, subset: str | None, load_kwargs: dict) -> None:
    """``subset`` and ``load_dataset`` keywords mean something for a Hub source only; silently
    ignoring them elsewhere would mislead."""
    is_hub_id = isinstance(source, str) and source.startswith(HUB_PREFIX)
    if (subset is not None or load_kwargs) and not is_hub_id:
        extra = ["subset"] if subset is not None else []
        raise ValueError(
            f"{extra + sorted(load_kwargs)} only apply to Hub sources ('hf:<repo id>'), not {source!r}"
        )


# The column arguments' defaults: an embedded corpus takes no others.
_COLUMN_DEFAULTS = {"text_column": "text", "label_column": "label", "text_pair_column": None}


def _refuse_column_options_for_corpus(
    name: str, columns: dict[str, str | None], label_names: Sequence[str] | None
) -> None:
    """An embedded corpus is read by a parser of its own: column and label arguments would be
    silently ignored, which would mislead."""
    if label_names is not None:
        raise ValueError(f"label_names cannot be changed for the embedded corpus {name!r}")
    changed = [
        f"{arg}={value!r}" for arg, value in columns.items() if value != _COLUMN_DEFAULTS[arg]
    ]
    if changed:
        raise ValueError(
            f"{', '.join(changed)} cannot be used with the embedded corpus {name!r}: its "
            "examples are read by a parser of their own, without named columns"
        )


def _split_the_only_split(
    examples: dict[str, list], name: str, notes: list[str], **split_options: Any
) -> dict[str, list]:
    """train/validation/test from a source's one split (noted, and warned about when that split
    is not a training split)."""
    ((only_split, pooled),) = examples.items()
    if only_split != "train":  # an evaluation-only source: say that it is trained on
        notes.append(f"{name}'s only split, {only_split!r}, was split into train/validation/test")
        warnings.warn(f"{notes[-1]}: the model trains on part of it", stacklevel=3)
    try:
        return splitting.split_examples(pooled, **split_options)
    except ValueError as error:  # too few rows: say which source
        raise ValueError(f"{name}: {error}") from error


def with_evaluation_splits(
    data: TextClassificationData,
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> TextClassificationData:
    """``data`` with the ``train``, ``validation`` and ``test`` splits a training recipe needs.

    Sources often lack one: IMDb has train and test (its unlabelled split is dropped), GLUE has
    train and validation (its test labels are hidden). A missing split is made like the splits of
    a one-split file (:func:`~peft_core.data.splits.split_examples`, seeded by ``seed``):

    * no ``validation``: ``validation_fraction`` of ``train`` is carved off as validation;
    * no ``test`` but a ``validation``: the source's validation becomes the test split (the
      usual practice on GLUE, whose reported scores are validation scores), and a new validation
      split is carved from train;
    * neither: both are carved from train.

    What was done is recorded in :attr:`TextClassificationData.notes` (shown by ``summary()``).

    Example:
        >>> train = [Example(f"text {i}", i % 2) for i in range(20)]
        >>> data = TextClassificationData(
        ...     {"train": train, "validation": [Example("held out", 1)]}, ["neg", "pos"], name="toy"
        ... )
        >>> data = with_evaluation_splits(data, seed=0)
        >>> {split: len(examples) for split, examples in data.splits.items()}
        {'train': 18, 'validation': 2, 'test': 1}
        >>> print(data.notes[0])
        test = the source's 'validation' split (toy has no labelled test split)
    """
    splits, notes = dict(data.splits), list(data.notes)
    if "train" not in splits:
        raise ValueError(
            f"{data.name or 'the data'} has no 'train' split to train on; its splits are "
            f"{list(splits)}"
        )
    if "test" not in splits and "validation" in splits:
        splits["test"] = splits.pop("validation")
        notes.append(
            f"test = the source's 'validation' split ({data.name or 'the source'} has no labelled "
            "test split)"
        )
    carve = {
        split: fraction
        for split, fraction in (("validation", validation_fraction), ("test", test_fraction))
        if split not in splits
    }
    if carve:
        zero = [f"{split}_fraction" for split, fraction in carve.items() if fraction == 0]
        if zero:
            raise ValueError(
                f"{data.name or 'the data'} has no {' or '.join(carve)} split, and {zero} = 0 "
                "leaves none to carve from train"
            )
        try:
            parts = splitting.split_examples(
                splits["train"],
                validation_fraction=carve.get("validation", 0.0),
                test_fraction=carve.get("test", 0.0),
                seed=seed,
            )
        except ValueError as error:
            raise ValueError(f"{data.name or 'the data'}'s train split: {error}") from error
        splits.update(parts)
        carved = ", ".join(f"{split} = {len(parts[split])}" for split in carve)
        notes.append(
            f"{carved} examples carved from the source's train split (seeded hash split, "
            f"seed {seed}); train keeps {len(parts['train'])}"
        )
    ordered = {split: splits.pop(split) for split in ("train", "validation", "test")}
    ordered.update(splits)  # any other split the source has, after the three
    return TextClassificationData(ordered, list(data.label_names), name=data.name, notes=notes)


def _read(
    source: Any, columns: dict[str, Any], subset: str | None, load_kwargs: dict[str, Any]
) -> tuple[dict[str, RawSplit], str, list[str] | None]:
    """Raw splits, a display name and (for ``ClassLabel`` columns) class names of a non-corpus source."""
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        repo = source[len(HUB_PREFIX) :]
        raw, class_names = read_hub(repo, subset=subset, **columns, **load_kwargs)
        return raw, repo, class_names
    if is_hf_dataset(source):
        raw, class_names = read_hub(source, **columns)
        return raw, type(source).__name__, class_names
    if isinstance(source, Mapping):
        raw = {split: read_file(path, **columns) for split, path in source.items()}
        return raw, ",".join(Path(path).name for path in source.values()), None
    if isinstance(source, (str, os.PathLike)):
        _check_path(source)
        return {"train": read_file(source, **columns)}, Path(source).name, None
    raise TypeError(
        "source must be a corpus name, a path, a mapping of split names to paths, "
        f"'{HUB_PREFIX}<repo id>' or a datasets object; got {type(source).__name__}"
    )


def _check_path(source: str | os.PathLike) -> None:
    path = Path(source)
    if not path.exists() and path.suffix == "":
        raise ValueError(
            f"unknown source {str(source)!r}: not an embedded corpus {sorted(CORPORA)}, not a file; "
            f"use '{HUB_PREFIX}<repo id>' for a Hugging Face Hub dataset"
        )


def _encode(
    raw: dict[str, RawSplit], label_names: Sequence[str] | None
) -> tuple[dict[str, list[Example]], list[str]]:
    # All splits share one mapping, so a class missing from a small split keeps its id.
    values = [label for split in raw.values() for label in split.labels]
    ids, names = encode_labels(values, label_names)
    examples, start = {}, 0
    for split_name, split in raw.items():
        pairs = split.text_pairs or [None] * len(split)
        labels = ids[start : start + len(split)]
        examples[split_name] = [
            Example(t, y, p) for t, y, p in zip(split.texts, labels, pairs, strict=True)
        ]
        start += len(split)
    return examples, names
