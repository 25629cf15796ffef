"""`nox -s demo`: fine-tune on the embedded default data and print a result table per section.

Options: --epochs (default 1), --max-train N (cap the training examples, for a quick look),
--output-dir (default runs/demo). Results are also written to <output-dir>/results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import core_section


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/demo"))
    args = parser.parse_args()

    results = {}
    print("== peft-core: real all-MiniLM-L6-v2 on Rotten-Tomatoes polarity (embedded, offline)")
    rows = core_section.run(args.output_dir / "core", args.epochs, args.max_train, args.seed)
    results["core"] = rows
    print("\n" + core_section.format_table(rows))

    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "results.json").write_text(
        json.dumps(results, indent=2) + "\n", encoding="utf-8"
    )
    print(f"\nresults written to {args.output_dir / 'results.json'}")


if __name__ == "__main__":
    main()
