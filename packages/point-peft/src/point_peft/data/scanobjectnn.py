"""ScanObjectNN from its h5 files: the OBJ_BG, OBJ_ONLY and PB_T50_RS variants.

The folder users download (``h5_files`` in the official release)::

    h5_files/
        main_split/
            training_objectdataset_augmentedrot_scale75.h5   PB_T50_RS ("hardest")
            test_objectdataset_augmentedrot_scale75.h5
            training_objectdataset.h5                        OBJ_BG (objects with background)
            test_objectdataset.h5
        main_split_nobg/
            training_objectdataset.h5                        OBJ_ONLY (background removed)
            test_objectdataset.h5

Each file holds ``data`` (N, 2048, 3) float32, ``label`` (N,) integers in [0, 15) and ``mask``
(N, 2048) (-1 on background points). Needs ``h5py``: ``pip install "point-peft[data]"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from point_peft.data._files import (
    DatasetFileError,
    ReaderDependencyError,
    require_directory,
    require_file,
)
from point_peft.data._random import keyed_generator
from point_peft.data.base import PointCloudDataset, Transform
from point_peft.data.geometry import normalize_to_unit_sphere
from point_peft.data.modelnet40 import SPLITS, check_choice, check_num_points
from point_peft.data.sampling import SAMPLING_METHODS, resample_points

SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
    "pillow", "sink", "sofa", "toilet",
)  # fmt: skip

# variant → (sub-folder, file-name suffix); the split gives the "training"/"test" prefix.
SCANOBJECTNN_VARIANTS: dict[str, tuple[str, str]] = {
    "OBJ_BG": ("main_split", ""),
    "OBJ_ONLY": ("main_split_nobg", ""),
    "PB_T50_RS": ("main_split", "_augmentedrot_scale75"),
}

LAYOUT = """\
    h5_files/                      <- pass this folder as root
        main_split/
            training_objectdataset_augmentedrot_scale75.h5   (PB_T50_RS)
            test_objectdataset_augmentedrot_scale75.h5
            training_objectdataset.h5                        (OBJ_BG)
            test_objectdataset.h5
        main_split_nobg/
            training_objectdataset.h5                        (OBJ_ONLY)
            test_objectdataset.h5"""


def scanobjectnn_file(root: str | Path, variant: str, split: str) -> Path:
    """The path of ``variant``'s ``split`` file under ``root`` (which need not exist).

    Example:
        >>> scanobjectnn_file("h5_files", "PB_T50_RS", "test").as_posix()
        'h5_files/main_split/test_objectdataset_augmentedrot_scale75.h5'
    """
    if variant not in SCANOBJECTNN_VARIANTS:
        raise ValueError(f"variant must be one of {tuple(SCANOBJECTNN_VARIANTS)}, got {variant!r}")
    folder, suffix = SCANOBJECTNN_VARIANTS[variant]
    prefix = {"train": "training", "test": "test"}[check_choice("split", split, SPLITS)]
    return Path(root) / folder / f"{prefix}_objectdataset{suffix}.h5"


def _import_h5py():
    try:
        import h5py
    except ImportError:
        raise ReaderDependencyError(
            'reading ScanObjectNN needs h5py: pip install "point-peft[data]" (or pip install h5py)'
        ) from None
    return h5py


class ScanObjectNN(PointCloudDataset):
    """One ScanObjectNN variant and split, loaded into memory from its h5 file.

    Items follow :mod:`point_peft.data.base`: ``{"points": (num_points, 3), "labels": int}``, plus
    ``"mask"`` (True on object points) when ``return_mask=True``.

    Args:
        root: the folder holding ``main_split/`` and ``main_split_nobg/`` (layout above).
        split: ``"train"`` or ``"test"``.
        variant: ``"PB_T50_RS"`` (default; the hardest, the one Point-PEFT reports), ``"OBJ_BG"`` or
            ``"OBJ_ONLY"``.
        num_points: points per item; the files hold 2,048, all of which Point-MAE and Point-PEFT
            use. Fewer are chosen by ``sampling`` (default FPS, see :mod:`point_peft.data.sampling`).
        normalize: centre and scale into the unit sphere, with the centroid and radius of all
            the file's points of the object (before any sampling). Off by default, as in
            Point-MAE: the files are already normalised.
        return_mask: add each item's object mask (transforms must then keep points in place).
        seed: seeds ``sampling="random"`` (a fixed subset per item, from ``seed`` and the index).
        transform: callable applied to each item's points (an augmentation).

    Example::

        train = ScanObjectNN("data/ScanObjectNN/h5_files", "train", variant="PB_T50_RS")
        len(train), train[0]["points"].shape  # (11416, torch.Size([2048, 3]))
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        variant: str = "PB_T50_RS",
        num_points: int = 2048,
        sampling: str = "fps",
        normalize: bool = False,
        return_mask: bool = False,
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(SCANOBJECTNN_CLASSES, transform)
        self.root = require_directory(Path(root), what="ScanObjectNN folder", layout=LAYOUT)
        self.split = check_choice("split", split, SPLITS)
        self.path = require_file(
            scanobjectnn_file(self.root, variant, split),
            what=f"ScanObjectNN {variant} {split} file",
            layout=LAYOUT,
        )
        self.variant = variant
        self.num_points = check_num_points(num_points)
        self.sampling = check_choice("sampling", sampling, SAMPLING_METHODS)
        self.normalize, self.return_mask, self.seed = normalize, return_mask, seed
        self._points, self._labels, self._masks = self._read()

    def _read(self) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
        points, labels, masks = self._read_arrays()
        if points.ndim != 3 or points.shape[2] != 3:
            raise DatasetFileError(
                f"{self.path}: 'data' should be (N, 2048, 3), got {points.shape}"
            )
        count, stored = points.shape[:2]
        if labels.size != count or labels.ndim > 2:
            raise DatasetFileError(f"{self.path}: 'label' should be ({count},), got {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DatasetFileError(f"{self.path}: 'label' should hold integers, got {labels.dtype}")
        labels = labels.reshape(-1)
        if count and not (labels.min() >= 0 and labels.max() < len(SCANOBJECTNN_CLASSES)):
            raise DatasetFileError(
                f"{self.path}: labels span [{labels.min()}, {labels.max()}], outside [0, 15)"
            )
        if stored < self.num_points:
            raise DatasetFileError(
                f"{self.path} holds {stored} points per object, fewer than"
                f" num_points={self.num_points}"
            )
        object_masks = None
        if masks is not None:
            if masks.shape != (count, stored):
                raise DatasetFileError(
                    f"{self.path}: 'mask' should be ({count}, {stored}), got {masks.shape}"
                )
            object_masks = torch.from_numpy(masks != -1)  # -1 marks background points
        return torch.from_numpy(points), [int(label) for label in labels], object_masks

    def _read_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``data``, ``label`` and (with ``return_mask``) ``mask`` as numpy arrays."""
        h5py = _import_h5py()
        try:
            with h5py.File(self.path, "r") as handle:
                for name in ("data", "label") + (("mask",) if self.return_mask else ()):
                    if name not in handle:
                        raise DatasetFileError(
                            f"{self.path} has no dataset {name!r} (it has {sorted(handle.keys())})"
                        )
                points = np.asarray(handle["data"], dtype=np.float32)
                labels = np.asarray(handle["label"])
                masks = np.asarray(handle["mask"]) if self.return_mask else None
        except OSError as error:  # h5py's message does not name the file
            raise DatasetFileError(
                f"{self.path} cannot be read as an HDF5 file ({error}); a truncated or "
                "interrupted download? Download it again"
            ) from None
        return points, labels, masks

    @property
    def labels(self) -> list[int]:
        return self._labels

    def _load(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        stored = self._points[index]
        # Over all the file's points, before any sampling, as the ModelNet readers normalise.
        points = normalize_to_unit_sphere(stored) if self.normalize else stored
        mask = self._masks[index] if self._masks is not None else None
        if points.shape[0] != self.num_points:
            generator = keyed_generator(self.seed, index) if self.sampling == "random" else None
            # The mask travels as a fourth channel, so that it is resampled with its points.
            both = points if mask is None else torch.cat([points, mask[:, None].float()], dim=-1)
            both = resample_points(both, self.num_points, self.sampling, generator=generator)
            points = both[:, :3]
            mask = None if mask is None else both[:, 3] > 0.5
        # Unnormalised points may still be the storage itself or a view of it: hand out a copy.
        points = points if self.normalize else points.clone()
        return points, self._labels[index], mask
