"""Real point-cloud corpora from Debian packages: CGAL's demo meshes and KiCad's 3D models.

No ModelNet or ShapeNet can be downloaded in offline environments, but Debian mirrors can be
reached: ``kicad-packages3d`` holds 6,227 CAD models of electronic parts in 90 labelled categories
(a real, ModelNet-like classification task) and ``libcgal-demo`` 138 real meshes for pre-training.
This subpackage fetches them (``apt-get download``, no root, nothing installed), reads their formats
(:mod:`~point_peft.corpora.off`, :mod:`~point_peft.corpora.vrml`), samples surfaces to points
(:mod:`~point_peft.corpora.sampling`) and caches everything under ``$POINT_PEFT_CACHE`` or
``~/.cache/point-peft``. Fetch once with ``python -m point_peft.corpora fetch``.

Example:
    >>> from point_peft.corpora import parse_off, sample_surface, surface_area
    >>> cube = parse_off('''OFF
    ... 8 6 0
    ... 0 0 0
    ... 1 0 0
    ... 1 1 0
    ... 0 1 0
    ... 0 0 1
    ... 1 0 1
    ... 1 1 1
    ... 0 1 1
    ... 4 0 3 2 1
    ... 4 4 5 6 7
    ... 4 0 1 5 4
    ... 4 1 2 6 5
    ... 4 2 3 7 6
    ... 4 3 0 4 7''')
    >>> points = sample_surface(cube, 2048, seed=0)
    >>> points.shape, round(surface_area(cube), 6)
    ((2048, 3), 6.0)
"""

from __future__ import annotations

from point_peft.corpora._cache import CACHE_ENV, resolve_cache_dir
from point_peft.corpora.datasets import (
    DEFAULT_KICAD_CATEGORIES,
    SAMPLER_VERSION,
    CgalMeshes,
    KiCadCategories,
    sample_cloud,
    split_of,
)
from point_peft.corpora.debian import (
    DebianFetchError,
    cgal_meshes,
    extract_debian_files,
    fetch_debian_package,
    kicad_categories,
    kicad_models,
)
from point_peft.corpora.mesh import MeshFormatError, TriangleMesh, fan_triangulate
from point_peft.corpora.off import parse_off, read_off
from point_peft.corpora.sampling import sample_surface, surface_area, triangle_areas
from point_peft.corpora.vrml import parse_vrml, read_vrml

__all__ = [
    "CACHE_ENV",
    "DEFAULT_KICAD_CATEGORIES",
    "SAMPLER_VERSION",
    "CgalMeshes",
    "DebianFetchError",
    "KiCadCategories",
    "MeshFormatError",
    "TriangleMesh",
    "cgal_meshes",
    "extract_debian_files",
    "fan_triangulate",
    "fetch_debian_package",
    "kicad_categories",
    "kicad_models",
    "parse_off",
    "parse_vrml",
    "read_off",
    "read_vrml",
    "resolve_cache_dir",
    "sample_cloud",
    "sample_surface",
    "split_of",
    "surface_area",
    "triangle_areas",
]
