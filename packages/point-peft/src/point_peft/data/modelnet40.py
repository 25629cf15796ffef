"""ModelNet40 / ModelNet10 from the ``modelnet40_normal_resampled`` text files.

The folder users download (``modelnet40_normal_resampled.zip``, used by PointNet++, Point-BERT,
Point-MAE and Point-PEFT)::

    modelnet40_normal_resampled/
        modelnet40_shape_names.txt        class names, one per line (40; line number = label)
        modelnet40_train.txt              shape ids, one per line: airplane_0001, ...
        modelnet40_test.txt
        modelnet10_shape_names.txt        the same three lists for ModelNet10
        modelnet10_train.txt
        modelnet10_test.txt
        airplane/airplane_0001.txt        10,000 lines "x,y,z,nx,ny,nz" (comma separated)
        ...
        modelnet40_train_8192pts_fps.dat  (optional) the Point-BERT/Point-MAE preprocessed pickles,
        modelnet40_test_8192pts_fps.dat   read by point_peft.data.ModelNet40Preprocessed

A shape id's class is everything before its last underscore (``night_stand_0001`` → ``night_stand``).
Reading 10,000 text lines per item is slow; for training, write the preprocessed pickles once with
:func:`point_peft.data.write_modelnet_preprocessed` and read those.
"""

from __future__ import annotations

from pathlib import Path

import torch

from point_peft.data._files import (
    DatasetFileError,
    load_point_table,
    read_lines,
    require_directory,
    require_file,
)
from point_peft.data._random import keyed_generator
from point_peft.data.base import PointCloudDataset, Transform
from point_peft.data.geometry import normalize_to_unit_sphere
from point_peft.data.sampling import SAMPLING_METHODS, resample_points

MODELNET_VARIANTS: tuple[str, ...] = ("modelnet40", "modelnet10")
SPLITS: tuple[str, ...] = ("train", "test")

MODELNET40_CLASSES: tuple[str, ...] = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard",
    "lamp", "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio",
    "range_hood", "sink", "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase",
    "wardrobe", "xbox",
)  # fmt: skip
MODELNET10_CLASSES: tuple[str, ...] = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table",
    "toilet",
)  # fmt: skip

LAYOUT = """\
    modelnet40_normal_resampled/
        modelnet40_shape_names.txt     (modelnet10_shape_names.txt for ModelNet10)
        modelnet40_train.txt           shape ids, one per line: airplane_0001, ...
        modelnet40_test.txt
        airplane/airplane_0001.txt     one point per line: x,y,z,nx,ny,nz
        modelnet40_train_8192pts_fps.dat  (preprocessed pickles, optional)"""


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_num_points(num_points: object) -> int:
    if not isinstance(num_points, int) or isinstance(num_points, bool) or num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    return num_points


def read_shape_names(root: Path, variant: str) -> tuple[str, ...]:
    """The class names of ``variant`` from ``<variant>_shape_names.txt`` (line order = label)."""
    path = require_file(
        root / f"{variant}_shape_names.txt", what=f"{variant} class-name list", layout=LAYOUT
    )
    names = tuple(read_lines(path))
    if len(set(names)) != len(names):
        raise DatasetFileError(f"{path} lists some class names more than once")
    return names


def shape_class(shape_id: str) -> str:
    """``"night_stand_0001"`` → ``"night_stand"``."""
    name, _, number = shape_id.rpartition("_")
    if not name or not number:
        raise ValueError(f"shape id {shape_id!r} is not of the form <class>_<number>")
    return name


class ModelNet40(PointCloudDataset):
    """ModelNet40 (or ModelNet10) read from the ``modelnet40_normal_resampled`` text files.

    Items follow :mod:`point_peft.data.base`: ``{"points": (num_points, 3), "labels": int}``
    (``(num_points, 6)`` with normals when ``use_normals=True``).

    Args:
        root: the ``modelnet40_normal_resampled`` folder (layout in the module docstring).
        split: ``"train"`` or ``"test"``.
        num_points: points per item (1024 in the ModelNet protocol of Point-MAE and Point-PEFT).
        variant: ``"modelnet40"`` or ``"modelnet10"``: which name and split lists to read.
        sampling: how ``num_points`` are chosen from the file's 10,000 (see
            :mod:`point_peft.data.sampling`): ``"fps"`` (default; Point-MAE's preprocessing, except
            that it starts at a random point and this at the first), ``"first"`` (the first lines,
            Point-MAE's ``uniform=False``) or ``"random"`` (a fixed random subset per item, drawn
            from ``seed`` and the index).
        use_normals: keep the normals as channels 3:6.
        normalize: centre on the centroid and scale into the unit sphere, as the official loaders do;
            the centroid and radius are those of every point in the file, so a sample of the shape
            keeps the shape's frame, as in Point-MAE, which normalises its stored clouds before its
            runner samples them (normals are unchanged).
        seed: seeds ``sampling="random"``.
        transform: callable applied to each item's points (an augmentation).

    Example::

        data = ModelNet40("data/ModelNet/modelnet40_normal_resampled", split="test")
        item = data[0]  # {"points": FloatTensor (1024, 3), "labels": 0}
        data.class_names[item["labels"]]  # "airplane"
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_points: int = 1024,
        *,
        variant: str = "modelnet40",
        sampling: str = "fps",
        use_normals: bool = False,
        normalize: bool = True,
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        self.root = require_directory(Path(root), what="ModelNet folder", layout=LAYOUT)
        self.split = check_choice("split", split, SPLITS)
        self.variant = check_choice("variant", variant, MODELNET_VARIANTS)
        self.num_points = check_num_points(num_points)
        self.sampling = check_choice("sampling", sampling, SAMPLING_METHODS)
        self.use_normals, self.normalize, self.seed = use_normals, normalize, seed
        super().__init__(read_shape_names(self.root, variant), transform)

        ids_path = require_file(
            self.root / f"{variant}_{split}.txt", what=f"{variant} {split} split", layout=LAYOUT
        )
        self.shape_ids: list[str] = read_lines(ids_path)
        index_of = {name: label for label, name in enumerate(self.class_names)}
        self._labels: list[int] = []
        self.paths: list[Path] = []
        for shape_id in self.shape_ids:
            name = shape_class(shape_id)
            if name not in index_of:
                raise DatasetFileError(
                    f"{ids_path} lists {shape_id!r}, whose class {name!r} is not in"
                    f" {variant}_shape_names.txt"
                )
            self._labels.append(index_of[name])
            self.paths.append(self.root / name / f"{shape_id}.txt")
        missing = [path for path in self.paths if not path.is_file()]
        if missing:
            shown = ", ".join(str(path) for path in missing[:3])
            raise FileNotFoundError(
                f"{len(missing)} of the {len(self.paths)} shape files listed in {ids_path.name}"
                f" are missing (first: {shown}). The expected layout is:\n{LAYOUT}"
            )

    @property
    def labels(self) -> list[int]:
        return self._labels

    def _load(self, index: int) -> tuple[torch.Tensor, int, None]:
        path = self.paths[index]
        columns = 6 if self.use_normals else 3
        table = load_point_table(path)
        if table.shape[1] < columns:
            raise DatasetFileError(
                f"{path} has {table.shape[1]} comma-separated columns per line, expected"
                f" {'6 (x,y,z,nx,ny,nz) for use_normals=True' if self.use_normals else 'at least 3'}"
            )
        if table.shape[0] < self.num_points:
            raise DatasetFileError(
                f"{path} has {table.shape[0]} points, fewer than num_points={self.num_points}"
            )
        points = torch.from_numpy(table[:, :columns].copy())
        if self.normalize:  # over the whole shape, before sampling (see the class docstring)
            points = normalize_to_unit_sphere(points)
        generator = None
        if self.sampling == "random":
            generator = keyed_generator(self.seed, index)
        points = resample_points(points, self.num_points, self.sampling, generator=generator)
        return points.contiguous(), self._labels[index], None
