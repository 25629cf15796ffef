"""The labelled tasks ``point-peft train`` fine-tunes on, read once into memory.

Datasets, by the names ``point-peft train --dataset`` takes:

=================================  =============================================================
``procedural-hard``                :class:`~point_peft.data.ProceduralShapes`, simulated scans
                                   (ScanObjectNN-like); 15 classes, 200 train / 50 test clouds per
                                   class by default
``procedural-clean``               the same shapes, whole surfaces (ModelNet-like)
``kicad``                          :class:`~point_peft.corpora.KiCadCategories`: 14 categories of
                                   KiCad's CAD models, a real task (``python -m point_peft.corpora
                                   fetch`` first, or ``--download``)
``modelnet40=DIR``                 a ``modelnet40_normal_resampled`` folder (``modelnet10=DIR``):
                                   the preprocessed ``*_fps.dat`` pickles when present, else the
                                   text files
``scanobjectnn=DIR``               ScanObjectNN ``h5_files``, PB_T50_RS (``scanobjectnn-OBJ_BG=DIR``,
                                   ``scanobjectnn-OBJ_ONLY=DIR``)
=================================  =============================================================

Both splits are read once and held as tensors (:class:`LabelledClouds`): the procedural
generator and the ModelNet text reader cost milliseconds per cloud, which every epoch would pay
again. Augmentation happens on the batches, in the training loop.

Example:
    >>> task = load_task("procedural-clean", num_points=64, samples_per_class=1,
    ...                  test_samples_per_class=1, progress=False)  # fmt: skip
    >>> len(task.train), len(task.test), task.num_classes, task.train[0]["points"].shape
    (15, 15, 15, torch.Size([64, 3]))
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from point_peft.pretraining_data import (
    FOLDER_SOURCES,
    PROCEDURAL_SOURCES,
    PretrainingSource,
    load_source,
)

DATASETS: tuple[str, ...] = (*PROCEDURAL_SOURCES, "kicad")
"""Dataset names that need no folder; the folder ones are ``<name>=DIR`` for ``FOLDER_SOURCES``."""


def parse_dataset(text: str) -> PretrainingSource:
    """Check a ``--dataset`` value: a name of :data:`DATASETS` or ``<folder source>=DIR``.

    Example:
        >>> parse_dataset("modelnet40=data/modelnet").kind
        'modelnet40'
        >>> parse_dataset("cgal")
        Traceback (most recent call last):
        ...
        ValueError: unknown dataset 'cgal'; expected one of procedural-clean, procedural-hard, kicad, modelnet40=DIR, modelnet10=DIR, scanobjectnn=DIR, scanobjectnn-PB_T50_RS=DIR, scanobjectnn-OBJ_BG=DIR, scanobjectnn-OBJ_ONLY=DIR
    """
    known = [*DATASETS, *(f"{name}=DIR" for name in FOLDER_SOURCES)]
    kind = str(text).partition("=")[0]
    if kind not in DATASETS and kind not in FOLDER_SOURCES:
        raise ValueError(f"unknown dataset {text!r}; expected one of {', '.join(known)}")
    return PretrainingSource.parse(text)


class LabelledClouds(Dataset):
    """Clouds and labels held in memory; items ``{"points": (num_points, 3), "labels": int}``."""

    def __init__(
        self, points: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...]
    ) -> None:
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must be (clouds, num_points, 3), got {tuple(points.shape)}")
        if labels.shape != (points.shape[0],):
            raise ValueError(f"labels must be ({points.shape[0]},), got {tuple(labels.shape)}")
        self.points = points.to(torch.float32).contiguous()
        self.labels = labels.to(torch.long)
        self.class_names = tuple(class_names)

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"points": self.points[index], "labels": self.labels[index]}

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.class_names)).tolist()


@dataclasses.dataclass
class ClassificationTask:
    """A dataset's train and test splits, in memory."""

    name: str
    train: LabelledClouds
    test: LabelledClouds
    # the dataset class that read each split (ModelNet: the preprocessed pickle or the text files)
    readers: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict[str, Any]:
        """What a result records about the data."""
        return {
            "dataset": self.name,
            "classes": list(self.class_names),
            "train_clouds": len(self.train),
            "test_clouds": len(self.test),
            "num_points": self.train.points.shape[1],
            "readers": dict(self.readers),
        }


def read_split(dataset: Dataset, *, description: str, progress: bool) -> LabelledClouds:
    """Every item of ``dataset`` (xyz only) and its label, read once.

    On one intra-op thread: generating and resampling a cloud is thousands of tiny tensor ops,
    which a second thread only slows down (4x for the procedural shapes on 2 busy cores).
    """
    from tqdm.auto import tqdm

    loader = DataLoader(dataset, batch_size=64, shuffle=False)
    points, labels = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for batch in tqdm(
            loader, desc=description, unit="batch", disable=not progress, leave=False
        ):
            points.append(batch["points"][..., :3])
            labels.append(torch.as_tensor(batch["labels"]))
    finally:
        torch.set_num_threads(threads)
    if not points:
        raise ValueError(f"{description} has no clouds")
    return LabelledClouds(torch.cat(points), torch.cat(labels), tuple(dataset.class_names))


def load_task(
    dataset: str,
    *,
    num_points: int = 1024,
    samples_per_class: int | None = None,
    test_samples_per_class: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> ClassificationTask:
    """Read the train and test splits of ``dataset`` (a name of the module's table).

    Args:
        samples_per_class, test_samples_per_class: procedural clouds per class in each split
            (default 200 and 50); ignored by the other datasets.
        cache_dir, download: the corpus cache, and whether ``kicad`` may fetch its package.
        seed: the data seed (procedural shapes, KiCad point sampling); fixed across training seeds
            in the benchmarks, so that seeds vary the training only.
    """
    source = parse_dataset(dataset)
    # ScanObjectNN as its files hold it: the official fine-tuning protocol does not re-normalise
    options = dict(num_points=num_points, cache_dir=cache_dir, download=download, seed=seed,
                   progress=progress, normalize_scans=False)  # fmt: skip
    splits, readers = {}, {}
    for split, per_class in (("train", samples_per_class), ("test", test_samples_per_class)):
        data = load_source(source, split=split, procedural_samples_per_class=per_class, **options)
        splits[split] = read_split(data, description=f"{source.kind} {split}", progress=progress)
        readers[split] = type(data).__name__
    if splits["train"].class_names != splits["test"].class_names:
        raise ValueError(f"{dataset}: the train and test splits name different classes")
    if readers["train"] != readers["test"]:
        # ModelNet with one split's *_fps.dat pickle missing (or too short): one split is the
        # pickle's FPS-ordered points, the other resampled from the text files.
        warnings.warn(
            f"{dataset}: the train split is read by {readers['train']} and the test split by "
            f"{readers['test']}, so their points are sampled differently; give both splits the "
            "same files (write_modelnet_preprocessed writes the pickles)",
            stacklevel=2,
        )
    return ClassificationTask(str(source), splits["train"], splits["test"], readers)
