"""The OFF reader: header variants, comments, colours, polygon fans, and errors naming the line."""

from __future__ import annotations

import numpy as np
import pytest

from point_peft.corpora import MeshFormatError, TriangleMesh, fan_triangulate, parse_off, read_off

CUBE_QUADS = """\
# a unit cube written with quads, comments and blank lines anywhere
OFF
8 6 12

0 0 0
1 0 0   # a comment after a vertex
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 1 2 6 5

4 2 3 7 6
4 3 0 4 7
"""


def test_quads_become_two_triangles_each_and_keep_the_vertices():
    mesh = parse_off(CUBE_QUADS)
    assert mesh.num_vertices == 8
    assert mesh.num_triangles == 12
    assert mesh.vertices[6].tolist() == [1.0, 1.0, 1.0]
    # Fans from the first corner: (0 3 2 1) -> (0 3 2), (0 2 1).
    assert mesh.triangles[:2].tolist() == [[0, 3, 2], [0, 2, 1]]


def test_fan_triangulation_of_mixed_polygons_matches_a_hand_written_list():
    indices = np.array([7, 8, 9, 10, 11, 0, 1, 2, 5, 6])  # pentagon, triangle, a 2-gon (dropped)
    triangles = fan_triangulate(indices, np.array([5, 3, 2]))
    assert triangles.tolist() == [[7, 8, 9], [7, 9, 10], [7, 10, 11], [0, 1, 2]]


def test_colours_after_vertices_and_faces_are_ignored():
    text = "COFF\n3 1 0\n0 0 0 255 0 0 255\n1 0 0 0 255 0 255\n0 1 0 0 0 255 255\n3 0 1 2 0.5 0.5 0.5\n"
    mesh = parse_off(text)
    assert mesh.vertices.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert mesh.triangles.tolist() == [[0, 1, 2]]


@pytest.mark.parametrize(
    "header",
    ["OFF\n3 1 0", "OFF 3 1 0", "NOFF\n3 1 0", "CNOFF\n3 1", "STOFF\n3 1 0", "3 1 0"],
    ids=["plain", "same-line", "normals", "colour-normals", "texture", "no-keyword"],
)
def test_header_variants(header):
    mesh = parse_off(f"{header}\n0 0 0 9 9 9\n1 0 0 9 9 9\n0 1 0 9 9 9\n3 2 1 0\n")
    assert mesh.triangles.tolist() == [[2, 1, 0]]
    assert mesh.vertices[1].tolist() == [1.0, 0.0, 0.0]


def test_points_and_segments_enclose_no_area_and_are_dropped():
    mesh = parse_off("OFF\n3 3 0\n0 0 0\n1 0 0\n0 1 0\n1 0\n2 0 1\n3 0 1 2\n")
    assert mesh.triangles.tolist() == [[0, 1, 2]]


def test_a_point_set_reads_with_no_triangles():
    mesh = parse_off("OFF\n2 0 0\n0 0 0\n1 2 3\n")
    assert mesh.num_vertices == 2
    assert mesh.num_triangles == 0


def test_read_off_from_a_file_with_crlf_line_ends(tmp_path):
    path = tmp_path / "tri.off"
    path.write_bytes(b"OFF\r\n3 1 0\r\n0 0 0\r\n1 0 0\r\n0 1 0\r\n3 0 1 2\r\n")
    assert read_off(path).triangles.tolist() == [[0, 1, 2]]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("PLY\n", 1, "expected the OFF keyword"),
        ("OFF\n3 x 0\n", 2, "the face count"),
        ("OFF\n3 1 0\n0 0 0\n1 0\n", 4, "expected 3 coordinates"),
        ("OFF\n3 1 0\n0 0 0\n1 0 zero\n0 1 0\n3 0 1 2\n", 4, "expected numbers for coordinates"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 nan\n3 0 1 2\n", 5, "finite"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1\n", 6, "a face needs"),
        ("OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 3\n", 7, "vertex index 3 is outside"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1.5 2\n", 6, "expected numbers for vertex indices"),
        ("4OFF\n", 1, "not supported"),
        ("OFF BINARY\n", 1, "binary OFF"),
    ],
)
def test_malformed_input_names_the_file_and_line(text, line, fragment):
    with pytest.raises(MeshFormatError, match=fragment) as caught:
        parse_off(text, source="broken.off")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"broken.off, line {line}: ")


def test_a_truncated_file_says_what_is_missing():
    with pytest.raises(MeshFormatError, match=r"ends before 3 vertex lines"):
        parse_off("OFF\n3 1 0\n0 0 0\n", source="short.off")


def test_triangle_mesh_rejects_out_of_range_indices_and_wrong_shapes():
    with pytest.raises(ValueError, match=r"index vertices in \[0, 3\)"):
        TriangleMesh(np.zeros((3, 3)), np.array([[0, 1, 3]]))
    with pytest.raises(ValueError, match=r"shape \(V, 3\)"):
        TriangleMesh(np.zeros((3, 2)), np.array([[0, 1, 2]]))


def test_concatenate_shifts_the_indices_of_later_meshes():
    triangle = TriangleMesh(np.eye(3), np.array([[0, 1, 2]]))
    both = TriangleMesh.concatenate([triangle, triangle])
    assert both.triangles.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert both.num_vertices == 6
