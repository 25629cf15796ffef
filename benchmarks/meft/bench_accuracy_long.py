"""Is MEFT's accuracy gap to full fine-tuning a matter of training length?

`meft-accuracy` trains 2 epochs of 2,000 sentences (about 125 optimizer steps): every MEFT variant
lands 2.8 - 4.1 points below full fine-tuning. The reference trains 10 - 40 epochs on GLUE. This
suite repeats full fine-tuning, MEFT1 and MEFT3 (the two best variants there) with three times the
epochs, the same data, step sizes and seeds, so the gap at 6 epochs can be set beside the gap at 2.

`python -m benchmarks.run meft-accuracy-long` (about 8 min per run on a quiet 2-core CPU, 9 runs;
resumable with --resume like `meft-accuracy`).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.meft.bench_accuracy import longer_record_name, run_accuracy

EPOCHS = 6.0
NAMES = ["full fine-tuning", "MEFT1 (float64 streams)", "MEFT3 (float64 streams)"]
LONG_RECORD_NAME = longer_record_name(EPOCHS)


def main(quick: bool = False) -> list[Path]:
    return run_accuracy(NAMES, EPOCHS, LONG_RECORD_NAME, quick)
