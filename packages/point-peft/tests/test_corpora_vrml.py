"""The VRML 2.0 reader on hand-written scenes: KiCad's layout, transforms, DEF/USE, Switch, errors."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

from point_peft.corpora import MeshFormatError, parse_vrml, read_vrml
from point_peft.corpora.vrml import parse_nodes, rotation_matrix, transform_matrix

HEADER = "#VRML V2.0 utf8\n"

# The layout of a real KiCad StepUp export: material-only Shapes that DEF materials, then one
# Shape per part with coordIndex before coord, commas between points, "creaseAngle", CRLF ends.
KICAD_LIKE = (
    "#VRML V2.0 utf8\r\n#kicad StepUp wrl exported\r\n\r\n"
    "Shape {\r\n\tappearance Appearance {material DEF PIN-01 Material {\r\n"
    "\t\tambientIntensity 0.271\r\n\t\tdiffuseColor 0.824 0.82 0.781\r\n"
    "\t\ttransparency 0.0\r\n\t\tshininess 0.7\r\n\t\t}\r\n\t}\r\n}\r\n"
    "Shape { geometry IndexedFaceSet \r\n"
    "{ creaseAngle 0.50 coordIndex [0,1,2,-1,0,2,3,-1]\r\n"
    "coord Coordinate { point [0.0 0.0 0.0,2.0 0.0 0.0,2.0 1.0 0.0,0.0 1.0 0.0]\r\n"
    "}}\r\nappearance Appearance{material USE PIN-01 }\r\n}\r\n"
    "Shape { geometry IndexedFaceSet \r\n"
    "{ creaseAngle 0.50 coordIndex [0,1,2,-1]\r\n"
    "coord Coordinate { point [0.0 0.0 1.0,1.0 0.0 1.0,0.0 1.0 1.0]\r\n"
    "}}\r\nappearance Appearance{material USE PIN-01 }\r\n}\r\n"
)


def face(points: str, index: str, prefix: str = "") -> str:
    return (
        f"Shape {{ geometry IndexedFaceSet {{ coord {prefix}Coordinate {{ point [{points}] }} "
        f"coordIndex [{index}] }} }}"
    )


TRIANGLE = face("1 0 0, 0 1 0, 0 0 0", "0 1 2 -1")


def test_kicad_layout_merges_the_shapes_and_skips_material_only_ones():
    mesh = parse_vrml(KICAD_LIKE)
    assert mesh.num_vertices == 7
    assert mesh.triangles.tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6]]
    assert mesh.vertices[2].tolist() == [2.0, 1.0, 0.0]
    assert mesh.vertices[4].tolist() == [0.0, 0.0, 1.0]


def test_polygons_are_fan_triangulated_and_the_last_minus_one_is_optional():
    mesh = parse_vrml(HEADER + face("0 0 0, 1 0 0, 1 1 0, 0 1 0, 0 0 1", "0 1 2 3 -1 0 1 4"))
    assert mesh.triangles.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 4]]


def test_rotation_matrix_against_known_rotations():
    quarter_z = rotation_matrix(np.array([0, 0, 2, math.pi / 2]))  # axis need not be unit
    np.testing.assert_allclose(quarter_z @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    # 120 degrees about (1, 1, 1) cycles the axes x -> y -> z -> x.
    cycle = rotation_matrix(np.array([1, 1, 1, 2 * math.pi / 3]))
    np.testing.assert_allclose(cycle, [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix(np.array([0, 0, 0, 1.0])), np.eye(3))


def test_transform_order_center_and_scale_orientation():
    # Rotation about a centre: (2, 0, 0) turned a quarter about z around (1, 0, 0) -> (1, 1, 0).
    about_center = transform_matrix(
        {"rotation": np.array([0, 0, 1, math.pi / 2]), "center": np.array([1.0, 0, 0])}
    )
    np.testing.assert_allclose(about_center @ [2, 0, 0, 1], [1, 1, 0, 1], atol=1e-12)
    # Scale 2 along x of a frame turned a quarter about z = scale 2 along the parent's y.
    oriented = transform_matrix(
        {"scale": np.array([2.0, 1, 1]), "scaleOrientation": np.array([0, 0, 1, math.pi / 2])}
    )
    np.testing.assert_allclose(oriented @ [0, 1, 0, 1], [0, 2, 0, 1], atol=1e-12)
    np.testing.assert_allclose(oriented @ [1, 0, 0, 1], [1, 0, 0, 1], atol=1e-12)
    # Scale before rotation before translation.
    full = transform_matrix(
        {
            "translation": np.array([0, 0, 5.0]),
            "rotation": np.array([0, 0, 1, math.pi / 2]),
            "scale": np.array([3.0, 1, 1]),
        }
    )
    np.testing.assert_allclose(full @ [1, 0, 0, 1], [0, 3, 5, 1], atol=1e-12)


def test_nested_transforms_apply_inner_first():
    text = (
        HEADER
        + "Transform { translation 10 0 0 children [ Transform { rotation 0 0 1 1.5707963267948966 "
        + "children [ "
        + TRIANGLE
        + " ] } ] }"
    )
    mesh = parse_vrml(text)
    np.testing.assert_allclose(
        mesh.vertices[0], [10, 1, 0], atol=1e-12
    )  # (1,0,0) -> (0,1,0) -> +10x
    np.testing.assert_allclose(mesh.vertices[1], [9, 0, 0], atol=1e-12)


def test_def_use_of_coordinates_and_of_whole_shapes_under_groups():
    text = (
        HEADER
        + "Group { children [ DEF tri "
        + face("1 0 0, 0 1 0, 0 0 0", "0 1 2", prefix="DEF points ")
        + " ] }\n"
        + "Transform { translation 0 0 1 children USE tri }\n"  # a single child without []
        + "Shape { geometry IndexedFaceSet { coord USE points coordIndex [2 1 0] } }\n"
    )
    mesh = parse_vrml(text)
    assert mesh.num_triangles == 3
    assert mesh.vertices[3:6, 2].tolist() == [1.0, 1.0, 1.0]  # the USEd shape, moved
    assert mesh.triangles[2].tolist() == [8, 7, 6]  # the USEd coordinates, new faces


def test_switch_keeps_only_its_chosen_child_and_lod_its_first_level():
    other = face("5 5 5, 6 5 5, 5 6 5", "0 1 2")
    chosen = parse_vrml(HEADER + f"Switch {{ whichChoice 1 choice [ {other} {TRIANGLE} ] }}")
    assert chosen.vertices[:, 0].max() == 1.0
    lod = parse_vrml(HEADER + f"LOD {{ level [ {TRIANGLE} {other} ] }}")
    assert lod.num_triangles == 1
    assert lod.vertices.max() == 1.0
    with pytest.raises(MeshFormatError, match="no IndexedFaceSet"):
        parse_vrml(HEADER + f"Switch {{ choice [ {TRIANGLE} ] }}")  # whichChoice defaults to -1


def test_lines_points_routes_strings_and_comments_are_skipped():
    text = (
        HEADER
        + 'NavigationInfo { type [ "EXAMINE", "ANY" ] }\n'
        + 'WorldInfo { title "a # not a comment, \\"quoted\\" [ ] { }" }\n'
        + "DEF timer TimeSensor { loop TRUE }  # a comment with [ brackets ] and 1 2 3\n"
        + "Shape { geometry IndexedLineSet { coord Coordinate { point [0 0 0, 1 1 1] } "
        + "coordIndex [0 1 -1] } }\n"
        + "Shape { geometry PointSet { coord Coordinate { point [ 0 0 0 ] } } }\n"
        + "Shape { geometry Box { size 1 1 1 } }\n"
        + "ROUTE timer.fraction_changed TO timer.set_startTime\n"
        + TRIANGLE
        + "\n# the file ends in a comment without a newline"
    )
    nodes = parse_nodes(text)
    assert nodes[1].fields["title"] == 'a # not a comment, "quoted" [ ] { }'
    assert nodes[0].fields["type"] == ["EXAMINE", "ANY"]
    assert nodes[2].fields["loop"] is True
    mesh = parse_vrml(text)
    assert mesh.num_triangles == 1
    assert mesh.num_vertices == 3


def test_a_comment_inside_a_numeric_array_takes_the_slow_path_correctly():
    mesh = parse_vrml(HEADER + face("1 0 0, # first ] point\n 0 1 0, 0 0 0", "0 1 2"))
    assert mesh.vertices.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_gzipped_files_are_read_transparently(tmp_path):
    path = tmp_path / "part.wrz"
    path.write_bytes(gzip.compress((HEADER + TRIANGLE).encode()))
    assert read_vrml(path).num_triangles == 1


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ("#VRML V1.0 ascii\nSeparator { }", "VRML 1.0 is not supported", 1),
        ("Shape { }", "expected the header", 1),
        (HEADER + "Shape { geometry USE nothing }", "USE 'nothing' before any DEF", 2),
        (HEADER + "PROTO Part [ ] { }", "PROTO is not supported", 2),
        (HEADER + "\nShape { geometry IndexedFaceSet {", "the file ends", 3),
        (HEADER + 'WorldInfo { title "never closed }', "unterminated string", 2),
        (HEADER + "Shape { ] }", "expected a field name", 2),
        (HEADER + face("0 0 0, 1 0 0, 0 1 0", "0 1 7"), "coordIndex 7 is outside", None),
        (HEADER + face("0 0 0, 1 0", "0 1 2"), "not a multiple of 3", None),
        (HEADER + face("0 0 0, 1 0 0, 0 1 0", "0 1 2") + " Transform { scale 1 2 }", "scale", None),
        (HEADER + TRIANGLE.replace("IndexedFaceSet", "IndexedLineSet"), "IndexedLineSet", None),
    ],
)
def test_malformed_or_unsupported_input_raises_a_clear_error(text, fragment, line):
    with pytest.raises(MeshFormatError, match=fragment) as caught:
        parse_vrml(text, source="part.wrl")
    assert str(caught.value).startswith("part.wrl")
    assert caught.value.line == line
