"""The classes of the procedural shapes dataset: primitives and furniture-like composites.

Each class is a builder that draws its own proportions from a generator (so no two instances are
identical) and returns the shape's surfaces, upright (y up), standing on the floor y = 0, about one
unit across. Pose, scale, noise and the scan-like corruptions are applied later, by the dataset.

Example:
    >>> import torch
    >>> from point_peft.data.primitives import sample_surfaces
    >>> surfaces = SHAPE_BUILDERS["chair"](torch.Generator().manual_seed(0))
    >>> sample_surfaces(surfaces, 2048, torch.Generator().manual_seed(1)).shape
    torch.Size([2048, 3])
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from point_peft.data.primitives import (
    FLIP_Y,
    Y_TO_X,
    Y_TO_Z,
    Disk,
    Parallelogram,
    Placed,
    Sphere,
    Surface,
    Torus,
    Triangle,
    Tube,
    box,
    cylinder,
)

Builder = Callable[[torch.Generator], list[Surface]]


def _u(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def sphere(g: torch.Generator) -> list[Surface]:
    radius = _u(g, 0.4, 0.5)
    return [Placed(Sphere(radius), (0.0, radius, 0.0))]


def box_shape(g: torch.Generator) -> list[Surface]:
    size = (_u(g, 0.6, 1.0), _u(g, 0.6, 1.0), _u(g, 0.6, 1.0))
    return box((0.0, size[1] / 2, 0.0), size)


def cylinder_shape(g: torch.Generator) -> list[Surface]:
    return cylinder(_u(g, 0.25, 0.4), _u(g, 0.8, 1.2))


def cone(g: torch.Generator) -> list[Surface]:
    radius = _u(g, 0.35, 0.5)
    return [Tube(radius, 0.0, _u(g, 0.8, 1.1)), Disk(radius)]


def torus(g: torch.Generator) -> list[Surface]:
    minor = _u(g, 0.08, 0.15)
    return [Placed(Torus(_u(g, 0.35, 0.45), minor), (0.0, minor, 0.0))]


def pyramid(g: torch.Generator) -> list[Surface]:
    half, height = _u(g, 0.35, 0.5), _u(g, 0.6, 1.0)
    corners = [(-half, 0.0, -half), (half, 0.0, -half), (half, 0.0, half), (-half, 0.0, half)]
    apex = (0.0, height, 0.0)
    sides: list[Surface] = [Triangle(corners[i], corners[(i + 1) % 4], apex) for i in range(4)]
    return [*sides, Parallelogram(corners[0], (2 * half, 0.0, 0.0), (0.0, 0.0, 2 * half))]


def capsule(g: torch.Generator) -> list[Surface]:
    radius, length = _u(g, 0.2, 0.3), _u(g, 0.5, 0.8)
    return [
        Placed(Sphere(radius, upper_half=True), (0.0, radius + length, 0.0)),
        Placed(Tube(radius, radius, length), (0.0, radius, 0.0)),
        Placed(Sphere(radius, upper_half=True), (0.0, radius, 0.0), FLIP_Y),
    ]


def bowl(g: torch.Generator) -> list[Surface]:
    radius = _u(g, 0.45, 0.55)  # an open half sphere, opening up, plus a small foot ring
    return [
        Placed(Sphere(radius, upper_half=True), (0.0, radius, 0.0), FLIP_Y),
        Placed(Disk(radius * 0.35, radius * 0.25), (0.0, 0.0, 0.0)),
    ]


def _legs(
    width: float, depth: float, height: float, thickness: float, inset: float
) -> list[Surface]:
    legs: list[Surface] = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            x = sx * (width / 2 - inset - thickness / 2)
            z = sz * (depth / 2 - inset - thickness / 2)
            legs += box((x, height / 2, z), (thickness, height, thickness))
    return legs


def table(g: torch.Generator) -> list[Surface]:
    width, depth, height = _u(g, 0.9, 1.2), _u(g, 0.6, 0.9), _u(g, 0.6, 0.8)
    top = _u(g, 0.04, 0.07)
    legs = _legs(width, depth, height - top, _u(g, 0.05, 0.08), _u(g, 0.0, 0.06))
    return [*box((0.0, height - top / 2, 0.0), (width, top, depth)), *legs]


def chair(g: torch.Generator) -> list[Surface]:
    width, depth, seat = _u(g, 0.45, 0.6), _u(g, 0.45, 0.6), _u(g, 0.4, 0.5)
    slab, back = 0.05, _u(g, 0.45, 0.6)
    legs = _legs(width, depth, seat - slab, 0.05, 0.0)
    seat_box = box((0.0, seat - slab / 2, 0.0), (width, slab, depth))
    back_box = box((0.0, seat + back / 2, -depth / 2 + slab / 2), (width, back, slab))
    return [*seat_box, *back_box, *legs]


def lamp(g: torch.Generator) -> list[Surface]:
    base, pole = _u(g, 0.18, 0.25), _u(g, 0.8, 1.1)
    shade_bottom, shade_top, shade_height = _u(g, 0.22, 0.3), _u(g, 0.1, 0.15), _u(g, 0.2, 0.3)
    shade_start = pole - shade_height * 0.6
    return [
        *cylinder(base, 0.04),
        *cylinder(0.02, pole, base=(0.0, 0.04, 0.0), caps=False),
        Placed(Tube(shade_bottom, shade_top, shade_height), (0.0, shade_start, 0.0)),
    ]


def mug(g: torch.Generator) -> list[Surface]:
    radius, height = _u(g, 0.25, 0.32), _u(g, 0.55, 0.75)
    handle = _u(g, 0.13, 0.17)
    return [
        Tube(radius, radius, height),  # open at the top
        Disk(radius),
        # A torus standing in the x-y plane, its inner half hidden inside the mug's wall.
        Placed(Torus(handle, 0.035), (radius + handle * 0.6, height / 2, 0.0), Y_TO_Z),
    ]


def dumbbell(g: torch.Generator) -> list[Surface]:
    weight, length = _u(g, 0.16, 0.22), _u(g, 0.7, 0.9)
    center_y = weight
    return [
        Placed(Tube(0.04, 0.04, length), (-length / 2, center_y, 0.0), Y_TO_X),
        Placed(Sphere(weight), (-length / 2, center_y, 0.0)),
        Placed(Sphere(weight), (length / 2, center_y, 0.0)),
    ]


def airplane(g: torch.Generator) -> list[Surface]:
    length, radius = _u(g, 1.1, 1.3), _u(g, 0.06, 0.09)
    span, chord = _u(g, 1.0, 1.3), _u(g, 0.18, 0.28)
    y = radius  # the fuselage rests on the floor
    tail_x = -length / 2 + 0.1
    return [
        Placed(Tube(radius, radius, length), (-length / 2, y, 0.0), Y_TO_X),
        Placed(Sphere(radius), (length / 2, y, 0.0)),  # nose
        *box((0.05, y, 0.0), (chord, 0.02, span)),  # wings
        *box((tail_x, y, 0.0), (0.12, 0.015, span * 0.35)),  # horizontal stabiliser
        *box((tail_x, y + 0.12, 0.0), (0.14, 0.24, 0.015)),  # fin
    ]


def bookshelf(g: torch.Generator) -> list[Surface]:
    width, height, depth = _u(g, 0.6, 0.9), _u(g, 1.0, 1.4), _u(g, 0.25, 0.35)
    panel = 0.03
    shelves = int(torch.randint(2, 5, (), generator=g))
    parts = [
        *box((0.0, height / 2, -depth / 2 + panel / 2), (width, height, panel)),  # back
        *box((-width / 2 + panel / 2, height / 2, 0.0), (panel, height, depth)),  # sides
        *box((width / 2 - panel / 2, height / 2, 0.0), (panel, height, depth)),
    ]
    for level in range(shelves + 2):  # bottom, top and the shelves between
        y = panel / 2 + level * (height - panel) / (shelves + 1)
        parts += box((0.0, y, 0.0), (width - 2 * panel, panel, depth))
    return parts


SHAPE_BUILDERS: dict[str, Builder] = {
    "sphere": sphere,
    "box": box_shape,
    "cylinder": cylinder_shape,
    "cone": cone,
    "torus": torus,
    "pyramid": pyramid,
    "capsule": capsule,
    "bowl": bowl,
    "table": table,
    "chair": chair,
    "lamp": lamp,
    "mug": mug,
    "dumbbell": dumbbell,
    "airplane": airplane,
    "bookshelf": bookshelf,
}
PROCEDURAL_CLASSES: tuple[str, ...] = tuple(SHAPE_BUILDERS)
