"""How long a command takes to answer `--help`: each method package's command beside importing
torch, which every one of them paid before the packages' public names were imported lazily, and a
bare interpreter start, the floor no command can go below.

`python -m benchmarks.run core-startup` (about 1 min on a 2-core CPU). Each row runs in a fresh
interpreter (`python -m <package> --help`), interleaved with the others so that load on the
machine falls on every row alike.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.records import make_record, write_record
from benchmarks.timing import time_interleaved

RECORD_NAME = "core command start-up"
REFERENCE = "import torch"
ROWS = {
    "bare interpreter": ["-c", "pass"],
    REFERENCE: ["-c", "import torch"],
    "meft --help": ["-m", "meft", "--help"],
    "deft --help": ["-m", "deft", "--help"],
    "point-peft --help": ["-m", "point_peft", "--help"],
    "meft train --help": ["-m", "meft", "train", "--help"],
}


def _run(arguments: list[str]) -> None:
    subprocess.run([sys.executable, *arguments], check=True, stdout=subprocess.DEVNULL)


def main(quick: bool = False) -> list[Path]:
    rounds = 2 if quick else 7
    timings = time_interleaved(
        {name: (lambda arguments=arguments: _run(arguments)) for name, arguments in ROWS.items()},
        rounds,
        warmup=0,
    )
    reference = timings[REFERENCE]["median_ms"]
    for row in timings.values():
        row["ratio_to_import_torch"] = row["median_ms"] / reference
    record = make_record(
        RECORD_NAME + (" quick" if quick else ""),
        method="wall time of a fresh interpreter per row, interleaved rounds",
        model="none",
        data="none",
        config={"rounds": rounds, "warmup_rounds": 1},
        eval_info={"rows": timings, "reference": REFERENCE},
    )
    return [write_record(record)]
