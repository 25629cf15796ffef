"""Surface sampling is uniform by area (not by triangle), seeded, and exact on known shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from point_peft.corpora import (
    TriangleMesh,
    parse_off,
    sample_surface,
    surface_area,
    triangle_areas,
)

# The unit square cut into four triangles of very different areas around the interior point
# (0.9, 0.8): sampling triangles uniformly instead of by area would crowd the small ones.
SKEWED_SQUARE = TriangleMesh(
    np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.9, 0.8, 0]]),
    np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]),
)


def unit_cube() -> TriangleMesh:
    return parse_off(
        "OFF\n8 6 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n1 0 1\n1 1 1\n0 1 1\n"
        "4 0 3 2 1\n4 4 5 6 7\n4 0 1 5 4\n4 1 2 6 5\n4 2 3 7 6\n4 3 0 4 7\n"
    )


def icosphere(subdivisions: int) -> TriangleMesh:
    """A unit icosphere, built here so the test does not trust any reader."""
    golden = (1 + 5**0.5) / 2
    vertices = [
        [-1, golden, 0], [1, golden, 0], [-1, -golden, 0], [1, -golden, 0],
        [0, -1, golden], [0, 1, golden], [0, -1, -golden], [0, 1, -golden],
        [golden, 0, -1], [golden, 0, 1], [-golden, 0, -1], [-golden, 0, 1],
    ]  # fmt: skip
    faces = [
        [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
        [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
        [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
    ]  # fmt: skip
    vertices = [list(np.array(v) / np.linalg.norm(v)) for v in vertices]
    midpoints: dict[tuple[int, int], int] = {}  # edges are shared: one new vertex per edge

    def midpoint(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in midpoints:
            middle = (np.array(vertices[a]) + np.array(vertices[b])) / 2
            vertices.append(list(middle / np.linalg.norm(middle)))
            midpoints[key] = len(vertices) - 1
        return midpoints[key]

    for _ in range(subdivisions):
        refined = []
        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            refined += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = refined
    return TriangleMesh(np.array(vertices), np.array(faces))


def test_triangle_areas_match_the_shoelace_formula():
    areas = triangle_areas(SKEWED_SQUARE)
    corners = SKEWED_SQUARE.vertices[SKEWED_SQUARE.triangles][:, :, :2]
    x, y = corners[..., 0], corners[..., 1]
    shoelace = 0.5 * np.abs(
        x[:, 0] * (y[:, 1] - y[:, 2])
        + x[:, 1] * (y[:, 2] - y[:, 0])
        + x[:, 2] * (y[:, 0] - y[:, 1])
    )
    np.testing.assert_allclose(areas, shoelace)
    assert surface_area(SKEWED_SQUARE) == pytest.approx(1.0)


def test_samples_of_a_skewed_square_are_uniform_over_quadrants_and_a_fine_grid():
    points = sample_surface(SKEWED_SQUARE, 40_000, seed=0)
    assert points[:, 2].max() == 0.0
    assert points[:, :2].min() >= 0.0
    assert points[:, :2].max() <= 1.0
    quadrants = np.histogram2d(points[:, 0], points[:, 1], bins=2, range=[[0, 1], [0, 1]])[0]
    expected = len(points) / 4
    # Each count is Binomial(40000, 1/4): standard deviation ~87; 5 sigma is a safe bound.
    assert np.abs(quadrants - expected).max() < 5 * math.sqrt(len(points) * 0.25 * 0.75)
    grid = np.histogram2d(points[:, 0], points[:, 1], bins=10, range=[[0, 1], [0, 1]])[0]
    chi_square = ((grid - 400) ** 2 / 400).sum()
    assert chi_square < 99 + 5 * math.sqrt(2 * 99)  # 99 degrees of freedom


def test_uniform_choice_of_triangles_would_fail_the_same_check():
    """The check above has teeth: sampling triangles uniformly (not by area) visibly fails it."""
    rng = np.random.default_rng(0)
    chosen = rng.integers(0, 4, 40_000)
    root, fraction = np.sqrt(rng.random(40_000)), rng.random(40_000)
    corners = SKEWED_SQUARE.vertices[SKEWED_SQUARE.triangles[chosen]]
    weights = np.stack([1 - root, root * (1 - fraction), root * fraction], axis=1)
    points = np.einsum("nc,ncd->nd", weights, corners)
    quadrants = np.histogram2d(points[:, 0], points[:, 1], bins=2, range=[[0, 1], [0, 1]])[0]
    assert np.abs(quadrants - 10_000).max() > 5 * math.sqrt(40_000 * 0.25 * 0.75)


def test_points_inside_one_triangle_are_uniform_in_area():
    triangle = TriangleMesh(np.array([[0.0, 0, 0], [3, 0, 0], [0, 3, 0]]), np.array([[0, 1, 2]]))
    points = sample_surface(triangle, 40_000, seed=1)
    np.testing.assert_allclose(points.mean(axis=0), [1, 1, 0], atol=0.02)  # the centroid
    # The medial triangle (midpoints of the sides) holds a quarter of the area.
    x, y = points[:, 0], points[:, 1]
    inside_medial = (x <= 1.5) & (y <= 1.5) & (x + y >= 1.5)
    assert inside_medial.mean() == pytest.approx(0.25, abs=0.01)


def test_cube_area_and_samples_on_its_faces():
    cube = unit_cube()
    assert surface_area(cube) == pytest.approx(6.0)
    points = sample_surface(cube, 30_000, seed=2)
    on_face = np.isclose(points, 0.0) | np.isclose(points, 1.0)
    assert on_face.any(axis=1).all()  # every point lies on the surface
    per_face = np.stack([np.isclose(points[:, axis], side) for axis in range(3) for side in (0, 1)])
    np.testing.assert_allclose(per_face.mean(axis=1), 1 / 6, atol=0.01)


def test_icosphere_area_converges_to_four_pi_and_samples_lie_on_it():
    sphere = icosphere(4)
    assert surface_area(sphere) == pytest.approx(4 * math.pi, rel=5e-3)
    assert surface_area(icosphere(2)) < surface_area(sphere) < 4 * math.pi
    points = sample_surface(sphere, 20_000, seed=3)
    radii = np.linalg.norm(points, axis=1)
    assert radii.max() <= 1.0 + 1e-12
    assert radii.min() > 0.99
    # Uniform on a sphere: each coordinate is uniform on [-1, 1], so the mean of z is ~0 and
    # the share with z > 0.5 is a quarter (Archimedes' hat-box theorem).
    assert np.mean(points[:, 2] > 0.5) == pytest.approx(0.25, abs=0.015)


def test_the_same_seed_gives_the_same_points_and_another_seed_others():
    first = sample_surface(SKEWED_SQUARE, 100, seed=7)
    np.testing.assert_array_equal(first, sample_surface(SKEWED_SQUARE, 100, seed=7))
    assert not np.allclose(first, sample_surface(SKEWED_SQUARE, 100, seed=8))
    generator = np.random.default_rng(7)
    np.testing.assert_array_equal(first, sample_surface(SKEWED_SQUARE, 100, seed=generator))


def test_return_triangles_names_the_triangle_each_point_lies_on():
    points, triangles = sample_surface(SKEWED_SQUARE, 500, seed=0, return_triangles=True)
    corners = SKEWED_SQUARE.vertices[SKEWED_SQUARE.triangles[triangles]][:, :, :2]
    # Barycentric coordinates of each point in its own triangle are all >= 0.
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    matrix = np.stack([b - a, c - a], axis=2)
    weights = np.linalg.solve(matrix, (points[:, :2] - a)[..., None])[..., 0]
    assert (weights >= -1e-9).all()
    assert (weights.sum(axis=1) <= 1 + 1e-9).all()


def test_degenerate_meshes_and_bad_counts_are_refused():
    flat = TriangleMesh(np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="no surface to sample"):
        sample_surface(flat, 10)
    with pytest.raises(ValueError, match="num_points must be >= 1"):
        sample_surface(SKEWED_SQUARE, 0)
    with pytest.raises(TypeError, match="num_points must be an int"):
        sample_surface(SKEWED_SQUARE, 10.0)
