"""Surface samplers: every point lies on its surface (closed-form equations), areas equal their
formulas, and density is uniform (fractions of points in sub-regions equal their area fractions)."""

from __future__ import annotations

import math

import pytest
import torch

from point_peft.data.primitives import (
    FLIP_Y,
    Y_TO_X,
    Disk,
    Parallelogram,
    Placed,
    Sphere,
    Torus,
    Triangle,
    Tube,
    box,
    cylinder,
    sample_surfaces,
)

COUNT = 20_000


def draw(surface, count: int = COUNT, seed: int = 0) -> torch.Tensor:
    return surface.sample(count, torch.Generator().manual_seed(seed))


def assert_fraction(observed: torch.Tensor, expected: float) -> None:
    """A fraction of COUNT Bernoulli draws within 5 standard deviations of its expectation."""
    fraction = float(observed.double().mean())
    sigma = math.sqrt(expected * (1 - expected) / observed.numel())
    assert abs(fraction - expected) < 5 * sigma + 1e-12, (fraction, expected)


def test_sphere_points_on_the_sphere_and_uniform():
    points = draw(Sphere(0.7))
    assert torch.allclose(points.norm(dim=1), torch.full((COUNT,), 0.7, dtype=torch.float64))
    # Archimedes: on a sphere, the height is uniform, so every band of equal height holds as much.
    assert_fraction(points[:, 1] > 0.35, 0.25)
    assert_fraction(points[:, 0].abs() < 0.07, 0.1)
    assert Sphere(0.7).area() == pytest.approx(4 * math.pi * 0.49)


def test_half_sphere_keeps_the_upper_half_uniformly():
    points = draw(Sphere(1.0, upper_half=True))
    assert bool((points[:, 1] >= 0).all())
    assert_fraction(points[:, 1] > 0.5, 0.5)
    assert Sphere(1.0, upper_half=True).area() == pytest.approx(2 * math.pi)


def test_annulus_points_and_uniform_radius():
    disk = Disk(2.0, inner_radius=1.0)
    points = draw(disk)
    radius = points[:, [0, 2]].norm(dim=1)
    assert bool((points[:, 1] == 0).all())
    assert bool(((radius >= 1.0 - 1e-12) & (radius <= 2.0 + 1e-12)).all())
    # Area between radius 1 and 1.5 over the area between 1 and 2: (2.25 - 1) / (4 - 1).
    assert_fraction(radius < 1.5, 1.25 / 3)
    assert disk.area() == pytest.approx(3 * math.pi)


@pytest.mark.parametrize(("bottom", "top"), [(0.5, 0.5), (1.0, 0.0), (0.0, 1.0), (0.3, 0.9)])
def test_tube_points_on_the_frustum_with_area_weighted_heights(bottom, top):
    height = 2.0
    tube = Tube(bottom, top, height)
    points = draw(tube)
    t = points[:, 1] / height
    assert bool(((t >= 0) & (t <= 1)).all())
    radius = points[:, [0, 2]].norm(dim=1)
    assert torch.allclose(radius, bottom + (top - bottom) * t, atol=1e-9)
    # The lower half's share of the lateral area: ∫₀^½ r(t) dt / ∫₀¹ r(t) dt.
    mid = (bottom + top) / 2
    expected = (bottom + mid) / 2 * 0.5 / ((bottom + top) / 2)
    assert_fraction(t < 0.5, expected)
    slant = math.hypot(height, bottom - top)
    assert tube.area() == pytest.approx(math.pi * (bottom + top) * slant)


def test_torus_points_on_the_torus_with_more_on_the_outside():
    big, small = 1.0, 0.4
    points = draw(Torus(big, small))
    ring = points[:, [0, 2]].norm(dim=1)
    assert torch.allclose(
        (ring - big) ** 2 + points[:, 1] ** 2, torch.full((COUNT,), small**2, dtype=torch.float64)
    )
    # Outer half of the tube (cos φ > 0): ∫ (R + r cos φ) dφ over (-π/2, π/2) / (2πR).
    assert_fraction(ring > big, (math.pi * big + 2 * small) / (2 * math.pi * big))
    assert Torus(big, small).area() == pytest.approx(4 * math.pi**2 * big * small)
    with pytest.raises(ValueError, match="minor_radius < major_radius"):
        Torus(0.5, 0.5)


def test_triangle_points_inside_and_uniform():
    a, b, c = (0.0, 0.0, 0.0), (2.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    points = draw(Triangle(a, b, c))
    x, y = points[:, 0], points[:, 1]
    assert bool((points[:, 2] == 0).all())
    assert bool(((x >= -1e-12) & (y >= -1e-12) & (x / 2 + y <= 1 + 1e-12)).all())
    # The corner triangle cut off by the midpoints holds a quarter of the area.
    assert_fraction(x / 2 + y < 0.5, 0.25)
    assert Triangle(a, b, c).area() == pytest.approx(1.0)


def test_parallelogram_points_inside_and_uniform():
    surface = Parallelogram((1.0, 1.0, 1.0), (2.0, 0.0, 0.0), (1.0, 0.0, 1.0))
    points = draw(surface) - torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    t = points[:, 2]  # the coefficient of edge_v
    s = (points[:, 0] - t) / 2
    assert bool((points[:, 1].abs() < 1e-12).all())
    assert bool(((s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)).all())
    assert_fraction(s < 0.3, 0.3)
    assert surface.area() == pytest.approx(2.0)


def test_box_samples_each_face_in_proportion_to_its_area():
    size = (1.0, 2.0, 3.0)
    points = sample_surfaces(box((0.0, 0.0, 0.0), size), COUNT, torch.Generator().manual_seed(0))
    total = 2 * (1 * 2 + 2 * 3 + 1 * 3)
    for axis, (other1, other2) in enumerate([(1, 2), (0, 2), (0, 1)]):
        on_faces = (points[:, axis].abs() - size[axis] / 2).abs() < 1e-12
        assert_fraction(on_faces, 2 * size[other1] * size[other2] / total)
    half = torch.tensor(size, dtype=torch.float64) / 2
    assert bool((points.abs() <= half + 1e-12).all())


def test_cylinder_caps_get_their_area_share():
    radius, height = 0.5, 1.0
    parts = cylinder(radius, height, base=(0.0, 1.0, 0.0))
    points = sample_surfaces(parts, COUNT, torch.Generator().manual_seed(0))
    caps = (points[:, 1] == 1.0) | (points[:, 1] == 2.0)
    cap_area = 2 * math.pi * radius**2
    assert_fraction(caps, cap_area / (cap_area + 2 * math.pi * radius * height))


def test_placed_rotates_then_moves_and_keeps_the_area():
    tube = Tube(0.1, 0.1, 1.0)
    placed = Placed(tube, offset=(0.0, 2.0, 0.0), rotation=Y_TO_X)
    points = draw(placed, 500)
    assert placed.area() == tube.area()
    assert bool(((points[:, 0] >= 0) & (points[:, 0] <= 1)).all())  # the axis now runs along x
    assert torch.allclose(
        (points[:, 1:] - torch.tensor([2.0, 0.0], dtype=torch.float64)).norm(dim=1),
        torch.full((500,), 0.1, dtype=torch.float64),
    )
    flipped = draw(Placed(Sphere(1.0, upper_half=True), rotation=FLIP_Y), 500)
    assert bool((flipped[:, 1] <= 0).all())


def test_sampling_is_repeatable_and_validated():
    parts = [Sphere(1.0), Disk(1.0)]
    first = sample_surfaces(parts, 100, torch.Generator().manual_seed(5))
    assert torch.equal(first, sample_surfaces(parts, 100, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, sample_surfaces(parts, 100, torch.Generator().manual_seed(6)))
    with pytest.raises(ValueError, match="at least one surface"):
        sample_surfaces([], 10, torch.Generator())
