"""A cheap simulated depth scan: what turns a clean shape into a ScanObjectNN-like object.

Real scans (ScanObjectNN) differ from CAD samples (ModelNet) in four ways, each simulated here:

- **self-occlusion**: a sensor sees one side of an object. :func:`visible_mask` keeps the points
  nearest to the camera in each cell of an orthographic z-buffer (a fast stand-in for hidden point
  removal).
- **background**: the floor and neighbouring objects appear around the object
  (:func:`background_surfaces`).
- **occluders**: something between the sensor and the object hides part of it (a board, also from
  :func:`background_surfaces`; the z-buffer does the hiding).
- **imprecise boxes**: objects are cut out with a shifted bounding box, which drops object parts
  and lets background in (:func:`crop_mask`; ScanObjectNN's PB_T50 shifts boxes up to 50%).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from point_peft.data.primitives import Parallelogram, Placed, Sphere, Surface, box, cylinder


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / vector.norm().clamp_min(1e-12)


def view_basis(view_direction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An orthonormal basis (image u, image v, toward the camera) for a viewing direction."""
    toward = _unit(view_direction.to(torch.float64))
    helper = torch.zeros(3, dtype=torch.float64)
    helper[int(toward.abs().argmin())] = 1.0  # the axis least aligned with the view
    u = _unit(torch.linalg.cross(toward, helper))
    return u, torch.linalg.cross(toward, u), toward


def visible_mask(
    points: torch.Tensor,
    view_direction: torch.Tensor,
    *,
    resolution: int | None = None,
    depth_tolerance: float | None = None,
) -> torch.Tensor:
    """Which points (num_points, 3) an orthographic camera looking from ``view_direction`` sees.

    ``view_direction`` points from the scene toward the camera. Points are binned into a
    ``resolution`` × ``resolution`` grid on the image plane (default: about 12 points per cell). A
    point is visible when it lies within ``depth_tolerance`` (default: two cell widths, so that
    surfaces seen at a slant survive) of the nearest point of its own cell, and within twice that of
    the nearest point of the 3 × 3 cells around it; the second test hides far-side points in cells
    at a silhouette that happen to hold no near-side point.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> ball = Sphere(1.0).sample(4000, g)
        >>> seen = visible_mask(ball, torch.tensor([1.0, 0.0, 0.0]))
        >>> bool((ball[seen, 0] > -0.2).all())  # only the half facing +x (and its rim)
        True
    """
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (num_points, 3), got {tuple(points.shape)}")
    count = points.shape[0]
    if count == 0:
        return torch.zeros(0, dtype=torch.bool)
    if resolution is None:
        resolution = max(4, round(math.sqrt(count / 12)))
    u_axis, v_axis, toward = view_basis(view_direction)
    coordinates = points.to(torch.float64)
    # Elementwise dot products: see geometry.rotate_points on BLAS at this size.
    u, v, height = ((coordinates * axis).sum(dim=1) for axis in (u_axis, v_axis, toward))
    extent = max(float(u.max() - u.min()), float(v.max() - v.min()), 1e-9)
    cell = extent / resolution
    column = ((u - u.min()) / cell).long().clamp_(max=resolution - 1)
    row = ((v - v.min()) / cell).long().clamp_(max=resolution - 1)
    pixel = column * resolution + row
    nearest = torch.full((resolution * resolution,), -math.inf, dtype=torch.float64)
    nearest = nearest.scatter_reduce(0, pixel, height, reduce="amax")
    # max_pool2d pads with -inf, so border cells only see their real neighbours.
    around = F.max_pool2d(nearest.view(1, 1, resolution, resolution), 3, stride=1, padding=1)
    tolerance = 2 * cell if depth_tolerance is None else depth_tolerance
    return (height >= nearest[pixel] - tolerance) & (
        height >= around.view(-1)[pixel] - 2 * tolerance
    )


def random_view_direction(
    generator: torch.Generator, *, min_elevation: float = 10.0, max_elevation: float = 50.0
) -> torch.Tensor:
    """A unit vector toward a camera at a random azimuth, looking down by the elevation (degrees)."""
    azimuth = 2 * math.pi * float(torch.rand((), generator=generator, dtype=torch.float64))
    elevation = math.radians(
        min_elevation + (max_elevation - min_elevation) * float(torch.rand((), generator=generator))
    )
    return torch.tensor(
        [
            math.cos(elevation) * math.cos(azimuth),
            math.sin(elevation),
            math.cos(elevation) * math.sin(azimuth),
        ],
        dtype=torch.float64,
    )


def _u(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def background_surfaces(
    lower: torch.Tensor,
    upper: torch.Tensor,
    view_direction: torch.Tensor,
    generator: torch.Generator,
    *,
    occluder_probability: float = 0.5,
    max_clutter: int = 3,
) -> list[Surface]:
    """Floor, clutter objects and (sometimes) an occluding board around an object's bounding box.

    ``lower`` and ``upper`` are the object's bounding-box corners (y up, the object standing on
    y = lower[1]); ``view_direction`` points toward the camera, so the board goes on that side.
    """
    size = (upper - lower).clamp_min(1e-3)
    center = (lower + upper) / 2
    floor_y = float(lower[1])
    reach = float(size[[0, 2]].max())
    # A floor patch well beyond the box: the crop later decides how much of it stays.
    x0, z0 = float(center[0]) - reach, float(center[2]) - reach
    surfaces: list[Surface] = [
        Parallelogram((x0, floor_y, z0), (2 * reach, 0.0, 0.0), (0.0, 0.0, 2 * reach))
    ]
    clutter = int(torch.randint(0, max_clutter + 1, (), generator=generator))
    for _ in range(clutter):
        angle = _u(generator, 0.0, 2 * math.pi)
        distance = reach * _u(generator, 0.55, 0.9)
        x = float(center[0]) + distance * math.cos(angle)
        z = float(center[2]) + distance * math.sin(angle)
        extent = reach * _u(generator, 0.15, 0.4)
        kind = int(torch.randint(0, 3, (), generator=generator))
        if kind == 0:
            height = extent * _u(generator, 0.5, 2.0)
            surfaces += box((x, floor_y + height / 2, z), (extent, height, extent * 0.8))
        elif kind == 1:
            surfaces += cylinder(extent / 2, extent * _u(generator, 0.5, 2.0), base=(x, floor_y, z))
        else:
            surfaces.append(Placed(Sphere(extent / 2), (x, floor_y + extent / 2, z)))
    if float(torch.rand((), generator=generator)) < occluder_probability:
        toward = _unit(torch.tensor([float(view_direction[0]), 0.0, float(view_direction[2])]))
        side = torch.tensor([-float(toward[2]), 0.0, float(toward[0])], dtype=torch.float64)
        spot = center + toward * reach * 0.75 + side * reach * _u(generator, -0.5, 0.5)
        width, height = reach * _u(generator, 0.3, 0.7), float(size[1]) * _u(generator, 0.3, 0.8)
        # A thin board facing the camera: spanned by the horizontal `side` and the vertical.
        corner = spot - side * width / 2
        surfaces.append(
            Parallelogram(
                (float(corner[0]), floor_y, float(corner[2])),
                tuple((side * width).tolist()),
                (0.0, height, 0.0),
            )
        )
    return surfaces


def crop_mask(
    points: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    generator: torch.Generator,
    *,
    max_shift: float = 0.25,
    margin: float = 0.1,
) -> torch.Tensor:
    """Points inside the object's box, grown by ``margin`` and shifted horizontally by up to
    ``max_shift`` of its size (the floor below the object stays: the box reaches slightly under it).
    """
    size = (upper - lower).clamp_min(1e-3)
    shift = torch.zeros(3, dtype=torch.float64)
    shift[0] = _u(generator, -max_shift, max_shift) * float(size[0])
    shift[2] = _u(generator, -max_shift, max_shift) * float(size[2])
    low = lower - margin * size + shift
    high = upper + margin * size + shift
    return ((points >= low) & (points <= high)).all(dim=1)
