"""File access shared by the readers: missing-file errors that show the expected layout, the error
for a file that is there but unusable, a text-table reader, and a pickle loader that only rebuilds
numpy arrays."""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np


class DatasetFileError(ValueError):
    """A dataset file that is there but cannot be used as it is: truncated or corrupt, another
    format, wrong columns or shapes, too few points. The message names the file. Command lines
    report it without a traceback: the fix is in the data, not in the code."""


class ReaderDependencyError(ImportError):
    """A reader needs an optional package that is not installed; the message gives the pip
    command. Command lines report it without a traceback, as they do a missing file."""


def require_file(path: Path, *, what: str, layout: str) -> Path:
    """Return ``path`` if it is a file, else raise FileNotFoundError showing the expected ``layout``."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} not found: expected the file {path}. The expected layout is:\n{layout}"
        )
    return path


def require_directory(path: Path, *, what: str, layout: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(
            f"{what} not found: {path} is not a directory. The expected layout is:\n{layout}"
        )
    return path


def read_lines(path: Path) -> list[str]:
    """Non-empty lines, stripped (the official lists end with a newline, some with CRLF)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_point_table(path: Path) -> np.ndarray:
    """A ``x,y,z[,nx,ny,nz]`` text file (comma separated, one point per line) as float32 rows."""
    try:
        return np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as error:  # numpy's message names the line, not the file
        raise DatasetFileError(
            f"{path} is not comma-separated point rows x,y,z[,nx,ny,nz] ({error})"
        ) from None


# Everything a pickle of numpy arrays (any protocol, numpy 1.x or 2.x) refers to, and nothing else.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol 2 stores array bytes as latin-1 text
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5
    ("numpy._core.numeric", "_frombuffer"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global outside ``_NUMPY_GLOBALS``: a plain ``pickle.load`` would run whatever
    code a downloaded file names."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: this file should contain only numpy arrays"
            )
        # numpy 2 renamed numpy.core to numpy._core: files written by numpy 1.x name the old module
        # (numpy 2 still imports it, with a deprecation warning), files written by numpy 2 the new
        # one (which numpy 1.x lacks). Import the new name first, the old one where it is missing.
        renamed = module.replace("numpy.core", "numpy._core")
        for candidate in dict.fromkeys([renamed, renamed.replace("numpy._core", "numpy.core")]):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"cannot import {module}.{name} with this numpy")


def load_numpy_pickle(path: Path) -> Any:
    """Unpickle a file that holds only (lists of) numpy arrays and plain Python values."""
    with path.open("rb") as handle:
        return _NumpyOnlyUnpickler(handle).load()
