"""The triangle mesh that every reader returns, polygon fan triangulation and the readers' error.

A mesh is two numpy arrays: ``vertices`` (V, 3) float64 and ``triangles`` (F, 3) int64 indices into
``vertices``. Readers turn polygons into triangles by fans (v0, v_i, v_i+1), exact for the convex
polygons that OFF and VRML files hold in practice (CAD exporters write triangles).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class MeshFormatError(ValueError):
    """A mesh file that does not follow its format; the message names the file and the line."""

    def __init__(self, source: str, line: int | None, message: str):
        self.source = source
        self.line = line
        where = f"{source}, line {line}" if line is not None else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class TriangleMesh:
    """Vertices (V, 3) float64 and triangles (F, 3) int64, every index in ``[0, V)``.

    Example:
        >>> import numpy as np
        >>> square = TriangleMesh(
        ...     np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]),
        ...     np.array([[0, 1, 2], [0, 2, 3]]),
        ... )
        >>> square.num_vertices, square.num_triangles
        (4, 2)
    """

    vertices: np.ndarray
    triangles: np.ndarray

    def __post_init__(self):
        vertices = np.ascontiguousarray(self.vertices, dtype=np.float64)
        triangles = np.ascontiguousarray(self.triangles, dtype=np.int64)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
        if triangles.size == 0:
            triangles = triangles.reshape(0, 3)
        if triangles.ndim != 2 or triangles.shape[1] != 3:
            raise ValueError(f"triangles must have shape (F, 3), got {triangles.shape}")
        if triangles.size and (triangles.min() < 0 or triangles.max() >= len(vertices)):
            raise ValueError(
                f"triangles must index vertices in [0, {len(vertices)}), "
                f"got indices from {triangles.min()} to {triangles.max()}"
            )
        if not np.isfinite(vertices).all():
            raise ValueError("vertices must be finite (found NaN or inf)")
        object.__setattr__(self, "vertices", vertices)
        object.__setattr__(self, "triangles", triangles)

    @property
    def num_vertices(self) -> int:
        return len(self.vertices)

    @property
    def num_triangles(self) -> int:
        return len(self.triangles)

    @classmethod
    def concatenate(cls, meshes: list[TriangleMesh]) -> TriangleMesh:
        """One mesh holding all of ``meshes`` (indices shifted; nothing welded)."""
        if not meshes:
            return cls(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
        offsets = np.cumsum([0] + [mesh.num_vertices for mesh in meshes[:-1]])
        return cls(
            np.concatenate([mesh.vertices for mesh in meshes]),
            np.concatenate(
                [mesh.triangles + offset for mesh, offset in zip(meshes, offsets, strict=True)]
            ),
        )


def fan_triangulate(indices: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Triangles (sum(max(k - 2, 0)), 3) from polygons stored back to back.

    ``indices`` holds the vertex indices of every polygon one after the other and ``lengths`` the
    number of vertices ``k`` of each. Polygon ``(v0, ..., v_{k-1})`` becomes the fan
    ``(v0, v1, v2), (v0, v2, v3), ...``; polygons with fewer than 3 vertices (points and lines,
    legal in OFF) enclose no area and are dropped.

    Example:
        >>> fan_triangulate(np.array([0, 1, 2, 3, 4, 5, 6]), np.array([4, 3]))
        array([[0, 1, 2],
               [0, 2, 3],
               [4, 5, 6]])
    """
    indices = np.asarray(indices, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.sum() != len(indices):
        raise ValueError(f"lengths add up to {lengths.sum()} but there are {len(indices)} indices")
    starts = np.cumsum(lengths) - lengths
    per_polygon = np.maximum(lengths - 2, 0)
    total = int(per_polygon.sum())
    polygon_start = np.repeat(starts, per_polygon)
    # Position of each triangle inside its own fan: 0, 1, ..., k - 3 for every polygon.
    first_of_fan = np.repeat(np.cumsum(per_polygon) - per_polygon, per_polygon)
    step = np.arange(total, dtype=np.int64) - first_of_fan
    return np.stack(
        [
            indices[polygon_start],
            indices[polygon_start + step + 1],
            indices[polygon_start + step + 2],
        ],
        axis=1,
    )
