"""Checks every package runs on itself: version stamp, dependency boundaries, lazy exports."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
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


def type_checking_imports(package: ModuleType) -> dict[str, str]:
    """Name -> module of each ``from module import name`` under ``if TYPE_CHECKING:`` in the
    package's ``__init__``: the public names as type checkers and editors see them."""
    tree = ast.parse(Path(package.__file__).read_text(encoding="utf-8"))
    return {
        alias.asname or alias.name: statement.module
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
        for statement in node.body
        if isinstance(statement, ast.ImportFrom) and statement.module
        for alias in statement.names
    }  # fmt: skip


def assert_lazy_exports_match_type_checking_imports(package: ModuleType) -> None:
    """The names a package exports lazily (``__all__``, see :mod:`peft_core.lazy_exports`) are
    those its ``TYPE_CHECKING`` block imports, and each resolves to the same object."""
    declared = type_checking_imports(package)
    exported = set(package.__all__) - {"__version__"}
    assert declared.keys() == exported, (
        f"{package.__name__}: only in the TYPE_CHECKING imports: "
        f"{sorted(declared.keys() - exported)}; only in the lazy exports: "
        f"{sorted(exported - declared.keys())}"
    )
    for name, module in declared.items():
        expected = getattr(importlib.import_module(module), name)
        assert getattr(package, name) is expected, (
            f"{package.__name__}.{name} is not {module}.{name}"
        )
    assert exported <= set(dir(package)), f"dir({package.__name__}) misses some public names"


def top_level_modules_imported_by(code: str) -> set[str]:
    """The top-level packages (``torch``, ``numpy``, ...) a fresh interpreter has imported after
    running ``code`` (a ``SystemExit``, as from ``--help``, ends ``code`` but not the count)."""
    script = (
        "import json, sys\n"
        f"try:\n    exec({code!r})\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(finished.stdout.splitlines()[-1]))


class MethodPackageTests:
    """The packaging checks every method package runs on itself. Subclass it in the package's
    tests with ``package`` (the imported package), ``distribution`` (its name on PyPI) and
    ``usage_error`` (arguments its command refuses while parsing); pytest collects the tests::

        class TestPackage(MethodPackageTests):
            package = meft
            distribution = "meft"
            usage_error = ("train", "--epochs", "0")
    """

    package: ModuleType
    distribution: str
    usage_error: tuple[str, ...]

    def test_version_matches_the_installed_metadata(self) -> None:
        assert_version_matches_metadata(self.package, self.distribution)

    def test_depends_on_peft_core_and_on_no_sibling_method(self) -> None:
        assert_depends_on_core_only(self.distribution)

    def test_public_names_are_the_type_checking_imports(self) -> None:
        assert_lazy_exports_match_type_checking_imports(self.package)

    def test_importing_the_package_imports_no_torch_until_a_name_is_read(self) -> None:
        assert "torch" not in top_level_modules_imported_by(f"import {self.package.__name__}")

    def test_the_command_answers_help_and_usage_errors_without_importing_torch(self) -> None:
        for argv in (["--help"], ["train", "--help"], list(self.usage_error)):
            code = f"from {self.package.__name__}.cli import main; main({argv!r})"
            assert "torch" not in top_level_modules_imported_by(code), argv
