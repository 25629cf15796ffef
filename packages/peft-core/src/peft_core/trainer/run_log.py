"""``log.jsonl``: one JSON line per log step and per evaluation, kept consistent across resumes.

A run killed after its last checkpoint has written lines the resumed run writes again; the
checkpoint records how many lines the log held, and the resume cuts it back to them.

The line count is kept in memory once the file has been read: a checkpoint asks for it, and
re-reading a long run's log at every checkpoint would cost time that grows with the run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from peft_core._atomic import atomic_write_text


class RunLog:
    """The log file of one output directory (written by the main process only)."""

    def __init__(self, path: Path, *, writes: bool) -> None:
        self.path = path
        self.writes = writes
        self._count: int | None = None  # lines in the file; None until first needed

    def write(self, record: dict[str, Any]) -> None:
        if not self.writes:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({**record, "time": time.time()}) + "\n")
        if self._count is not None:
            self._count += 1

    def line_count(self) -> int:
        if self._count is None:
            self._count = len(self._lines())
        return self._count

    def keep_first(self, count: int) -> None:
        """Cut the log back to its first ``count`` lines (what a checkpoint recorded)."""
        if self.writes and self.path.exists():
            self._rewrite(self._lines()[:count])

    def keep_through_step(self, step: int) -> None:
        """Cut the log back to the lines of steps up to ``step`` (checkpoints that predate
        recording the line count, and a fresh run: step 0)."""
        if self.writes and self.path.exists():
            self._rewrite(
                [line for line in self._lines() if json.loads(line).get("step", 0) <= step]
            )

    def _lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return [line for line in self.path.read_text(encoding="utf-8").splitlines() if line]

    def _rewrite(self, lines: list[str]) -> None:
        atomic_write_text(self.path, "".join(line + "\n" for line in lines))
        self._count = len(lines)
