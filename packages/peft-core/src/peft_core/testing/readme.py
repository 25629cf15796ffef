"""Run the Python examples of a README, so that the first code a user copies is known to work."""

from __future__ import annotations

import os
import re
from pathlib import Path

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(readme: str | os.PathLike) -> list[str]:
    """The ```python fenced blocks of a Markdown file, in order.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "README.md"
        >>> _ = path.write_text("text\\n```python\\nx = 1\\n```\\n```bash\\nls\\n```\\n")
        >>> python_blocks(path)
        ['x = 1\\n']
    """
    return _PYTHON_BLOCK.findall(Path(readme).read_text(encoding="utf-8"))


def run_python_blocks(readme: str | os.PathLike, workdir: str | os.PathLike) -> int:
    """Execute every Python block of ``readme`` in one namespace, inside ``workdir``.

    Blocks share a namespace (a README's examples often build on each other) and run in
    ``workdir`` so that files they write land there. Returns how many blocks ran.
    """
    blocks = python_blocks(readme)
    if not blocks:
        raise AssertionError(f"{readme} has no ```python blocks to run")
    namespace: dict = {"__name__": "__readme__"}
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        for index, block in enumerate(blocks):
            exec(compile(block, f"{Path(readme).name}[block {index}]", "exec"), namespace)
    finally:
        os.chdir(previous)
    return len(blocks)
