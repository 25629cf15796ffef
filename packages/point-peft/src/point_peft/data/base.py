"""The item convention every point-cloud dataset here follows, in one base class.

Item ``i`` of every dataset (ModelNet40, ScanObjectNN, the procedural shapes) is a dict::

    {"points": FloatTensor(num_points, 3), "labels": int}

``points`` holds ``(num_points, 6)`` (xyz then normals) where a reader was asked for normals, and a
``"mask"`` BoolTensor (num_points,) (True where a point belongs to the object, False for background)
is added where a reader was asked for it. The key is ``labels``, as in the tokenized text datasets
of peft-core, so ``torch.utils.data.default_collate`` turns a list of items into exactly the batch
the peft-core ``Trainer`` passes to ``model(**batch)``: ``points`` (batch, num_points, 3) and
``labels`` (batch,) int64.

``transform`` (an augmentation from :mod:`point_peft.data.augmentations`, or any callable from a
tensor to a tensor) is applied to ``points`` only, after the reader has sampled and normalised them.
With a mask, use transforms that move points but keep their order (scaling, rotation, jitter):
``ShufflePoints``, ``RandomSubset`` or ``RandomPointDropout`` would leave the mask describing other
points (a changed point count is caught; a reordering cannot be).
"""

from __future__ import annotations

import abc
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

Transform = Callable[[torch.Tensor], torch.Tensor]


class PointCloudDataset(Dataset, abc.ABC):
    """A labelled point-cloud classification dataset with the item convention of this module.

    Subclasses set ``class_names`` and ``labels`` (every item's label, known without loading any
    points, for class counts, balanced sampling and memory-bank construction) and implement
    ``_load(index) -> (points, label, mask or None)``.
    """

    def __init__(self, class_names: Sequence[str], transform: Transform | None) -> None:
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.transform = transform

    @property
    @abc.abstractmethod
    def labels(self) -> list[int]:
        """The label of every item, in index order."""

    @abc.abstractmethod
    def _load(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """Points (float32), label and optional object mask of item ``index`` (in range)."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> dict[str, int]:
        """How many items each class has, in class order."""
        counts = [0] * self.num_classes
        for label in self.labels:
            counts[label] += 1
        return dict(zip(self.class_names, counts, strict=True))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        size = len(self)
        position = operator.index(index)
        if not -size <= position < size:
            raise IndexError(f"index {index} is out of range for a dataset of {size} items")
        points, label, mask = self._load(position % size)
        if self.transform is not None:
            count = points.shape[0]
            points = self.transform(points)
            if mask is not None and points.shape[0] != count:
                raise ValueError(
                    f"transform changed the number of points ({count} -> {points.shape[0]}),"
                    " which would misalign the object mask: use a transform that keeps every"
                    " point in place, or do not ask for the mask"
                )
        item: dict[str, Any] = {"points": points, "labels": int(label)}
        if mask is not None:
            item["mask"] = mask
        return item
