"""What Point-MAE pre-trains on: unlabelled clouds pooled from every source at hand.

Sources, by the names ``point-peft pretrain --data`` takes:

=================================  =============================================================
``procedural-clean``               :class:`~point_peft.data.ProceduralShapes` train split, clean
``procedural-hard``                the same shapes as simulated scans (floor, clutter, occlusion)
``cgal``                           CGAL's demo meshes (:class:`~point_peft.corpora.CgalMeshes`),
                                   several differently sampled clouds per mesh
``kicad``                          KiCad's CAD models (:class:`~point_peft.corpora.KiCadCategories`),
                                   train split
``modelnet40=DIR``                 a ModelNet40 folder (``modelnet10=DIR``: ModelNet10), train
                                   split; the preprocessed ``*_fps.dat`` pickle when the folder has
                                   one, else the text files
``scanobjectnn=DIR``               ScanObjectNN h5 files, PB_T50_RS train split
                                   (``scanobjectnn-OBJ_BG=DIR``, ``scanobjectnn-OBJ_ONLY=DIR``)
``auto``                           both procedural sources, plus ``cgal`` and ``kicad`` when their
                                   meshes are already in the corpus cache (nothing is downloaded)
=================================  =============================================================

Only train splits are used, so that no downstream test cloud is seen in pre-training. Labels are
dropped. Every source is read once and the clouds are held as one (M, num_points, 3) float32
tensor (:class:`PointClouds`): the procedural generator and the ModelNet text reader cost
milliseconds per cloud, far more than a training step spends on it, and epochs after the first
would pay that again. 10,000 clouds of 1,024 points take 120 MB.

Example:
    >>> clouds = build_pretraining_clouds(
    ...     ["procedural-clean"], num_points=64, procedural_samples_per_class=1, progress=False
    ... )
    >>> len(clouds), clouds.sources
    (15, {'procedural-clean': 15})
    >>> collate_points([clouds[0], clouds[1]])["points"].shape
    torch.Size([2, 64, 3])
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from point_peft.corpora import (
    DEFAULT_KICAD_CATEGORIES,
    CgalMeshes,
    KiCadCategories,
    cgal_meshes,
    kicad_models,
    resolve_cache_dir,
)
from point_peft.data import (
    ModelNet40,
    ModelNet40Preprocessed,
    ProceduralShapes,
    ScanObjectNN,
)

AUTO = "auto"
PROCEDURAL_SOURCES: tuple[str, ...] = ("procedural-clean", "procedural-hard")
CORPUS_SOURCES: tuple[str, ...] = ("cgal", "kicad")
FOLDER_SOURCES: tuple[str, ...] = (
    "modelnet40",
    "modelnet10",
    "scanobjectnn",
    "scanobjectnn-PB_T50_RS",
    "scanobjectnn-OBJ_BG",
    "scanobjectnn-OBJ_ONLY",
)


@dataclasses.dataclass(frozen=True)
class PretrainingSource:
    """One parsed ``--data`` entry: a source ``kind`` and, for folder sources, its ``root``."""

    kind: str
    root: Path | None = None

    @classmethod
    def parse(cls, text: str) -> PretrainingSource:
        """Read ``"procedural-clean"``, ``"cgal"``, ``"modelnet40=DIR"`` and the like.

        Example:
            >>> PretrainingSource.parse("modelnet40=data/modelnet").root.as_posix()
            'data/modelnet'
        """
        kind, separator, root = str(text).partition("=")
        if kind in PROCEDURAL_SOURCES + CORPUS_SOURCES and not separator:
            return cls(kind)
        if kind in FOLDER_SOURCES:
            if not root:
                raise ValueError(f"data source {text!r} needs a folder: {kind}=DIR")
            return cls(kind, Path(root).expanduser())
        known = [*PROCEDURAL_SOURCES, *CORPUS_SOURCES, *(f"{name}=DIR" for name in FOLDER_SOURCES)]
        raise ValueError(f"unknown data source {text!r}; expected one of {', '.join(known)}")

    def __str__(self) -> str:
        return self.kind if self.root is None else f"{self.kind}={self.root}"


def cached_corpora(cache_dir: str | os.PathLike | None = None) -> list[str]:
    """The corpus sources (``cgal``, ``kicad``) whose meshes are already in the cache."""
    cache = resolve_cache_dir(cache_dir)
    present = []
    try:
        if cgal_meshes(cache, download=False):
            present.append("cgal")
    except FileNotFoundError:
        pass
    try:
        kicad_models(DEFAULT_KICAD_CATEGORIES, cache, download=False)
        present.append("kicad")
    except FileNotFoundError:
        pass
    return present


def resolve_sources(
    names: Sequence[str], cache_dir: str | os.PathLike | None = None
) -> tuple[str, ...]:
    """Expand ``auto`` and check every name; the result is what a run records and hashes.

    Example:
        >>> resolve_sources(["procedural-hard", "procedural-clean", "procedural-hard"])
        ('procedural-hard', 'procedural-clean')
    """
    if isinstance(names, str):
        names = [names]
    expanded: list[str] = []
    for name in names:
        if name == AUTO:
            expanded += [*PROCEDURAL_SOURCES, *cached_corpora(cache_dir)]
        else:
            expanded.append(str(PretrainingSource.parse(name)))
    if not expanded:
        raise ValueError("no data source given: name at least one (or 'auto')")
    return tuple(dict.fromkeys(expanded))


class PointClouds(Dataset):
    """Clouds held in memory, items ``{"points": (num_points, 3) float32}``.

    ``sources`` maps each source name to how many of the clouds came from it, in order.
    """

    def __init__(self, points: torch.Tensor, sources: dict[str, int]) -> None:
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must be (clouds, num_points, 3), got {tuple(points.shape)}")
        if sum(sources.values()) != points.shape[0]:
            raise ValueError(
                f"sources count {sum(sources.values())} clouds, points hold {len(points)}"
            )
        self.points = points.to(torch.float32).contiguous()
        self.sources = dict(sources)

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"points": self.points[index]}


def collate_points(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack the ``points`` of dataset items into a (batch, num_points, 3) batch; labels are dropped."""
    return {"points": torch.stack([item["points"][:, :3] for item in items])}


def load_source(
    source: str | PretrainingSource,
    *,
    num_points: int,
    procedural_samples_per_class: int | None = None,
    cgal_samples_per_mesh: int = 8,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    progress: bool = True,
    normalize_scans: bool = True,
) -> Dataset:
    """The dataset behind one source, its clouds normalised into the unit sphere.

    ``normalize_scans=False`` keeps ScanObjectNN's clouds as the files hold them (already
    normalised per object by the dataset's authors; the scaled and rotated variants reach a little
    past the unit sphere). Pre-training mixes sources and re-normalises them all; fine-tuning keeps
    the files' own coordinates, as the Point-MAE and Point-PEFT protocol does.

    ``split`` selects the procedural, KiCad, ModelNet or ScanObjectNN split (``"test"`` for a
    held-out evaluation set; CGAL has no split). ``download`` lets ``cgal`` and ``kicad`` fetch
    their Debian packages; without it a missing corpus is a ``FileNotFoundError`` naming the
    command that fetches it.
    """
    source = source if isinstance(source, PretrainingSource) else PretrainingSource.parse(source)
    kind, root = source.kind, source.root
    if kind in PROCEDURAL_SOURCES:
        variant = kind.removeprefix("procedural-")
        return ProceduralShapes(
            split, variant, num_points=num_points, samples_per_class=procedural_samples_per_class,
            seed=seed,
        )  # fmt: skip
    if kind == "cgal":
        return CgalMeshes(
            num_points=num_points, samples_per_mesh=cgal_samples_per_mesh, cache_dir=cache_dir,
            download=download, seed=seed, progress=progress,
        )  # fmt: skip
    if kind == "kicad":
        return KiCadCategories(
            split, num_points=num_points, cache_dir=cache_dir, download=download, seed=seed,
            progress=progress,
        )  # fmt: skip
    assert root is not None  # folder sources always carry one (PretrainingSource.parse)
    if kind.startswith("modelnet"):
        pickle = _preprocessed_points(root, kind, split)
        has_text_files = (root / f"{kind}_{split}.txt").is_file()
        # A pickle of fewer points than asked for gives way to the text files, when there are any.
        if pickle is not None and (pickle >= num_points or not has_text_files):
            return ModelNet40Preprocessed(root, split, num_points, variant=kind, file_points=pickle)
        return ModelNet40(root, split, num_points, variant=kind, seed=seed)
    variant = kind.partition("-")[2] or "PB_T50_RS"
    return ScanObjectNN(
        root, split, variant=variant, num_points=num_points, normalize=normalize_scans, seed=seed
    )


def _preprocessed_points(root: Path, variant: str, split: str) -> int | None:
    """``file_points`` of the ``<variant>_<split>_<n>pts_fps.dat`` pickle in ``root``, if any."""
    pattern = re.compile(rf"^{variant}_{split}_(\d+)pts_fps\.dat$")
    found = [int(m.group(1)) for p in root.glob("*.dat") if (m := pattern.match(p.name))]
    return max(found) if found else None


def materialize(
    dataset: Dataset, *, description: str = "clouds", progress: bool = True, batch_size: int = 64
) -> torch.Tensor:
    """Read every item of ``dataset`` once: its ``points`` (xyz only) as one (M, N, 3) tensor."""
    from tqdm.auto import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_points)
    chunks = [
        batch["points"]
        for batch in tqdm(loader, desc=description, unit="batch", disable=not progress, leave=False)
    ]
    if not chunks:
        raise ValueError(f"data source {description!r} has no clouds")
    return torch.cat(chunks)


def build_pretraining_clouds(
    sources: Sequence[str],
    *,
    num_points: int = 1024,
    procedural_samples_per_class: int | None = None,
    cgal_samples_per_mesh: int = 8,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> PointClouds:
    """Read ``sources`` (names as :func:`resolve_sources` gives them) into one :class:`PointClouds`."""
    options = dict(
        num_points=num_points, procedural_samples_per_class=procedural_samples_per_class,
        cgal_samples_per_mesh=cgal_samples_per_mesh, split=split, cache_dir=cache_dir,
        download=download, seed=seed, progress=progress,
    )  # fmt: skip
    parts, counts = [], {}
    for name in resolve_sources(sources, cache_dir):
        points = materialize(load_source(name, **options), description=name, progress=progress)
        parts.append(points)
        counts[name] = points.shape[0]
    return PointClouds(torch.cat(parts), counts)
