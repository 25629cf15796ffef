"""Surfaces that sample points uniformly by area: the pieces the procedural shapes are built from.

Every surface knows its area and draws points uniformly over itself (equal density everywhere), so a
shape made of several surfaces samples uniformly too once its point budget is split in proportion to
the areas (:func:`sample_surfaces`). Canonical surfaces of revolution have their axis along y, which
is "up" in ScanObjectNN and ModelNet; :class:`Placed` rotates and moves any surface (area unchanged).
Points are float64; coordinates are plain tuples of floats.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> points = sample_surfaces([Sphere(0.5), Disk(1.0)], 1000, g)
    >>> points.shape, points.dtype
    (torch.Size([1000, 3]), torch.float64)
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from point_peft.data.geometry import rotate_points

Vector = tuple[float, float, float]
_DTYPE = torch.float64


def _rand(count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator, dtype=_DTYPE)


def _vector(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=_DTYPE)


class Surface(abc.ABC):
    """A surface with an area that can draw ``count`` uniformly distributed points (count, 3)."""

    @abc.abstractmethod
    def area(self) -> float:
        """Surface area."""

    @abc.abstractmethod
    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` points, uniform over the surface."""


@dataclass(frozen=True)
class Parallelogram(Surface):
    """The points ``origin + s * edge_u + t * edge_v`` for s, t in [0, 1]."""

    origin: Vector
    edge_u: Vector
    edge_v: Vector

    def area(self) -> float:
        return float(torch.linalg.cross(_vector(self.edge_u), _vector(self.edge_v)).norm())

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        s, t = _rand(count, generator)[:, None], _rand(count, generator)[:, None]
        return _vector(self.origin) + s * _vector(self.edge_u) + t * _vector(self.edge_v)


@dataclass(frozen=True)
class Triangle(Surface):
    """The triangle with corners ``a``, ``b``, ``c``."""

    a: Vector
    b: Vector
    c: Vector

    def area(self) -> float:
        a, b, c = _vector(self.a), _vector(self.b), _vector(self.c)
        return 0.5 * float(torch.linalg.cross(b - a, c - a).norm())

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        # Uniform barycentric coordinates: sqrt(u) spreads points evenly from corner a outwards.
        root = _rand(count, generator).sqrt()[:, None]
        v = _rand(count, generator)[:, None]
        a, b, c = _vector(self.a), _vector(self.b), _vector(self.c)
        return a * (1 - root) + b * root * (1 - v) + c * root * v


@dataclass(frozen=True)
class Sphere(Surface):
    """Sphere of ``radius`` centred at the origin; ``upper_half`` keeps the open half with y >= 0."""

    radius: float
    upper_half: bool = False

    def area(self) -> float:
        return (2.0 if self.upper_half else 4.0) * math.pi * self.radius**2

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        # Normalised Gaussian vectors are uniform on the sphere (the Gaussian is rotation invariant).
        directions = torch.randn(count, 3, generator=generator, dtype=_DTYPE)
        directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if self.upper_half:  # reflecting the lower half onto the upper keeps the density uniform
            directions[:, 1] = directions[:, 1].abs()
        return self.radius * directions


@dataclass(frozen=True)
class Disk(Surface):
    """Flat disk (annulus when ``inner_radius > 0``) in the plane y = 0, centred at the origin."""

    radius: float
    inner_radius: float = 0.0

    def area(self) -> float:
        return math.pi * (self.radius**2 - self.inner_radius**2)

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        # The area inside radius r grows as r², so r = sqrt(uniform in [inner², outer²]).
        inner2, outer2 = self.inner_radius**2, self.radius**2
        radius = (inner2 + (outer2 - inner2) * _rand(count, generator)).sqrt()
        angle = 2 * math.pi * _rand(count, generator)
        zeros = torch.zeros(count, dtype=_DTYPE)
        return torch.stack([radius * angle.cos(), zeros, radius * angle.sin()], dim=1)


@dataclass(frozen=True)
class Tube(Surface):
    """Side of a frustum around the y axis from y = 0 (``bottom_radius``) to y = ``height``
    (``top_radius``): a cylinder when the radii are equal, a cone when one of them is 0. Open ends."""

    bottom_radius: float
    top_radius: float
    height: float

    def area(self) -> float:
        slant = math.hypot(self.height, self.bottom_radius - self.top_radius)
        return math.pi * (self.bottom_radius + self.top_radius) * slant

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        # The ring at fraction t of the height has circumference ∝ r(t) = r0 + (r1 - r0) t, so t has
        # density ∝ r(t). Inverting its CDF gives t = u (r0 + r1) / (r0 + sqrt(r0² + u (r1² - r0²))),
        # a form that stays exact for a cylinder (r0 = r1) and for cones either way up.
        r0, r1 = self.bottom_radius, self.top_radius
        u = _rand(count, generator)
        denominator = r0 + (r0**2 + u * (r1**2 - r0**2)).clamp_min(0).sqrt()
        t = torch.where(denominator > 0, u * (r0 + r1) / denominator.clamp_min(1e-300), u)
        radius = r0 + (r1 - r0) * t
        angle = 2 * math.pi * _rand(count, generator)
        return torch.stack([radius * angle.cos(), self.height * t, radius * angle.sin()], dim=1)


@dataclass(frozen=True)
class Torus(Surface):
    """Torus around the y axis: tube of ``minor_radius`` around a circle of ``major_radius`` in y = 0."""

    major_radius: float
    minor_radius: float

    def __post_init__(self) -> None:
        if not 0 < self.minor_radius < self.major_radius:
            raise ValueError(
                f"Torus needs 0 < minor_radius < major_radius, got {self.minor_radius},"
                f" {self.major_radius}"
            )

    def area(self) -> float:
        return 4 * math.pi**2 * self.major_radius * self.minor_radius

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        # The outer side of the tube is larger than the inner side: the tube angle φ has density
        # ∝ R + r cos φ. Rejection sampling against its maximum R + r accepts at least
        # (R - r) / (R + r) of the proposals; draw in rounds until there are enough.
        big, small = self.major_radius, self.minor_radius
        accepted: list[torch.Tensor] = []
        total = 0
        while total < count:
            proposals = 2 * math.pi * _rand(2 * count + 16, generator)
            keep = (
                _rand(proposals.numel(), generator) * (big + small) <= big + small * proposals.cos()
            )
            accepted.append(proposals[keep])
            total += int(keep.sum())
        tube_angle = torch.cat(accepted)[:count]
        ring_angle = 2 * math.pi * _rand(count, generator)
        distance = big + small * tube_angle.cos()
        return torch.stack(
            [distance * ring_angle.cos(), small * tube_angle.sin(), distance * ring_angle.sin()],
            dim=1,
        )


@dataclass(frozen=True)
class Placed(Surface):
    """``surface`` rotated by ``rotation`` (3×3, acting on column vectors) then moved by ``offset``."""

    surface: Surface
    offset: Vector = (0.0, 0.0, 0.0)
    rotation: tuple[Vector, Vector, Vector] | None = None

    def area(self) -> float:
        return self.surface.area()  # rigid motions keep areas

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        points = self.surface.sample(count, generator)
        if self.rotation is not None:
            points = rotate_points(points, _vector(self.rotation))
        return points + _vector(self.offset)


def sample_surfaces(
    surfaces: Sequence[Surface], count: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` points spread over ``surfaces`` uniformly by area (count, 3), float64.

    Each point picks its surface with probability proportional to the surface's area, so the
    density is the same on every part of a composite shape.
    """
    if not surfaces:
        raise ValueError("sample_surfaces needs at least one surface")
    areas = torch.tensor([surface.area() for surface in surfaces], dtype=_DTYPE)
    if not bool((areas > 0).any()):
        raise ValueError("all surfaces have zero area")
    choices = torch.multinomial(areas, count, replacement=True, generator=generator)
    counts = torch.bincount(choices, minlength=len(surfaces)).tolist()
    parts = [
        surface.sample(part_count, generator)
        for surface, part_count in zip(surfaces, counts, strict=True)
        if part_count > 0
    ]
    return torch.cat(parts) if parts else torch.empty(0, 3, dtype=_DTYPE)


# Rotations (for Placed) that turn the canonical y axis of a surface of revolution elsewhere.
Y_TO_X = ((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0))  # -90° about z: y → x
Y_TO_Z = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))  # +90° about x: y → z
FLIP_Y = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))  # 180° about x: y → -y


# -- solids made of the surfaces above -------------------------------------------------------------


def box(center: Sequence[float], size: Sequence[float]) -> list[Surface]:
    """The six faces of an axis-aligned box (closed surface)."""
    (cx, cy, cz), (sx, sy, sz) = center, size
    x0, y0, z0 = cx - sx / 2, cy - sy / 2, cz - sz / 2
    faces: list[Surface] = []
    ex, ey, ez = (sx, 0.0, 0.0), (0.0, sy, 0.0), (0.0, 0.0, sz)
    for origin, u, v in (
        ((x0, y0, z0), ey, ez),  # x = x0
        ((x0 + sx, y0, z0), ey, ez),  # x = x1
        ((x0, y0, z0), ex, ez),  # y = y0
        ((x0, y0 + sy, z0), ex, ez),  # y = y1
        ((x0, y0, z0), ex, ey),  # z = z0
        ((x0, y0, z0 + sz), ex, ey),  # z = z1
    ):
        faces.append(Parallelogram(origin, u, v))
    return faces


def cylinder(
    radius: float, height: float, *, base: Vector = (0.0, 0.0, 0.0), caps: bool = True
) -> list[Surface]:
    """A vertical cylinder standing on ``base``, with both end disks when ``caps``."""
    surfaces: list[Surface] = [Placed(Tube(radius, radius, height), base)]
    if caps:
        x, y, z = base
        surfaces += [Placed(Disk(radius), base), Placed(Disk(radius), (x, y + height, z))]
    return surfaces
