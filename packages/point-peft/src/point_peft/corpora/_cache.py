"""Where the corpora live on disk, and crash-safe writes into that place.

Everything downloaded or derived (Debian packages, extracted meshes, sampled clouds) goes under one
cache folder, never into a source checkout. Resolution order: the ``cache_dir`` argument, then the
``POINT_PEFT_CACHE`` environment variable, then ``$XDG_CACHE_HOME/point-peft``, then
``~/.cache/point-peft``.

Writes are atomic (a temporary sibling, then ``os.replace``) so that an interrupted run leaves either
nothing or a complete file/folder, and the next run simply redoes the missing part.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from peft_core import atomic_write

CACHE_ENV = "POINT_PEFT_CACHE"


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$POINT_PEFT_CACHE``, else the XDG default.

    Example:
        >>> str(resolve_cache_dir("/data/corpora"))
        '/data/corpora'
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "point-peft"


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that, unlike ``hash()``, is the same in every process."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "little")


@contextlib.contextmanager
def staging_directory(parent: Path) -> Iterator[Path]:
    """A fresh temporary folder inside ``parent`` (same filesystem, so a rename out is atomic).

    Removed on exit, whatever its caller managed to move out of it.
    """
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_directory(staged: Path, target: Path) -> None:
    """Move a completely written folder to ``target``; a concurrent winner's copy is kept."""
    try:
        os.replace(staged, target)
    except OSError:
        if not target.is_dir():  # not "someone else published it first"
            raise


def save_json_atomic(path: Path, value) -> None:
    """Write ``value`` as indented JSON into a temporary sibling, then rename over ``path``."""
    _write_atomic(path, lambda handle: handle.write(json.dumps(value, indent=2).encode() + b"\n"))


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` into a temporary sibling, then rename over ``path``."""
    _write_atomic(path, lambda handle: np.savez(handle, **arrays))


def _write_atomic(path: Path, write) -> None:
    """peft-core's crash-safe write (temporary sibling, fsync, rename), through a file handle."""

    def fill(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            write(handle)

    atomic_write(path, fill)
