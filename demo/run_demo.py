"""`nox -s demo`: fine-tune real MiniLM on the embedded Rotten-Tomatoes polarity task, per section,
and the small pre-trained Point-MAE on procedural point-cloud scans (the point section).

Options: --sections (default: all), --epochs (default 1), --max-train N (cap the training
examples; default 2,000 so the demo takes minutes on a laptop CPU), --max-eval N (cap the
validation and test examples; default: all), --output-dir (default runs/demo), --smoke (tiny
data and a few steps in every section: checks that the demo runs; its numbers mean nothing).
--epochs, --max-train and --max-eval size the text sections; the point section runs
`point-peft train`'s default recipe. Results are also written to <output-dir>/results.json; a new
demo run replaces the previous one's runs there.
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
from demo_options import SMOKE_MAX_EVAL, SMOKE_MAX_TRAIN, DemoOptions

from peft_core.argument_types import non_negative_int
from peft_core.recipes import format_results_table, load_text_task

DEFAULT_MAX_TRAIN = 2000  # minutes per text section on a laptop CPU

SECTIONS = {
    "core": core_section,
    "meft": meft_section,
    "deft": deft_section,
    "point": point_section,
}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", nargs="*", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument(
        "--max-train", type=non_negative_int,
        help=f"0 = the whole training split (default {DEFAULT_MAX_TRAIN})",
    )  # fmt: skip
    parser.add_argument(
        "--max-eval", type=non_negative_int, help="0 = the whole evaluation splits (default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--smoke", action="store_true", help="tiny data, a few steps: a run check")
    args = parser.parse_args(argv)
    # --smoke changes the defaults only: a cap given with it still holds.
    defaults = (SMOKE_MAX_TRAIN, SMOKE_MAX_EVAL) if args.smoke else (DEFAULT_MAX_TRAIN, 0)
    for name, default in zip(("max_train", "max_eval"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    args = parse_arguments(argv)
    options = DemoOptions(epochs=args.epochs, seed=args.seed, smoke=args.smoke)
    # Sections that work on other data (point clouds) say so; the text task is loaded only if needed.
    needs_text = any(getattr(SECTIONS[name], "NEEDS_TEXT_TASK", True) for name in args.sections)
    caps = {"max_train": args.max_train or None, "max_eval": args.max_eval or None}
    task = load_text_task(seed=args.seed, **caps) if needs_text else None
    results, tables = {}, []
    for name in args.sections:
        section = SECTIONS[name]
        print(f"\n== {section.TITLE}")
        rows = section.run(task, args.output_dir / name, options, results)
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
    return results


if __name__ == "__main__":
    main()
