"""ModelNet40 from the preprocessed pickles of Point-BERT / Point-MAE (``*_8192pts_fps.dat``).

The file ``<variant>_<split>_<n>pts_fps.dat`` (in the ``modelnet40_normal_resampled`` folder) is a
pickle of ``[list_of_points, list_of_labels]``: one float32 array (n, 6) per shape (x, y, z, nx, ny,
nz, not normalised) in farthest-point-sampling order, and one int32 array of shape (1,) per shape
holding its label. Point-MAE normalises each stored cloud (all its points) after loading and, at
test time, runs FPS down to 1,024 points starting from index 0 — which gives exactly the file's
first 1,024 points, since an FPS order is an FPS sample of every length. This reader normalises
each whole cloud the same way and keeps those first ``num_points`` points.

The pickles are read with an unpickler that rebuilds numpy arrays and nothing else, so a tampered
file cannot run code.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from point_peft.data._files import (
    DatasetFileError,
    load_numpy_pickle,
    load_point_table,
    require_file,
)
from point_peft.data.base import PointCloudDataset, Transform
from point_peft.data.geometry import normalize_to_unit_sphere
from point_peft.data.modelnet40 import (
    LAYOUT,
    MODELNET10_CLASSES,
    MODELNET40_CLASSES,
    MODELNET_VARIANTS,
    SPLITS,
    ModelNet40,
    check_choice,
    check_num_points,
    read_shape_names,
)
from point_peft.ops import farthest_point_sample


def preprocessed_file_name(variant: str, split: str, file_points: int) -> str:
    """``preprocessed_file_name("modelnet40", "train", 8192)`` → ``modelnet40_train_8192pts_fps.dat``."""
    return f"{variant}_{split}_{file_points}pts_fps.dat"


class ModelNet40Preprocessed(PointCloudDataset):
    """ModelNet40 (or ModelNet10) from a preprocessed ``*_fps.dat`` pickle, held in memory.

    Items follow :mod:`point_peft.data.base`: ``{"points": (num_points, 3), "labels": int}``.

    Args:
        root: the folder holding the ``.dat`` file (``modelnet40_normal_resampled``).
        split: ``"train"`` or ``"test"``.
        num_points: points per item: the first ``num_points`` of the file's FPS order (1,024 in the
            Point-MAE protocol; Point-MAE *trains* on 1,024 random points of the first 1,200, which
            is ``num_points=1200`` with ``transform=RandomSubset(1024)``).
        variant: ``"modelnet40"`` or ``"modelnet10"``.
        file_points: the point count in the file name (8192 for the distributed files).
        use_normals: keep the normals as channels 3:6.
        normalize: centre and scale into the unit sphere, with the centroid and radius of all the
            file's points of that shape (Point-MAE's order: normalise, then take the first points).
        transform: callable applied to each item's points.

    Class names come from ``<variant>_shape_names.txt`` beside the pickle when it is there, and
    otherwise from the official lists (``MODELNET40_CLASSES`` / ``MODELNET10_CLASSES``).

    Example::

        data = ModelNet40Preprocessed("data/ModelNet/modelnet40_normal_resampled", split="test")
        len(data), data[0]["points"].shape  # (2468, torch.Size([1024, 3]))
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_points: int = 1024,
        *,
        variant: str = "modelnet40",
        file_points: int = 8192,
        use_normals: bool = False,
        normalize: bool = True,
        transform: Transform | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = check_choice("split", split, SPLITS)
        self.variant = check_choice("variant", variant, MODELNET_VARIANTS)
        self.num_points = check_num_points(num_points)
        self.use_normals, self.normalize = use_normals, normalize
        if (self.root / f"{variant}_shape_names.txt").is_file():
            names = read_shape_names(self.root, variant)
        else:
            names = MODELNET40_CLASSES if variant == "modelnet40" else MODELNET10_CLASSES
        super().__init__(names, transform)

        self.path = require_file(
            self.root / preprocessed_file_name(variant, split, file_points),
            what=f"preprocessed {variant} {split} pickle",
            layout=LAYOUT,
        )
        try:
            content = load_numpy_pickle(self.path)
        except (pickle.UnpicklingError, EOFError) as error:
            raise DatasetFileError(
                f"{self.path} is not a readable points/labels pickle: {error}"
            ) from None
        clouds, labels = self._unpack(content)
        columns = 6 if use_normals else 3
        # Keep only what items use: the whole training pickle is ~1.9 GB, its first 1,024 xyz 120 MB.
        self._points = (
            torch.stack([self._kept_points(cloud, columns) for cloud in clouds])
            if clouds
            else torch.empty(0, num_points, columns)
        )
        self._labels = labels

    def _kept_points(self, cloud: np.ndarray, columns: int) -> torch.Tensor:
        """The first ``num_points`` points, normalised by the whole stored cloud when asked."""
        kept = torch.from_numpy(np.ascontiguousarray(cloud[: self.num_points, :columns]))
        if not self.normalize:
            return kept
        return normalize_to_unit_sphere(kept, reference=torch.from_numpy(cloud[:, :3]))

    def _unpack(self, content: object) -> tuple[list[np.ndarray], list[int]]:
        if not (isinstance(content, (list, tuple)) and len(content) == 2):
            raise DatasetFileError(
                f"{self.path} should hold [list_of_points, list_of_labels], got"
                f" {type(content).__name__}"
                + (f" of length {len(content)}" if isinstance(content, (list, tuple)) else "")
            )
        clouds, raw_labels = content
        if len(clouds) != len(raw_labels):
            raise DatasetFileError(
                f"{self.path} holds {len(clouds)} point arrays but {len(raw_labels)} labels"
            )
        columns = 6 if self.use_normals else 3
        checked: list[np.ndarray] = []
        for position, cloud in enumerate(clouds):
            cloud = np.asarray(cloud, dtype=np.float32)
            if cloud.ndim != 2 or cloud.shape[1] < columns or cloud.shape[0] < self.num_points:
                raise DatasetFileError(
                    f"{self.path}: shape {position} has points of shape {cloud.shape}, expected"
                    f" (>= {self.num_points}, {'6' if self.use_normals else '>= 3'})"
                )
            checked.append(cloud)
        labels: list[int] = []
        for position, label in enumerate(raw_labels):
            flat = np.asarray(label).reshape(-1)
            if flat.size != 1 or not np.issubdtype(flat.dtype, np.integer):
                raise DatasetFileError(
                    f"{self.path}: label {position} should be one integer (an int32 array of shape"
                    f" (1,)), got {np.asarray(label).dtype} {np.asarray(label).shape}"
                )
            value = int(flat[0])
            if not 0 <= value < self.num_classes:
                raise DatasetFileError(
                    f"{self.path}: label {position} is {value}, outside [0, {self.num_classes})"
                )
            labels.append(value)
        return checked, labels

    @property
    def labels(self) -> list[int]:
        return self._labels

    def _load(self, index: int) -> tuple[torch.Tensor, int, None]:
        return self._points[index].clone(), self._labels[index], None


def write_modelnet_preprocessed(
    root: str | Path,
    split: str = "train",
    *,
    variant: str = "modelnet40",
    file_points: int = 8192,
    batch_size: int = 16,
) -> Path:
    """Write ``<variant>_<split>_<file_points>pts_fps.dat`` from the text files under ``root``.

    The file has the layout of the distributed pickles (see the module docstring): every shape's
    ``file_points`` points in FPS order (first point: the file's first line; our FPS, not a random
    start), all six columns, not normalised, and int32 labels of shape (1,). Shapes go through FPS
    ``batch_size`` at a time. Returns the path written.

    Example::

        write_modelnet_preprocessed("data/ModelNet/modelnet40_normal_resampled", "test")
        ModelNet40Preprocessed("data/ModelNet/modelnet40_normal_resampled", "test")
    """
    reader = ModelNet40(
        root, split, file_points, variant=variant, sampling="first", use_normals=True,
        normalize=False,
    )  # fmt: skip
    clouds: list[np.ndarray] = []
    for start in range(0, len(reader), batch_size):
        indices = range(start, min(start + batch_size, len(reader)))
        tables = [_read_table(reader.paths[index]) for index in indices]
        shortest = min(len(table) for table in tables)
        if shortest < file_points:
            raise DatasetFileError(
                f"a shape has {shortest} points, fewer than file_points={file_points}"
            )
        # Equal lengths let one batched FPS call serve the whole group; the files have 10,000 lines.
        if all(len(table) == len(tables[0]) for table in tables):
            groups: Sequence[list[np.ndarray]] = [tables]
        else:
            groups = [[table] for table in tables]
        for group in groups:
            batch = torch.from_numpy(np.stack(group))
            order = farthest_point_sample(batch[..., :3].contiguous(), file_points)
            chosen = torch.gather(batch, 1, order.unsqueeze(-1).expand(-1, -1, batch.shape[-1]))
            clouds.extend(cloud.numpy().copy() for cloud in chosen)
    labels = [np.array([label], dtype=np.int32) for label in reader.labels]
    path = reader.root / preprocessed_file_name(variant, split, file_points)
    temporary = path.with_suffix(".dat.partial")
    with temporary.open("wb") as handle:
        pickle.dump([clouds, labels], handle)
    temporary.replace(path)  # readers never see a half-written file
    return path


def _read_table(path: Path) -> np.ndarray:
    table = load_point_table(path)
    if table.shape[1] < 6:
        raise DatasetFileError(
            f"{path} has {table.shape[1]} columns per line, expected 6 (x,y,z,nx,ny,nz)"
        )
    return table[:, :6]
