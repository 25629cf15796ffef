"""Fetching and unpacking Debian packages, offline: tiny real .debs and a stand-in apt-get.

The .debs are built here with ``dpkg-deb --build`` in the layout of the real packages, and
``apt-get`` is a script on PATH that "downloads" them by copying and counts its calls.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from point_peft.corpora import (
    DebianFetchError,
    cgal_meshes,
    extract_debian_files,
    fetch_debian_package,
    kicad_categories,
    kicad_models,
    read_off,
    read_vrml,
    resolve_cache_dir,
)
from point_peft.corpora.__main__ import main

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None, reason="dpkg-deb is needed to build and unpack test .debs"
)

TETRAHEDRON = (
    "#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point "
    "[0 0 0, 1 0 0, 0 1 0, 0 0 1] } coordIndex [0 2 1 -1 0 1 3 -1 0 3 2 -1 1 2 3 -1] } }\n"
)
SQUARE = (
    "#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point "
    "[0 0 0, 1 0 0, 1 1 0, 0 1 0] } coordIndex [0 1 2 3 -1] } }\n"
)
KICAD_FILES = {
    **{f"Alpha.3dshapes/alpha{i}.wrl": TETRAHEDRON for i in range(5)},
    **{f"Beta.3dshapes/beta{i}.wrl": SQUARE for i in range(4)},
    "Gamma.3dshapes/gamma0.wrl": SQUARE,
    "Alpha.3dshapes/alpha0.step": "ISO-10303-21; not a mesh",
}
CGAL_FILES = {
    "data/meshes/tetrahedron.off": "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n"
    "3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n",
    "data/meshes/square.off": "OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n",
    "data/points_3/kitten.off": "OFF\n2 0 0\n0 0 0\n1 1 1\n",
    "data/meshes/README.txt": "not a mesh",
}


def build_deb(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    root = folder / f"{name}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: Test <t@example.org>\n"
        "Description: a package built by the tests\n"
    )
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    deb = folder / f"{name}_1.0-1_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("debs")
    kicad = {
        f"usr/share/kicad/3dmodels/{relative}": text.encode()
        for relative, text in KICAD_FILES.items()
    }
    kicad["usr/share/doc/kicad-packages3d/copyright"] = b"CC-BY-SA"
    build_deb(folder, "kicad-packages3d", kicad)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for relative, text in CGAL_FILES.items():
            info = tarfile.TarInfo(relative)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    build_deb(folder, "libcgal-demo", {"usr/share/doc/libcgal-dev/data.tar.gz": archive.getvalue()})
    return folder


@pytest.fixture
def fake_apt(debs, tmp_path, monkeypatch) -> Path:
    """An ``apt-get`` on PATH that copies the test .debs; returns the file logging its calls."""
    bin_folder, log = tmp_path / "bin", tmp_path / "apt-calls.log"
    bin_folder.mkdir()
    script = bin_folder / "apt-get"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{log}"\n'
        f'if [ "$1" = download ] && cp "{debs}/$2"_*.deb . 2>/dev/null; then exit 0; fi\n'
        'echo "E: Unable to locate package $2" >&2\nexit 100\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    log.touch()
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_cache_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("POINT_PEFT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir() == tmp_path / "xdg" / "point-peft"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_cache_dir() == Path.home() / ".cache" / "point-peft"
    monkeypatch.setenv("POINT_PEFT_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "argument") == tmp_path / "argument"


def test_a_package_is_downloaded_once_into_the_cache(fake_apt, tmp_path):
    cache = tmp_path / "cache"
    deb = fetch_debian_package("libcgal-demo", cache)
    assert deb == cache / "debs" / "libcgal-demo_1.0-1_all.deb"
    assert fetch_debian_package("libcgal-demo", cache) == deb
    assert calls(fake_apt) == ["download libcgal-demo"]
    assert sorted(path.name for path in (cache / "debs").iterdir()) == [deb.name]  # no staging


def test_a_failed_download_names_the_command_to_run(fake_apt, tmp_path):
    with pytest.raises(
        DebianFetchError, match="Unable to locate package no-such-package"
    ) as caught:
        fetch_debian_package("no-such-package", tmp_path)
    assert "apt-get download no-such-package" in str(caught.value)
    assert list((tmp_path / "debs").iterdir()) == []


def test_missing_apt_get_says_how_to_get_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no apt-get
    with pytest.raises(DebianFetchError, match="apt-get is not available") as caught:
        fetch_debian_package("kicad-packages3d", tmp_path)
    assert "packages.debian.org/kicad-packages3d" in str(caught.value)


def test_package_names_are_validated():
    with pytest.raises(ValueError, match="Debian package name"):
        fetch_debian_package("../../etc", "/nonexistent")


def test_kicad_extracts_only_the_requested_categories_and_indexes_all(fake_apt, tmp_path):
    cache = tmp_path / "cache"
    models = kicad_models(["Beta"], cache)
    assert [path.name for path in models["Beta"]] == [f"beta{i}.wrl" for i in range(4)]
    assert sorted(path.name for path in (cache / "kicad").iterdir()) == [
        "Beta.3dshapes",
        "categories.json",
    ]
    index = json.loads((cache / "kicad" / "categories.json").read_text())
    assert index == {"Alpha": 5, "Beta": 4, "Gamma": 1}  # .wrl only: the .step is not counted
    assert read_vrml(models["Beta"][0]).num_triangles == 2

    models = kicad_models(["Alpha", "Beta"], cache)  # Beta is reused, Alpha extracted
    assert len(models["Alpha"]) == 5
    assert not list((cache / "kicad" / "Alpha.3dshapes").glob("*.step"))
    assert calls(fake_apt) == ["download kicad-packages3d"]  # one download for both passes
    assert kicad_categories(cache) == index


def test_unknown_categories_are_refused_with_the_known_ones(fake_apt, tmp_path):
    with pytest.raises(ValueError, match=r"no categories \['Delta'\]; it has: Alpha, Beta, Gamma"):
        kicad_models(["Gamma", "Delta"], tmp_path)
    assert (tmp_path / "kicad" / "Gamma.3dshapes").is_dir()  # the known one is kept
    with pytest.raises(ValueError, match="no categories"):  # now from the index, no new pass
        kicad_models(["Delta"], tmp_path)
    with pytest.raises(ValueError, match="category names"):
        kicad_models(["../Alpha"], tmp_path)


def test_without_download_a_missing_corpus_names_the_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="fetch --kicad-categories Alpha"):
        kicad_models(["Alpha"], tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match="fetch --cgal"):
        cgal_meshes(tmp_path, download=False)


def test_cgal_unpacks_the_off_files_of_the_inner_archive(fake_apt, tmp_path):
    files = cgal_meshes(tmp_path)
    relative = [path.relative_to(tmp_path / "cgal").as_posix() for path in files]
    assert relative == ["meshes/square.off", "meshes/tetrahedron.off", "points_3/kitten.off"]
    assert read_off(files[1]).num_triangles == 4
    assert cgal_meshes(tmp_path) == files
    assert calls(fake_apt) == ["download libcgal-demo"]


def test_extraction_refuses_paths_outside_the_destination(debs, tmp_path):
    deb = debs / "libcgal-demo_1.0-1_all.deb"
    with pytest.raises(DebianFetchError, match="outside the cache"):
        extract_debian_files(deb, lambda path: "../escape", tmp_path)


def test_a_corrupt_package_is_reported_with_dpkg_deb_s_words(tmp_path):
    broken = tmp_path / "broken_1.0_all.deb"
    broken.write_bytes(b"!<arch>\nnot really a package")
    with pytest.raises(
        DebianFetchError, match=r"could not unpack .*broken_1\.0_all\.deb"
    ) as caught:
        extract_debian_files(broken, lambda path: path, tmp_path / "out")
    assert "dpkg-deb: error" in str(caught.value)  # dpkg-deb's own explanation is passed on
    assert "delete the file" in str(caught.value)


def test_missing_dpkg_deb_is_reported(debs, tmp_path, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(
        "point_peft.corpora.debian.shutil.which",
        lambda name: None if name == "dpkg-deb" else real_which(name),
    )
    with pytest.raises(DebianFetchError, match="dpkg-deb is needed"):
        extract_debian_files(debs / "libcgal-demo_1.0-1_all.deb", lambda path: path, tmp_path)


def test_cli_fetch_prints_counts_per_category_and_builds_the_clouds(fake_apt, tmp_path, capsys):
    cache = tmp_path / "cache"
    arguments = [
        "fetch",
        "--kicad-categories",
        "Alpha",
        "Beta",
        "--cgal",
        "--cache-dir",
        str(cache),
    ]
    with pytest.warns(UserWarning, match="kitten.off"):  # the point set has no surface
        assert main([*arguments, "--num-points", "16", "--test-fraction", "0.5"]) == 0
    output = capsys.readouterr().out
    assert "CGAL: 3 .off files" in output
    assert "CGAL: 2 clouds of 16 points" in output
    alpha = next(line for line in output.splitlines() if line.startswith("KiCad: Alpha "))
    models, train, test = (int(word) for word in alpha.split()[2:])
    assert (models, train + test) == (5, 5)
    assert "KiCad: 9 models" in output
    assert len(list((cache / "clouds").rglob("*.npz"))) == 5  # cgal + 2 categories x 2 splits

    assert main(["categories", "--cache-dir", str(cache)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["5", "Alpha"]
    assert listing[-1] == "10 models in 3 categories"
