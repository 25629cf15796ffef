"""Crash-safe file writes: a reader sees the old file or the new one, never a torn one.

The recipe is the classic one: write into a temporary file in the *same* directory (so the final
rename stays on one filesystem and is atomic), flush and fsync it, ``os.replace`` it over the
target, then fsync the directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def fsync_directory(directory: str | os.PathLike) -> None:
    """Persist a directory entry (a rename or a new file) on filesystems that support it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _current_umask() -> int:
    # The only portable way to read the umask is to set it; put it straight back.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _final_mode(target: Path, default: int) -> int:
    """The mode a plain ``open``/``mkdir`` would give ``target``, or the mode it already has.

    ``mkstemp``/``mkdtemp`` create 0600/0700 for privacy while the file is half-written; renamed
    as is, saved weights would be unreadable to the rest of a group sharing a cluster folder.
    """
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return default & ~_current_umask()


# Work in progress sits beside its target as ".<target name>.<random>.tmp".
_STAGING_SUFFIX = ".tmp"


def _staging_prefix(target: Path) -> str:
    return f".{target.name}."


def remove_abandoned_staging(directory: str | os.PathLike, name_pattern: str = "*") -> None:
    """Delete what writers killed mid-write left in ``directory`` for targets whose names match
    the glob ``name_pattern`` (a finished write is renamed into place, so this never holds
    anything complete). Only call it where no other writer is at work."""
    root = Path(directory)
    if not root.is_dir():
        return
    for path in root.glob(f".{name_pattern}.*{_STAGING_SUFFIX}"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)`` and atomically move the result to ``path``.

    ``write`` receives a path it must fill completely (for libraries such as safetensors that want
    a file name rather than a file object). The temporary file is removed if ``write`` raises.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(
        prefix=_staging_prefix(target), suffix=_STAGING_SUFFIX, dir=target.parent
    )
    os.close(fd)
    temporary_path = Path(temporary)
    try:
        write(temporary_path)
        os.chmod(temporary_path, _final_mode(target, 0o666))
        with open(temporary_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary_path.unlink()
        raise
    fsync_directory(target.parent)
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place when the block succeeds.

    Used for training checkpoints, which hold several files that only make sense together: a
    checkpoint directory either exists complete or not at all.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=_staging_prefix(target), suffix=_STAGING_SUFFIX, dir=target.parent)
    )
    try:
        yield staging
        for file in staging.rglob("*"):
            if file.is_file():
                with open(file, "rb+") as handle:
                    os.fsync(handle.fileno())
        fsync_directory(staging)
        os.chmod(staging, _final_mode(target, 0o777))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_directory(target.parent)
