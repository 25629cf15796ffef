"""Uniform random points on a triangle mesh's surface.

Uniform on the surface means two things: a triangle is chosen with probability proportional to
its area, and a point inside it is uniform in area. The second uses the square-root trick: with
``r1, r2 ~ U(0, 1)``, the barycentric weights ``(1 - √r1, √r1 (1 - r2), √r1 r2)`` are uniform over
the triangle (plain ``(r1, r2)`` folded into the triangle would crowd the first vertex).

Everything is float64 numpy with an explicit seed, so the same mesh and seed give the same points on
every machine.
"""

from __future__ import annotations

import numpy as np

from point_peft.corpora.mesh import TriangleMesh


def triangle_areas(mesh: TriangleMesh) -> np.ndarray:
    """Area of every triangle, (F,) float64.

    Example:
        >>> import numpy as np
        >>> square = TriangleMesh(
        ...     np.array([[0.0, 0, 0], [2, 0, 0], [2, 2, 0], [0, 2, 0]]),
        ...     np.array([[0, 1, 2], [0, 2, 3]]),
        ... )
        >>> triangle_areas(square).tolist()
        [2.0, 2.0]
    """
    a, b, c = (mesh.vertices[mesh.triangles[:, corner]] for corner in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def surface_area(mesh: TriangleMesh) -> float:
    """Total surface area (overlapping or duplicated triangles count every time)."""
    return float(triangle_areas(mesh).sum())


def sample_surface(
    mesh: TriangleMesh,
    num_points: int,
    *,
    seed: int | np.random.Generator | None = 0,
    return_triangles: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``num_points`` points drawn uniformly (by area) from the surface of ``mesh``.

    Args:
        mesh: a mesh with positive total area.
        num_points: how many points, >= 1.
        seed: an int or a ``numpy.random.Generator``; the same seed gives the same points.
        return_triangles: also return the index of the triangle each point lies on.

    Returns:
        points (num_points, 3) float64, and with ``return_triangles`` the (num_points,) int64
        triangle indices.

    Example:
        >>> import numpy as np
        >>> triangle = TriangleMesh(
        ...     np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]), np.array([[0, 1, 2]])
        ... )
        >>> points = sample_surface(triangle, 1000, seed=0)
        >>> (
        ...     points.shape,
        ...     bool((points[:, :2].sum(axis=1) <= 1).all()),
        ...     bool((points[:, 2] == 0).all()),
        ... )
        ((1000, 3), True, True)
    """
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)):
        raise TypeError(f"num_points must be an int, got {type(num_points).__name__}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    areas = triangle_areas(mesh)
    total = areas.sum()
    if not total > 0:
        raise ValueError(
            f"the mesh has no surface to sample (total area {total}, "
            f"{mesh.num_triangles} triangles); a point set or degenerate faces only?"
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    # Inverse-CDF draw on the cumulative areas: one searchsorted, exact in proportion to area.
    cumulative = np.cumsum(areas)
    chosen = np.searchsorted(cumulative, rng.random(num_points) * cumulative[-1], side="right")
    chosen = np.minimum(chosen, mesh.num_triangles - 1)  # guards the r * total == total rounding
    root = np.sqrt(rng.random(num_points))
    fraction = rng.random(num_points)
    corners = mesh.vertices[mesh.triangles[chosen]]  # (num_points, 3 corners, 3)
    weights = np.stack([1.0 - root, root * (1.0 - fraction), root * fraction], axis=1)
    points = np.einsum("nc,ncd->nd", weights, corners)
    return (points, chosen) if return_triangles else points
