"""Fetch real meshes from Debian packages into the cache: CGAL's demo meshes and KiCad's 3D models.

Nothing is installed: ``apt-get download`` fetches the ``.deb`` (no root needed) and ``dpkg-deb
--fsys-tarfile`` streams its files, of which only the needed ones are written. Cache layout::

    <cache>/debs/<package>_<version>_<arch>.deb   the downloaded packages, kept for later extractions
    <cache>/cgal/meshes/*.off                     libcgal-demo: usr/share/doc/libcgal-dev/data.tar.gz
    <cache>/kicad/<Category>.3dshapes/*.wrl       kicad-packages3d: usr/share/kicad/3dmodels
    <cache>/kicad/categories.json                 model count of every category in the package
    <cache>/clouds/<dataset>-v1-n<points>-.../    sampled clouds, written by corpora.datasets

A folder appears only once complete (it is written in a staging folder and renamed), so an
interrupted fetch is simply redone. Measured on Debian 12 (bookworm): libcgal-demo 5.5.1 is 24 MB
with 139 ``.off`` files (138 meshes, 1 point set); kicad-packages3d 6.0.10 is 379 MB (5.4 GB
unpacked) with 6,227 ``.wrl`` models in 90 categories; one pass over it (xz decompression by
dpkg-deb) took 31-55 s here, whatever the number of categories extracted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from point_peft.corpora._cache import (
    publish_directory,
    resolve_cache_dir,
    save_json_atomic,
    staging_directory,
)

CGAL_PACKAGE = "libcgal-demo"
CGAL_ARCHIVE = "usr/share/doc/libcgal-dev/data.tar.gz"
KICAD_PACKAGE = "kicad-packages3d"
KICAD_MODELS = "usr/share/kicad/3dmodels"
_KICAD_MODEL = re.compile(re.escape(KICAD_MODELS) + r"/([^/]+)\.3dshapes/([^/]+\.wrl)")
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.\-]+")
_CATEGORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


class DebianFetchError(RuntimeError):
    """A Debian package could not be downloaded or unpacked; the message says what to run."""


def fetch_debian_package(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The ``.deb`` of package ``name`` in ``<cache>/debs``, downloaded with ``apt-get`` if absent.

    The download goes into a staging folder next to its destination and is renamed into place, so a
    partial download is never mistaken for a package. A ``.deb`` already there (for instance one
    copied by hand from packages.debian.org on a machine without apt) is used as it is.

    Raises:
        DebianFetchError: ``apt-get`` is missing or the download failed; the message gives the
            command to run by hand.
    """
    if not _PACKAGE_NAME.fullmatch(name):
        raise ValueError(f"name must be a Debian package name, got {name!r}")
    debs = resolve_cache_dir(cache_dir) / "debs"
    cached = cached_debian_package(name, cache_dir)
    if cached is not None:
        return cached
    manual = f"cd {debs} && apt-get download {name}"
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise DebianFetchError(
            f"apt-get is not available to download {name!r}. On a Debian/Ubuntu machine run: "
            f"{manual}; elsewhere download the .deb from https://packages.debian.org/{name} "
            f"into {debs}"
        )
    with staging_directory(debs) as staging:
        result = subprocess.run(
            [apt_get, "download", name], cwd=staging, capture_output=True, text=True, check=False
        )
        downloaded = sorted(staging.glob(f"{name}_*.deb"))
        if result.returncode != 0 or len(downloaded) != 1:
            output = (result.stderr or result.stdout).strip()[-2000:]
            raise DebianFetchError(
                f"'apt-get download {name}' failed (exit status {result.returncode}): {output}\n"
                f"Check the network and the apt sources (apt-get update), or run by hand: {manual}"
            )
        target = debs / downloaded[0].name
        os.replace(downloaded[0], target)
    return target


def cached_debian_package(name: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The newest cached ``.deb`` of ``name`` (``<name>_<version>_<arch>.deb``), or None."""
    debs = resolve_cache_dir(cache_dir) / "debs"
    candidates = [path for path in debs.glob(f"{name}_*.deb") if path.name.split("_")[0] == name]
    return max(candidates, key=lambda path: path.stat().st_mtime) if candidates else None


def extract_debian_files(
    deb: Path,
    select: Callable[[str], str | None],
    destination: Path,
    *,
    progress: bool = False,
) -> list[Path]:
    """Write the files of ``deb`` that ``select`` keeps under ``destination``; returns them.

    ``select`` receives each regular file's path inside the package (``usr/share/...``, no leading
    ``./``) and returns where to write it, relative to ``destination``, or None to skip it. The
    package is streamed once through ``dpkg-deb --fsys-tarfile``; nothing else is unpacked.

    Raises:
        DebianFetchError: ``dpkg-deb`` is missing or fails on the file.
    """
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        raise DebianFetchError(
            f"dpkg-deb is needed to unpack {deb.name} (Debian/Ubuntu package 'dpkg'); by hand: "
            f"dpkg-deb -x {deb} <folder>, or 'ar x' it and untar data.tar.*"
        )
    written = []
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [dpkg_deb, "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=errors
        )
        unreadable, finished = None, False
        try:
            with (
                _progress_bar(progress, _installed_bytes(dpkg_deb, deb), deb.name) as bar,
                tarfile.open(fileobj=process.stdout, mode="r|") as archive,
            ):
                for member in archive:
                    bar.update(member.size)
                    if not member.isfile():
                        continue
                    relative = select(_package_path(member.name))
                    if relative is None:
                        continue
                    target = destination / _safe_relative(relative)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.extractfile(member) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out)
                    written.append(target)
            finished = True
        except tarfile.TarError as error:
            unreadable = error  # usually because dpkg-deb failed: its message says more
        finally:
            if not finished and unreadable is None:
                process.kill()  # interrupted, or select() refused a path: stop the stream
            process.stdout.close()
            status = process.wait()
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip()
        if unreadable is not None or status != 0:
            raise DebianFetchError(
                f"could not unpack {deb} (dpkg-deb --fsys-tarfile exit status {status}): "
                f"{message or unreadable}; delete the file to download it again"
            ) from unreadable
    return written


def cgal_meshes(
    cache_dir: str | os.PathLike | None = None, *, download: bool = True, progress: bool = False
) -> list[Path]:
    """The ``.off`` files of CGAL's demo data (138 meshes and 1 point set in CGAL 5.5), sorted.

    Downloads ``libcgal-demo`` and unpacks the ``.off`` files of its ``data.tar.gz`` on first use.

    Raises:
        FileNotFoundError: not in the cache and ``download`` is False.
        DebianFetchError: the download or the extraction failed.
    """
    cache = resolve_cache_dir(cache_dir)
    root = cache / "cgal"
    if not root.is_dir():
        if not download:
            raise FileNotFoundError(
                f"the CGAL meshes are not in {root}; fetch them with: "
                f"python -m point_peft.corpora fetch --cgal --cache-dir {cache}"
            )
        deb = fetch_debian_package(CGAL_PACKAGE, cache)
        with staging_directory(cache) as staging:
            keep = {CGAL_ARCHIVE: "data.tar.gz"}
            archives = extract_debian_files(deb, keep.get, staging, progress=progress)
            if not archives:
                raise DebianFetchError(f"{deb.name} has no {CGAL_ARCHIVE}: the package changed")
            if _unpack_off_files(archives[0], staging / "cgal") == 0:
                raise DebianFetchError(f"{CGAL_ARCHIVE} in {deb.name} holds no .off files")
            publish_directory(staging / "cgal", root)
    return sorted(root.rglob("*.off"))


def _unpack_off_files(archive_path: Path, destination: Path) -> int:
    """Write the ``.off`` members of a tar archive under ``destination``, minus a ``data/`` prefix."""
    count = 0
    with tarfile.open(archive_path) as archive:
        for member in archive:
            if not (member.isfile() and member.name.endswith(".off")):
                continue
            parts = PurePosixPath(member.name).parts
            relative = PurePosixPath(*parts[1:]) if parts[0] == "data" else PurePosixPath(*parts)
            target = destination / _safe_relative(str(relative))
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.extractfile(member) as source:
                target.write_bytes(source.read())
            count += 1
    return count


def kicad_models(
    categories: Iterable[str],
    cache_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    progress: bool = False,
) -> dict[str, list[Path]]:
    """The ``.wrl`` models of each KiCad category (e.g. ``"Resistor_THT"``), sorted by name.

    Categories not yet in the cache are extracted from ``kicad-packages3d`` together, in one pass
    over the package (30-55 s here), downloading it (379 MB) first if needed.

    Raises:
        ValueError: a category that the package does not have (the message lists those it has).
        FileNotFoundError: a category is not in the cache and ``download`` is False.
        DebianFetchError: the download or the extraction failed.
    """
    categories = list(dict.fromkeys(categories))
    for category in categories:
        if not isinstance(category, str) or not _CATEGORY_NAME.fullmatch(category):
            raise ValueError(f"categories must be KiCad category names, got {category!r}")
    cache = resolve_cache_dir(cache_dir)
    root = cache / "kicad"
    known = _read_kicad_index(root)
    if known is not None:
        _check_known(categories, known)
    missing = [category for category in categories if not (root / f"{category}.3dshapes").is_dir()]
    if missing:
        if not download:
            raise FileNotFoundError(
                f"KiCad categories {missing} are not in {root}; fetch them with: "
                f"python -m point_peft.corpora fetch --kicad-categories {' '.join(missing)} "
                f"--cache-dir {cache}"
            )
        _extract_kicad(cache, missing, progress)
    return {
        category: sorted((root / f"{category}.3dshapes").glob("*.wrl")) for category in categories
    }


def kicad_categories(
    cache_dir: str | os.PathLike | None = None, *, download: bool = True, progress: bool = False
) -> dict[str, int]:
    """Every category of ``kicad-packages3d`` and its number of ``.wrl`` models.

    Read from ``<cache>/kicad/categories.json``, which any extraction pass writes; without it, one
    pass over the package (downloaded if needed) builds it.
    """
    cache = resolve_cache_dir(cache_dir)
    known = _read_kicad_index(cache / "kicad")
    if known is None:
        if not download:
            raise FileNotFoundError(
                f"no KiCad category index in {cache / 'kicad'}; build it with: "
                f"python -m point_peft.corpora categories --cache-dir {cache}"
            )
        known = _extract_kicad(cache, [], progress)
    return known


def _extract_kicad(cache: Path, categories: list[str], progress: bool) -> dict[str, int]:
    root = cache / "kicad"
    deb = fetch_debian_package(KICAD_PACKAGE, cache)
    counts: Counter[str] = Counter()
    wanted = set(categories)

    def select(path: str) -> str | None:
        match = _KICAD_MODEL.fullmatch(path)
        if match is None:
            return None
        counts[match.group(1)] += 1
        return f"{match.group(1)}.3dshapes/{match.group(2)}" if match.group(1) in wanted else None

    with staging_directory(root) as staging:
        extract_debian_files(deb, select, staging, progress=progress)
        if not counts:
            raise DebianFetchError(f"{deb.name} has no models under {KICAD_MODELS}: it changed")
        known = dict(sorted(counts.items()))
        save_json_atomic(root / "categories.json", known)
        for category in categories:
            if category in known:  # publish what was found before complaining about the rest
                publish_directory(staging / f"{category}.3dshapes", root / f"{category}.3dshapes")
    _check_known(categories, known)
    return known


def _read_kicad_index(root: Path) -> dict[str, int] | None:
    try:
        return json.loads((root / "categories.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _check_known(categories: list[str], known: dict[str, int]) -> None:
    unknown = [category for category in categories if category not in known]
    if unknown:
        raise ValueError(
            f"kicad-packages3d has no categories {unknown}; it has: {', '.join(sorted(known))}"
        )


def _package_path(name: str) -> str:
    return name[2:] if name.startswith("./") else name.lstrip("/")


def _safe_relative(relative: str) -> Path:
    """``relative`` as a path that stays inside its destination (no absolute path, no ``..``)."""
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise DebianFetchError(f"refusing to write outside the cache: {relative!r}")
    return Path(*path.parts)


def _installed_bytes(dpkg_deb: str, deb: Path) -> int | None:
    """The unpacked size from the package's control data (in KiB there), for the progress bar."""
    result = subprocess.run(
        [dpkg_deb, "--field", str(deb), "Installed-Size"], capture_output=True, text=True
    )
    value = result.stdout.strip()
    return int(value) * 1024 if result.returncode == 0 and value.isdigit() else None


def _progress_bar(enabled: bool, total: int | None, description: str) -> tqdm:
    return tqdm(
        total=total, desc=description, unit="B", unit_scale=True, disable=not enabled, leave=False
    )
