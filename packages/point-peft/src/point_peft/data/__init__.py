"""Point-cloud datasets and augmentations: readers for the formats users have, and shapes made here.

- Readers: :class:`ModelNet40` (``modelnet40_normal_resampled`` text files, ModelNet10 too),
  :class:`ModelNet40Preprocessed` (Point-BERT/Point-MAE ``*_8192pts_fps.dat`` pickles),
  :class:`ScanObjectNN` (h5 files: OBJ_BG, OBJ_ONLY, PB_T50_RS; needs ``point-peft[data]``).
- No download: :class:`ProceduralShapes`, 15 generated classes, a clean (ModelNet-like) and a hard
  (ScanObjectNN-like, simulated scan) variant.
- Augmentations: :class:`ScaleAndTranslate`, :class:`Scale`, :class:`RandomRotation`,
  :class:`Jitter`, :class:`RandomPointDropout`, :class:`RandomSubset`, :class:`ShufflePoints`,
  :class:`Compose`; for one cloud or a batch.

Every dataset returns ``{"points": FloatTensor (num_points, 3), "labels": int}`` (see
:mod:`point_peft.data.base`), which ``DataLoader``'s default collation batches into what the
peft-core ``Trainer`` passes to ``model(**batch)``.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> from point_peft.data import Compose, ProceduralShapes, RandomRotation, Scale
    >>> train = ProceduralShapes(
    ...     "train", "hard", num_points=256, samples_per_class=2,
    ...     transform=Compose([Scale(0.9, 1.1), RandomRotation("y")]),
    ... )  # fmt: skip
    >>> batch = next(iter(DataLoader(train, batch_size=4)))
    >>> batch["points"].shape, batch["labels"].tolist()
    (torch.Size([4, 256, 3]), [0, 1, 2, 3])
"""

from __future__ import annotations

from point_peft.data._files import DatasetFileError, ReaderDependencyError
from point_peft.data.augmentations import (
    Compose,
    Jitter,
    RandomPointDropout,
    RandomRotation,
    RandomSubset,
    Scale,
    ScaleAndTranslate,
    ShufflePoints,
)
from point_peft.data.base import PointCloudDataset
from point_peft.data.geometry import normalize_to_unit_sphere, rotation_about_axis
from point_peft.data.modelnet40 import (
    MODELNET10_CLASSES,
    MODELNET40_CLASSES,
    MODELNET_VARIANTS,
    ModelNet40,
)
from point_peft.data.modelnet40_preprocessed import (
    ModelNet40Preprocessed,
    write_modelnet_preprocessed,
)
from point_peft.data.procedural import (
    PROCEDURAL_VARIANTS,
    ProceduralSample,
    ProceduralShapes,
)
from point_peft.data.sampling import SAMPLING_METHODS, resample_points
from point_peft.data.scanobjectnn import (
    SCANOBJECTNN_CLASSES,
    SCANOBJECTNN_VARIANTS,
    ScanObjectNN,
    scanobjectnn_file,
)
from point_peft.data.shapes import PROCEDURAL_CLASSES

__all__ = [
    "MODELNET10_CLASSES",
    "MODELNET40_CLASSES",
    "MODELNET_VARIANTS",
    "PROCEDURAL_CLASSES",
    "PROCEDURAL_VARIANTS",
    "SAMPLING_METHODS",
    "SCANOBJECTNN_CLASSES",
    "SCANOBJECTNN_VARIANTS",
    "Compose",
    "DatasetFileError",
    "Jitter",
    "ModelNet40",
    "ModelNet40Preprocessed",
    "PointCloudDataset",
    "ProceduralSample",
    "ProceduralShapes",
    "RandomPointDropout",
    "RandomRotation",
    "RandomSubset",
    "ReaderDependencyError",
    "Scale",
    "ScaleAndTranslate",
    "ScanObjectNN",
    "ShufflePoints",
    "normalize_to_unit_sphere",
    "resample_points",
    "rotation_about_axis",
    "scanobjectnn_file",
    "write_modelnet_preprocessed",
]
