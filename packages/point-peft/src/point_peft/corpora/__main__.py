"""``python -m point_peft.corpora``: fetch the Debian corpora into the cache and report what is there.

    python -m point_peft.corpora fetch                      # CGAL meshes + default KiCad categories
    python -m point_peft.corpora fetch --cgal               # only the CGAL meshes
    python -m point_peft.corpora fetch --kicad-categories Resistor_THT Crystal
    python -m point_peft.corpora categories                 # every KiCad category and its size

``fetch`` also samples the point clouds (``--num-points``, default 1024) so that the datasets load
instantly afterwards; ``--no-clouds`` stops after extracting the meshes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from point_peft.corpora._cache import CACHE_ENV, resolve_cache_dir
from point_peft.corpora.datasets import (
    DEFAULT_KICAD_CATEGORIES,
    CgalMeshes,
    KiCadCategories,
    split_of,
)
from point_peft.corpora.debian import cgal_meshes, kicad_categories, kicad_models


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    cache = resolve_cache_dir(arguments.cache_dir)
    if arguments.command == "categories":
        counts = kicad_categories(cache, progress=True)
        for category, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            print(f"{count:6d}  {category}")
        print(f"{sum(counts.values())} models in {len(counts)} categories")
        return 0

    start = time.perf_counter()
    categories = arguments.kicad_categories
    if categories is None and arguments.kicad:
        categories = list(DEFAULT_KICAD_CATEGORIES)
    if categories is None and not arguments.cgal:  # nothing chosen: fetch everything
        categories = list(DEFAULT_KICAD_CATEGORIES)
        arguments.cgal = True
    if arguments.cgal:
        files = cgal_meshes(cache, progress=True)
        print(f"CGAL: {len(files)} .off files in {cache / 'cgal'}")
        if not arguments.no_clouds:
            dataset = CgalMeshes(num_points=arguments.num_points, cache_dir=cache)
            print(
                f"CGAL: {len(dataset)} clouds of {arguments.num_points} points (meshes with a surface)"
            )
    if categories:
        models = kicad_models(categories, cache, progress=True)
        print(f"KiCad: {'category':<32} {'models':>6} {'train':>6} {'test':>6}")
        for category, files in models.items():
            tests = sum(split_of(file.stem, arguments.test_fraction) == "test" for file in files)
            print(f"KiCad: {category:<32} {len(files):6d} {len(files) - tests:6d} {tests:6d}")
        print(f"KiCad: {sum(len(files) for files in models.values())} models in {cache / 'kicad'}")
        if not arguments.no_clouds:
            for split in ("train", "test"):
                dataset = KiCadCategories(
                    split,
                    categories=categories,
                    num_points=arguments.num_points,
                    cache_dir=cache,
                    test_fraction=arguments.test_fraction,
                )
                print(
                    f"KiCad: {split} split, {len(dataset)} clouds of {arguments.num_points} points"
                )
    print(
        f"done in {time.perf_counter() - start:.0f} s; cache {cache}: {_size(cache) / 2**20:.0f} MiB"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m point_peft.corpora",
        description="Real point-cloud corpora from Debian packages (CGAL meshes, KiCad 3D models).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download, extract and sample the corpora")
    fetch.add_argument("--cgal", action="store_true", help="the CGAL demo meshes (libcgal-demo)")
    fetch.add_argument(
        "--kicad", action="store_true", help="the default KiCad categories (kicad-packages3d)"
    )
    fetch.add_argument(
        "--kicad-categories", nargs="+", metavar="CATEGORY", help="these KiCad categories instead"
    )
    fetch.add_argument("--num-points", type=int, default=1024, help="points per cloud (1024)")
    fetch.add_argument(
        "--test-fraction", type=float, default=0.2, help="KiCad test share per category (0.2)"
    )
    fetch.add_argument("--no-clouds", action="store_true", help="extract meshes only, no sampling")
    listing = commands.add_parser("categories", help="list every KiCad category and its size")
    for command in (fetch, listing):
        command.add_argument(
            "--cache-dir", help=f"cache folder (default: ${CACHE_ENV} or ~/.cache/point-peft)"
        )
    return parser


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


if __name__ == "__main__":
    sys.exit(main())
