"""`nox -s demo`: fine-tune real MiniLM on the embedded Rotten-Tomatoes polarity task, per section,
and the small pre-trained Point-MAE on procedural point-cloud scans (the point section).

Options: --sections (default: all), --epochs (default 1), --max-train N (cap the training
examples; default 2,000 so the demo takes minutes on a laptop CPU), --output-dir (default runs/demo).
--epochs and --max-train size the text sections; the point section runs `point-peft train`'s
default recipe. Results are also written to <output-dir>/results.json; a new demo run replaces
the previous one's runs there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import core_section
import deft_section
import meft_section
import point_section

from peft_core.recipes import format_results_table, load_text_task

SECTIONS = {
    "core": core_section,
    "meft": meft_section,
    "deft": deft_section,
    "point": point_section,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", nargs="*", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-train", type=int, default=2000, help="0 = the whole training split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/demo"))
    args = parser.parse_args()

    # Sections that work on other data (point clouds) say so; the text task is loaded only if needed.
    needs_text = any(getattr(SECTIONS[name], "NEEDS_TEXT_TASK", True) for name in args.sections)
    task = load_text_task(max_train=args.max_train or None, seed=args.seed) if needs_text else None
    results, tables = {}, []
    for name in args.sections:
        section = SECTIONS[name]
        print(f"\n== {section.TITLE}")
        rows = section.run(task, args.output_dir / name, args.epochs, args.seed, results)
        results[name] = rows
        tables.append(f"== {section.TITLE}\n" + format_results_table(rows))
        if hasattr(section, "format_extra"):
            tables.append(section.format_extra(rows))

    print("\n\n" + "\n\n".join(tables))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "results.json").write_text(
        json.dumps(results, indent=2) + "\n", encoding="utf-8"
    )
    print(f"\nresults written to {args.output_dir / 'results.json'}")


if __name__ == "__main__":
    main()
