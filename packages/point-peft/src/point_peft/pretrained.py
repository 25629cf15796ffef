"""A default pre-trained Point-MAE backbone, built here once and then read from the cache.

No pre-trained point-cloud weights can be downloaded, so the default backbone is pre-trained on
first use: the small architecture (:meth:`PointTransformerConfig.small`) on both procedural
variants (nothing to download), by :func:`~point_peft.pretraining_recipe.pretrain`. The file lands
under ``<point-peft cache>/backbones/<name>-<key>/point_mae_pretrain.pth``, where the key hashes
the architecture, the recipe, its version and the seed, so a change to any of them builds a new
file instead of reusing a stale one. Later calls return the path at once.

Concurrency: the build happens in a work folder and the finished folder is renamed into place in
one step, so a reader never sees a partial file. A lock file makes a second process that asks
meanwhile wait for the first instead of training again, and a build that was killed resumes
from its last checkpoint.

Example::

    path = default_backbone_checkpoint()  # minutes on a CPU the first time, then instant
    model = load_default_backbone(num_classes=15)  # PointMAE with the pre-trained encoder
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from point_peft.corpora import resolve_cache_dir
from point_peft.models import PointMAE, PointTransformerConfig, load_checkpoint_file
from point_peft.pretraining_data import PROCEDURAL_SOURCES
from point_peft.pretraining_recipe import (
    CHECKPOINT_NAME,
    RECIPE_VERSION,
    RESULT_NAME,
    PretrainingRecipe,
    pretrain,
)

BACKBONE_NAME = "point-mae-small"
BACKBONES_DIR = "backbones"


def default_backbone_config() -> PointTransformerConfig:
    """The architecture of the default backbone: the 4 × 96 small Point-MAE (32 patches of 16)."""
    return PointTransformerConfig.small()


def default_backbone_recipe() -> PretrainingRecipe:
    """How the default backbone is pre-trained: procedural clean + hard, 6,000 clouds of 1,024
    points, 2 epochs of batch 32 (374 steps).

    Recorded by the ``point-pretraining`` benchmark suite
    (``benchmarks/results/point-peft-pretraining-cpu.json``, 2 CPU cores, 2 torch threads): 17 s
    to generate the clouds, 116 s to train. The held-out reconstruction loss falls from 1.25 to
    0.0055, half of what predicting each masked patch as its centre point scores (0.011) and
    below an isotropic Gaussian blob around it (0.010 with the patches' mean square radius,
    0.0071 at the best size); the training loss is 0.0076 at step 60 and 0.0068 at the last.
    """
    return PretrainingRecipe(data=PROCEDURAL_SOURCES, epochs=2.0, batch_size=32, seed=0)


def backbone_key(config: PointTransformerConfig, recipe: PretrainingRecipe) -> str:
    """16 hex digits that change whenever the architecture, the recipe (seed included) or the
    recipe version changes; the library version stamps are left out.

    Example:
        >>> small = default_backbone_config()
        >>> recipe = default_backbone_recipe()
        >>> backbone_key(small, recipe) == backbone_key(small, recipe)
        True
        >>> backbone_key(small, recipe) == backbone_key(small, dataclasses.replace(recipe, seed=1))
        False
    """
    described = {
        "recipe_version": RECIPE_VERSION,
        "config": dataclasses.asdict(config),
        "recipe": dataclasses.asdict(recipe),
    }
    text = json.dumps(described, sort_keys=True, default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def default_backbone_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder the default backbone is (or will be) cached in."""
    key = backbone_key(default_backbone_config(), default_backbone_recipe())
    return resolve_cache_dir(cache_dir) / BACKBONES_DIR / f"{BACKBONE_NAME}-{key}"


def default_backbone_checkpoint(
    cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """The path of the default pre-trained backbone, building it first if it is not cached.

    Args:
        cache_dir: the cache folder (default: ``$POINT_PEFT_CACHE``, else ``~/.cache/point-peft``).
        progress: show the data and training progress bars while building.

    Returns:
        ``.../point_mae_pretrain.pth``, an official-layout Point-MAE pre-train file; next to it
        ``pretrain_result.json`` (loss curve, time) and ``model_config.json``.
    """
    config, recipe = default_backbone_config(), default_backbone_recipe()
    target = default_backbone_dir(cache_dir)
    checkpoint = target / CHECKPOINT_NAME
    if checkpoint.is_file():
        return checkpoint
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".build-{target.name}"
    with _exclusive(target.parent / f".{target.name}.lock") as locked:
        if checkpoint.is_file():  # built by the process we waited for
            return checkpoint
        if not locked:  # no file locks here: build in a folder of our own
            work = work.with_name(f"{work.name}-{os.getpid()}")
        # said even without progress bars: the first run is otherwise silent for minutes
        print(
            f"building the default Point-MAE backbone (once; a few minutes on a CPU) in {target}",
            file=sys.stderr,
            flush=True,
        )
        pretrain(config, recipe, work / "run", resume=True, save_every=50, progress=progress)
        staged = work / "publish"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        for name in (CHECKPOINT_NAME, RESULT_NAME):
            os.replace(work / "run" / name, staged / name)
        (staged / "model_config.json").write_text(config.to_json_string(), encoding="utf-8")
        try:
            os.replace(staged, target)
        except OSError:
            if not checkpoint.is_file():  # not "another builder published first"
                raise
        shutil.rmtree(work, ignore_errors=True)
    return checkpoint


def read_pretrained_config(source: str | os.PathLike | Mapping[str, Any]) -> PointTransformerConfig:
    """The architecture recorded in a checkpoint written by :func:`pretrain`.

    ``source``: the file, or what :func:`~point_peft.models.load_checkpoint_file` read from it.
    Official files record none; pass their architecture to ``from_pretrained`` yourself.
    """
    raw = source if isinstance(source, Mapping) else load_checkpoint_file(source)
    recorded = raw.get("point_peft") if isinstance(raw, Mapping) else None
    if not isinstance(recorded, Mapping) or "model_config" not in recorded:
        where = "the given checkpoint dict" if isinstance(source, Mapping) else str(source)
        raise ValueError(
            f"{where} records no architecture (not written by point-peft pretrain); pass "
            "config=PointTransformerConfig(...) to PointMAE.from_pretrained"
        )
    return PointTransformerConfig.from_dict(dict(recorded["model_config"]))


def load_default_backbone(
    num_classes: int,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **config_overrides: Any,
) -> PointMAE:
    """A :class:`PointMAE` classifier with the default pre-trained encoder and a new head."""
    raw = load_checkpoint_file(default_backbone_checkpoint(cache_dir, progress=progress))
    config = read_pretrained_config(raw).replace(num_classes=num_classes, **config_overrides)
    return PointMAE.from_pretrained(raw, config=config)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``lock_path`` (blocking); yields False where locks do not exist."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the atomic rename still keeps readers safe
        yield False
        return
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
