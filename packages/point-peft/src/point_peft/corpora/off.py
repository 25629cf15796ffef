"""Reader for Object File Format (OFF) meshes, as written by CGAL, Geomview and ModelNet.

The ASCII format, one record per line, ``#`` starting a comment anywhere on a line::

    OFF                  # keyword, optionally prefixed: ST (texture), C (colour), N (normal)
    V F E                # vertex, face and edge counts (E is ignored and may be missing)
    x y z [extras]       # V vertex lines; colours/normals after the 3 coordinates are skipped
    k i1 ... ik [extras] # F face lines: k vertex indices, then an optional colour

The keyword may share its line with the counts (``OFF 8 6 12``, as some ModelNet files have it) or
be left out. Faces are fan-triangulated; faces with fewer than 3 vertices are dropped (they enclose
no area). Binary OFF and the 4D/n-D variants are refused with a clear error.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import numpy as np

from point_peft.corpora.mesh import MeshFormatError, TriangleMesh, fan_triangulate

_KEYWORD = re.compile(r"(ST)?C?N?(4)?(n)?OFF")


def read_off(path: str | os.PathLike) -> TriangleMesh:
    """Read an OFF file into a :class:`TriangleMesh`.

    Raises:
        MeshFormatError: the file is not valid OFF; the message names the file and the line.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "square.off"
        >>> _ = path.write_text("OFF\\n4 1 0\\n0 0 0\\n1 0 0\\n1 1 0\\n0 1 0\\n4 0 1 2 3\\n")
        >>> mesh = read_off(path)
        >>> mesh.triangles.tolist()
        [[0, 1, 2], [0, 2, 3]]
    """
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as handle:
        return parse_off(handle.read(), source=str(path))


def parse_off(text: str, source: str = "<string>") -> TriangleMesh:
    """Parse the text of an OFF file; ``source`` names it in error messages.

    Example:
        >>> mesh = parse_off("OFF 3 1 0\\n0 0 0\\n1 0 0\\n0 1 0\\n3 0 1 2 # one triangle\\n")
        >>> mesh.num_vertices, mesh.num_triangles
        (3, 1)
    """
    records = _records(text)
    line_number, tokens = _next_record(records, source, "the OFF header")
    if _KEYWORD.fullmatch(tokens[0]):
        _check_keyword(tokens, source, line_number)
        tokens = tokens[1:]
        if not tokens:
            line_number, tokens = _next_record(records, source, "the vertex and face counts")
    elif not tokens[0].lstrip("+-").isdigit():
        raise MeshFormatError(source, line_number, f"expected the OFF keyword, got {tokens[0]!r}")
    num_vertices, num_faces = _counts(tokens, source, line_number)

    vertex_rows, vertex_lines = [], []
    for _ in range(num_vertices):
        line_number, tokens = _next_record(records, source, f"{num_vertices} vertex lines")
        if len(tokens) < 3:
            raise MeshFormatError(source, line_number, f"expected 3 coordinates, got {tokens}")
        vertex_rows.append(tokens[:3])
        vertex_lines.append(line_number)
    vertices = _to_array(vertex_rows, vertex_lines, np.float64, source, "coordinates")
    vertices = vertices.reshape(num_vertices, 3)
    if not np.isfinite(vertices).all():
        bad = int(np.flatnonzero(~np.isfinite(vertices).all(axis=1))[0])
        raise MeshFormatError(source, vertex_lines[bad], "vertex coordinates must be finite")

    face_rows, lengths, face_lines = [], [], []
    for _ in range(num_faces):
        line_number, tokens = _next_record(records, source, f"{num_faces} face lines")
        size = _integer(tokens[0], source, line_number, "the face's vertex count")
        if size < 1 or len(tokens) < 1 + size:
            raise MeshFormatError(
                source, line_number, f"a face needs k >= 1 then k vertex indices, got {tokens}"
            )
        face_rows.append(tokens[1 : 1 + size])  # what follows the indices is a colour: skipped
        lengths.append(size)
        face_lines.append(line_number)
    indices = _to_array(face_rows, face_lines, np.int64, source, "vertex indices")
    out_of_range = (indices < 0) | (indices >= num_vertices)
    if out_of_range.any():
        face = int(np.searchsorted(np.cumsum(lengths), np.flatnonzero(out_of_range)[0], "right"))
        raise MeshFormatError(
            source,
            face_lines[face],
            f"vertex index {int(indices[out_of_range][0])} is outside [0, {num_vertices})",
        )
    return TriangleMesh(vertices, fan_triangulate(indices, np.array(lengths, dtype=np.int64)))


def _records(text: str):
    """(line number, tokens) for every line that holds something besides a comment."""
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split("#", 1)[0].split()
        if tokens:
            yield number, tokens


def _next_record(records, source: str, expected: str) -> tuple[int, list[str]]:
    record = next(records, None)
    if record is None:
        raise MeshFormatError(source, None, f"the file ends before {expected}")
    return record


def _check_keyword(tokens: list[str], source: str, line_number: int) -> None:
    match = _KEYWORD.fullmatch(tokens[0])
    if match.group(2) or match.group(3):
        raise MeshFormatError(
            source, line_number, f"{tokens[0]} (4D or n-D vertices) is not supported"
        )
    if len(tokens) > 1 and tokens[1].upper() == "BINARY":
        raise MeshFormatError(source, line_number, "binary OFF is not supported, only ASCII")


def _counts(tokens: list[str], source: str, line_number: int) -> tuple[int, int]:
    if len(tokens) < 2:
        raise MeshFormatError(
            source, line_number, f"expected vertex, face and edge counts, got {tokens}"
        )
    num_vertices = _integer(tokens[0], source, line_number, "the vertex count")
    num_faces = _integer(tokens[1], source, line_number, "the face count")
    if num_vertices < 0 or num_faces < 0:
        raise MeshFormatError(source, line_number, f"counts must be >= 0, got {tokens[:2]}")
    return num_vertices, num_faces


def _integer(token: str, source: str, line_number: int, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise MeshFormatError(
            source, line_number, f"expected an integer for {what}, got {token!r}"
        ) from None


def _to_array(rows, lines, dtype, source: str, what: str) -> np.ndarray:
    """Convert all rows at once (fast); on failure find the offending row to name its line."""
    try:
        return np.array(list(itertools.chain.from_iterable(rows)), dtype=np.str_).astype(dtype)
    except ValueError:
        convert = float if dtype == np.float64 else int
        for row, line in zip(rows, lines, strict=True):
            for token in row:
                try:
                    convert(token)
                except ValueError:
                    raise MeshFormatError(
                        source, line, f"expected numbers for {what}, got {token!r}"
                    ) from None
        raise
