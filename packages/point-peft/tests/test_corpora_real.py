"""The readers and datasets on the real Debian corpora, when they are in the cache (slow).

Fetch them first with ``python -m point_peft.corpora fetch`` (CGAL meshes and the default KiCad
categories; ``--kicad-categories Button_Switch_SMD`` adds the file with nested transforms). Without
the cache these tests are skipped, saying so.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from point_peft.corpora import (
    DEFAULT_KICAD_CATEGORIES,
    CgalMeshes,
    KiCadCategories,
    read_off,
    read_vrml,
    resolve_cache_dir,
    surface_area,
)

pytestmark = pytest.mark.slow

CACHE = resolve_cache_dir()
FETCH = "run: python -m point_peft.corpora fetch"
_ARRAY = r"\s*\[([^\]]*)\]"


def kicad_folder(category: str):
    folder = CACHE / "kicad" / f"{category}.3dshapes"
    if not folder.is_dir():
        pytest.skip(f"KiCad category {category} is not in {CACHE}; {FETCH} --kicad-categories ...")
    return folder


def numbers(text: str) -> np.ndarray:
    return np.array(text.replace(",", " ").split(), dtype=np.float64)


@pytest.mark.parametrize("category", DEFAULT_KICAD_CATEGORIES)
def test_kicad_files_match_a_regex_reading_of_their_arrays(category):
    """StepUp exports hold (coordIndex, point) pairs, one per Shape: read those arrays by regex."""
    files = sorted(kicad_folder(category).glob("*.wrl"))
    checked = 0
    for path in files[:: max(1, len(files) // 8)]:
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(r"\b(Transform|USE o\d|IndexedLineSet)\b", text):
            continue  # not the plain StepUp layout: covered by the test below
        indices = [numbers(match) for match in re.findall(r"coordIndex" + _ARRAY, text)]
        points = [numbers(match).reshape(-1, 3) for match in re.findall(r"point" + _ARRAY, text)]
        offsets = np.cumsum([0] + [len(block) for block in points[:-1]])
        expected = np.concatenate(
            [
                block.astype(np.int64).reshape(-1, 4)[:, :3] + offset
                for block, offset in zip(indices, offsets, strict=True)
            ]
        )
        mesh = read_vrml(path)
        np.testing.assert_array_equal(mesh.vertices, np.concatenate(points))
        np.testing.assert_array_equal(mesh.triangles, expected)
        assert surface_area(mesh) > 0
        checked += 1
    assert checked >= 4


def test_kicad_file_with_groups_transforms_and_switches():
    path = kicad_folder("Button_Switch_SMD") / "SW_SPST_FSMSM.wrl"
    text = path.read_text()
    expected_triangles = 0
    for start in re.finditer(r"IndexedFaceSet\s*\{", text):
        indices = numbers(re.search(r"coordIndex" + _ARRAY, text[start.end() :]).group(1))
        expected_triangles += int((indices == -1).sum())
    mesh = read_vrml(path)
    # Each Switch shows its choice 0, which holds the faces that later choices USE again.
    assert mesh.num_triangles == expected_triangles == 1616
    # The body is turned up by its rotation (-1 0 0, 270°) so that it sits on the board (z >= 0),
    # and the pins are moved by their translations: untransformed, z reaches -0.197 and x 4.18.
    assert mesh.vertices[:, 2].min() == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(mesh.vertices.max(axis=0), [1.77165, 0.689, 0.7874], atol=1e-3)


def test_every_cgal_file_reads_with_the_counts_of_its_header():
    folder = CACHE / "cgal"
    if not folder.is_dir():
        pytest.skip(f"the CGAL meshes are not in {CACHE}; {FETCH} --cgal")
    files = sorted(folder.rglob("*.off"))
    assert len(files) == 139
    with_surface = 0
    for path in files:
        lines = (line.split("#")[0].split() for line in path.read_text().splitlines())
        first, second = [line for line in lines if line][:2]
        counts = (first[1:] or second) if first[0].endswith("OFF") else first
        mesh = read_off(path)
        assert mesh.num_vertices == int(counts[0]), path.name
        assert mesh.num_triangles >= int(counts[1]) or int(counts[1]) == 0, path.name
        with_surface += surface_area(mesh) > 0
    assert with_surface == 138  # all but points_3/kitten.off, a point set


def test_default_kicad_task_and_cgal_pretraining_set_load_completely():
    for category in DEFAULT_KICAD_CATEGORIES:
        kicad_folder(category)
    train = KiCadCategories("train", progress=False)
    test = KiCadCategories("test", progress=False)
    total = sum(len(list(kicad_folder(name).glob("*.wrl"))) for name in DEFAULT_KICAD_CATEGORIES)
    assert len(train) + len(test) == total  # no model skipped
    assert set(train.labels) == set(test.labels) == set(range(len(DEFAULT_KICAD_CATEGORIES)))
    assert 0.15 < len(test) / total < 0.25
    radii = np.linalg.norm(train.points, axis=2).max(axis=1)
    np.testing.assert_allclose(radii, 1.0, rtol=1e-5)
    assert train[0]["points"].shape == (1024, 3)
    if not (CACHE / "cgal").is_dir():
        pytest.skip(f"the CGAL meshes are not in {CACHE}; {FETCH} --cgal")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "1 of 139 meshes skipped", UserWarning)  # the point set
        cgal = CgalMeshes(progress=False)
    assert len(cgal) == 138
    assert "kitten" not in cgal.class_names
