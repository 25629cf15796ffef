"""Checks every method package runs on itself: version stamp and dependency boundaries."""

from __future__ import annotations

import re
from importlib import metadata
from types import ModuleType

METHOD_DISTRIBUTIONS = frozenset({"meft", "deft-peft", "point-peft"})


def requirement_names(distribution: str) -> set[str]:
    """Names of the distributions ``distribution`` requires (extras included)."""
    return {
        re.split(r"[\s;\[<>=!~]", requirement, maxsplit=1)[0]
        for requirement in metadata.requires(distribution) or []
    }


def assert_version_matches_metadata(module: ModuleType, distribution: str) -> None:
    installed = metadata.version(distribution)
    assert module.__version__ == installed, (
        f"{module.__name__}.__version__ {module.__version__} != {installed}"
    )


def assert_depends_on_core_only(distribution: str) -> None:
    """A method package needs peft-core and none of its sibling methods."""
    names = requirement_names(distribution)
    assert "peft-core" in names, f"{distribution} does not depend on peft-core"
    siblings = names & (METHOD_DISTRIBUTIONS - {distribution})
    assert not siblings, f"{distribution} depends on sibling method packages {sorted(siblings)}"
