"""A small VRML 2.0 (VRML97) reader: enough for the 3D models that ship with KiCad.

What KiCad's ``.wrl`` files hold (all 6,227 files of Debian's ``kicad-packages3d`` 6.0.10 were
surveyed): a flat list of ``Shape { appearance ... geometry IndexedFaceSet { coordIndex [...]
coord Coordinate { point [...] } } }``, materials shared through ``DEF``/``USE``; three files
exported by other tools nest ``Group``, ``Transform`` and ``Switch`` nodes, reuse ``Coordinate``
nodes by ``USE`` and add ``IndexedLineSet``, ``PointSet`` and ``NavigationInfo``. 1,578 files have
CRLF line ends.

So this reader parses the generic node syntax (any node type, ``DEF``/``USE``, ``ROUTE``, comments,
commas as whitespace) and then walks the scene for surfaces:

- ``Transform`` (translation, rotation, scale, scaleOrientation, center, nested), ``Group``,
  ``Anchor``, ``Billboard``, ``Collision`` (their ``children``), ``Switch`` (the ``whichChoice``
  child), ``LOD`` (its first, most detailed, level);
- ``Shape`` whose geometry is an ``IndexedFaceSet``: polygons of ``coordIndex`` (separated by -1)
  are fan-triangulated and moved into world coordinates.

Other geometry (lines, points, primitives such as ``Box``, ``Inline`` files) has no surface here
and is skipped. ``PROTO``/``EXTERNPROTO`` and VRML 1.0 are refused with a clear error. Big numeric
arrays take a fast path (one numpy conversion per array): KiCad files parse at 5-18 MB per CPU
second (files of many small shapes, like pin headers, are the slow end). All 6,227 models of
kicad-packages3d 6.0.10 read and sample without an error.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np

from point_peft.corpora._vrml_syntax import Node, parse_nodes
from point_peft.corpora.mesh import MeshFormatError, TriangleMesh, fan_triangulate

__all__ = [
    "Node",
    "parse_nodes",
    "parse_vrml",
    "read_vrml",
    "rotation_matrix",
    "scene_mesh",
    "transform_matrix",
]

_GROUPS = {"Group", "Transform", "Anchor", "Billboard", "Collision"}
_IDENTITY = np.eye(4)


def read_vrml(path: str | os.PathLike) -> TriangleMesh:
    """All surfaces (``IndexedFaceSet``) of a VRML 2.0 file, in world coordinates, as one mesh.

    Gzip-compressed files (``.wrz``, or ``.wrl.gz``) are read transparently.

    Raises:
        MeshFormatError: the file is not VRML 2.0, is malformed (the message names the line), or
            holds no surface.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return parse_vrml(data.decode("utf-8", errors="replace"), source=str(path))


def parse_vrml(text: str, source: str = "<string>") -> TriangleMesh:
    """Parse the text of a VRML 2.0 file into one triangle mesh (see :func:`read_vrml`).

    Example:
        >>> mesh = parse_vrml('''#VRML V2.0 utf8
        ... Transform { translation 0 0 1  children [
        ...   Shape { geometry IndexedFaceSet {
        ...     coord Coordinate { point [0 0 0, 1 0 0, 1 1 0, 0 1 0] }
        ...     coordIndex [0 1 2 3 -1] } } ] }''')
        >>> mesh.triangles.tolist()
        [[0, 1, 2], [0, 2, 3]]
        >>> mesh.vertices[:, 2].tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    return scene_mesh(parse_nodes(text, source), source)


def scene_mesh(nodes: list[Node], source: str = "<string>") -> TriangleMesh:
    """Walk parsed nodes and gather every ``IndexedFaceSet`` surface into one world-space mesh."""
    parts, skipped = [], []
    for node in nodes:
        _collect(node, np.eye(4), parts, skipped, source)
    offsets = np.cumsum([0] + [len(vertices) for vertices, _ in parts])
    mesh = TriangleMesh(
        np.concatenate([vertices for vertices, _ in parts] or [np.zeros((0, 3))]),
        np.concatenate(
            [triangles + offset for (_, triangles), offset in zip(parts, offsets, strict=False)]
            or [np.zeros((0, 3), dtype=np.int64)]
        ),
    )
    if mesh.num_triangles == 0:
        note = f" (skipped geometry: {', '.join(sorted(set(skipped)))})" if skipped else ""
        raise MeshFormatError(source, None, f"no IndexedFaceSet with faces found{note}")
    return mesh


def _children(value) -> list[Node]:
    """An MFNode field may hold a list, or (as exporters write it) a single node without []."""
    if value is None:
        return []
    if isinstance(value, Node):
        return [value]
    return [item for item in value if isinstance(item, Node)]


def _collect(node: Node, matrix: np.ndarray, meshes: list, skipped: list, source: str) -> None:
    """Append (world vertices, triangles) of every surface under ``node`` to ``meshes``."""
    if node.type in _GROUPS:
        if node.type == "Transform":
            try:
                matrix = matrix @ transform_matrix(node.fields)
            except ValueError as error:
                raise MeshFormatError(source, None, str(error)) from None
        for child in _children(node.fields.get("children")):
            _collect(child, matrix, meshes, skipped, source)
    elif node.type == "Switch":
        choices = _children(node.fields.get("choice"))
        which = int(_scalar(node.fields.get("whichChoice"), -1))
        if 0 <= which < len(choices):
            _collect(choices[which], matrix, meshes, skipped, source)
    elif node.type == "LOD":
        levels = _children(node.fields.get("level"))
        if levels:
            _collect(levels[0], matrix, meshes, skipped, source)
    elif node.type == "Shape":
        geometry = node.fields.get("geometry")
        if isinstance(geometry, Node) and geometry.type == "IndexedFaceSet":
            face_set = _face_set(geometry, source)
            if face_set is not None:
                vertices, triangles = face_set
                if not (matrix == _IDENTITY).all():
                    vertices = vertices @ matrix[:3, :3].T + matrix[:3, 3]
                meshes.append((vertices, triangles))
        elif isinstance(geometry, Node):
            skipped.append(geometry.type)
    elif node.type == "Inline":
        skipped.append("Inline")


def _face_set(node: Node, source: str) -> tuple[np.ndarray, np.ndarray] | None:
    coordinate = node.fields.get("coord")
    index = np.asarray(node.fields.get("coordIndex", []), dtype=np.float64).reshape(-1)
    if not isinstance(coordinate, Node) or index.size == 0:
        return None  # a face set without coordinates or faces has no surface
    point = np.asarray(coordinate.fields.get("point", []), dtype=np.float64).reshape(-1)
    if point.size % 3:
        raise MeshFormatError(
            source, None, f"a Coordinate point array has {point.size} numbers, not a multiple of 3"
        )
    vertices = point.reshape(-1, 3)
    index = index.astype(np.int64)
    # Faces are runs between -1 separators; the last one may lack its trailing -1.
    if index[-1] != -1:
        index = np.append(index, -1)
    if index.size % 4 == 0 and (index[3::4] == -1).all():
        triangles = index.reshape(-1, 4)[:, :3]  # all triangles, as exporters write them
    else:
        separators = np.flatnonzero(index == -1)
        lengths = np.diff(np.concatenate([[-1], separators])) - 1
        triangles = fan_triangulate(index[index != -1], lengths)
    if triangles.size and (triangles.min() < 0 or triangles.max() >= len(vertices)):
        bad = triangles[(triangles < 0) | (triangles >= len(vertices))][0]
        raise MeshFormatError(
            source, None, f"coordIndex {int(bad)} is outside the {len(vertices)} points"
        )
    return vertices, triangles


def _scalar(value, default: float) -> float:
    if value is None:
        return default
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def _vector(fields: dict, name: str, default: tuple[float, ...]) -> np.ndarray:
    value = fields.get(name)
    if value is None:
        return np.array(default, dtype=np.float64)
    value = np.asarray(value, dtype=np.float64).reshape(-1)
    if value.shape != (len(default),):
        raise ValueError(f"Transform.{name} must have {len(default)} numbers, got {value.size}")
    return value


def rotation_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about ``axis`` (right-handed), from VRML's (x, y, z, angle).

    Example:
        >>> rotation_matrix(np.array([0, 0, 1, np.pi / 2])).round(6) @ [1, 0, 0]
        array([0., 1., 0.])
    """
    x, y, z, angle = (float(value) for value in axis_angle)
    norm = math.sqrt(x * x + y * y + z * z)
    if norm == 0.0:
        return np.eye(3)
    x, y, z = x / norm, y / norm, z / norm
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    # Rodrigues: R = I + sin(a) K + (1 - cos(a)) K^2.
    return np.eye(3) + math.sin(angle) * cross + (1.0 - math.cos(angle)) * (cross @ cross)


def transform_matrix(fields: dict) -> np.ndarray:
    """The 4x4 matrix of a VRML ``Transform``: ``T · C · R · SR · S · SR⁻¹ · C⁻¹``.

    Example:
        >>> m = transform_matrix(
        ...     {"translation": np.array([1.0, 0, 0]), "scale": np.array([2.0, 2, 2])}
        ... )
        >>> (m @ [1, 1, 1, 1]).tolist()
        [3.0, 2.0, 2.0, 1.0]
    """

    def homogeneous(linear=None, shift=None) -> np.ndarray:
        matrix = np.eye(4)
        if linear is not None:
            matrix[:3, :3] = linear
        if shift is not None:
            matrix[:3, 3] = shift
        return matrix

    translation = _vector(fields, "translation", (0.0, 0.0, 0.0))
    center = _vector(fields, "center", (0.0, 0.0, 0.0))
    rotation = rotation_matrix(_vector(fields, "rotation", (0.0, 0.0, 1.0, 0.0)))
    scale = np.diag(_vector(fields, "scale", (1.0, 1.0, 1.0)))
    orientation = rotation_matrix(_vector(fields, "scaleOrientation", (0.0, 0.0, 1.0, 0.0)))
    return (
        homogeneous(shift=translation)
        @ homogeneous(shift=center)
        @ homogeneous(rotation)
        @ homogeneous(orientation)
        @ homogeneous(scale)
        @ homogeneous(orientation.T)
        @ homogeneous(shift=-center)
    )
