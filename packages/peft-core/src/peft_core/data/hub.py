"""Reading labelled texts from Hugging Face ``datasets`` (an optional dependency).

``datasets`` is imported only here, and only when such a source is used, so ``peft_core.data``
works without it.
"""

from __future__ import annotations

import warnings
from typing import Any

from peft_core.data.examples import RawSplit
from peft_core.data.files import check_columns, is_saved_dataset
from peft_core.optional_imports import import_optional

INSTALL_HINT = 'pip install "peft-core[datasets]"'


def import_datasets() -> Any:
    """The ``datasets`` module, or an ``ImportError`` that says how to install it."""
    return import_optional(
        "datasets", needed_by="loading Hugging Face datasets", install=INSTALL_HINT
    )


def is_hf_dataset(obj: object) -> bool:
    """True for a ``datasets`` object, tested without importing ``datasets``."""
    return type(obj).__module__.split(".")[0] == "datasets"


def read_hub(
    source: Any,
    *,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    subset: str | None = None,
    **load_kwargs: Any,
) -> tuple[dict[str, RawSplit], list[str] | None]:
    """Read every split of a Hub dataset (a repo id) or of an already loaded ``Dataset``/``DatasetDict``.

    A repo id goes to ``datasets.load_dataset(source, name=subset, **load_kwargs)``; a folder
    written by ``save_to_disk`` goes to ``datasets.load_from_disk(source)``. Returns the
    splits (a lone ``Dataset`` comes back under ``"train"``) and the class names when the label
    column is a ``ClassLabel``. Splits whose labels are all hidden (-1 or None, as in GLUE's test
    sets) are dropped with a warning.

    Example (needs the Hub)::

        splits, names = read_hub("glue", subset="sst2", text_column="sentence")
        # names == ['negative', 'positive']; splits: train, validation (test is unlabelled)
    """
    datasets = import_datasets()
    if isinstance(source, str):
        if subset is None and not load_kwargs and is_saved_dataset(source):
            # load_dataset would pick the arrow files up by name pattern, silently losing every
            # split not called train/validation/test (IMDb's "unsupervised", MNLI's
            # "validation_matched") and copying the data into its cache.
            source = datasets.load_from_disk(source)
        else:
            source = datasets.load_dataset(source, name=subset, **load_kwargs)
    elif subset is not None or load_kwargs:
        raise ValueError("subset and extra load_dataset arguments only apply to a Hub repo id")
    if isinstance(source, datasets.Dataset):
        source = datasets.DatasetDict({"train": source})
    if not isinstance(source, datasets.DatasetDict):
        raise TypeError(
            f"expected a datasets.Dataset or DatasetDict, got {type(source).__name__} "
            "(streaming datasets are not supported: load without streaming=True)"
        )
    arguments = {
        "text_column": text_column,
        "label_column": label_column,
        "text_pair_column": text_pair_column,
    }
    splits, class_names = {}, None
    for name, split in source.items():
        check_columns(split.column_names, f"the {name!r} split", arguments)
        class_names = class_names or getattr(split.features[label_column], "names", None)
        labels = list(split[label_column])
        if labels and _all_hidden(labels):
            warnings.warn(f"dropping split {name!r}: its labels are hidden", stacklevel=2)
            continue
        texts = _texts(split[text_column], text_column, name)
        pairs = (
            None
            if text_pair_column is None
            else _texts(split[text_pair_column], text_pair_column, name)
        )
        splits[name] = RawSplit(texts, labels, pairs)
    return splits, (list(class_names) if class_names is not None else None)


def _all_hidden(labels: list[Any]) -> bool:
    """GLUE hides its test labels as -1: class ids below 0, or (STS-B's scores) every target
    -1.0, which no real similarity split would hold. A regression split may hold negative
    targets, so a float is hidden only when they are all -1."""
    if all(label is None or (isinstance(label, int) and label < 0) for label in labels):
        return True
    return all(isinstance(label, float) and label == -1.0 for label in labels)


def _texts(values: Any, column: str, split: str) -> list[str]:
    texts = list(values)
    for row, value in enumerate(texts):
        if not isinstance(value, str):
            raise ValueError(
                f"split {split!r}, row {row}: column {column!r} holds {value!r:.60}, not a string"
            )
    return texts
