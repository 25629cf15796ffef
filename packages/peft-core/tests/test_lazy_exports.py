"""lazy_exports: a package's public names are imported on first read, once, and behave as eager
imports would (star import, dir, submodules, clear errors); peft-core itself imports no torch."""

from __future__ import annotations

import sys
import textwrap

import pytest

import peft_core
from peft_core.testing.packaging import (
    assert_lazy_exports_match_type_checking_imports,
    top_level_modules_imported_by,
)

INIT = """
from peft_core.lazy_exports import lazy_exports

__version__ = "1.0"
__getattr__, __dir__, __all__ = lazy_exports(
    __name__, {"lazypkg.heavy": ["Heavy", "make"], "lazypkg": ["tools"]}
)
"""
HEAVY = """
import lazypkg
lazypkg.imports.append("heavy")  # a record of when (and how often) this module is imported

class Heavy:
    pass

def make():
    return Heavy()
"""


@pytest.fixture
def lazypkg(tmp_path, monkeypatch):
    """A package ``lazypkg`` exporting ``Heavy`` and ``make`` from ``lazypkg.heavy``, the
    submodule ``tools``, and holding an unlisted submodule ``extra`` and a ``broken`` one."""
    root = tmp_path / "lazypkg"
    root.mkdir()
    (root / "__init__.py").write_text("imports = []\n" + INIT)
    (root / "heavy.py").write_text(textwrap.dedent(HEAVY))
    (root / "tools.py").write_text("NAME = 'tools'\n")
    (root / "extra.py").write_text("NAME = 'extra'\n")
    (root / "broken.py").write_text("import a_module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield __import__("lazypkg")
    for name in [m for m in sys.modules if m == "lazypkg" or m.startswith("lazypkg.")]:
        del sys.modules[name]


def test_a_name_is_imported_on_first_read_and_only_once(lazypkg):
    assert lazypkg.imports == []  # importing the package imported nothing it exports
    first = lazypkg.Heavy
    assert lazypkg.imports == ["heavy"]
    assert lazypkg.Heavy is first
    assert isinstance(lazypkg.make(), first)
    assert lazypkg.imports == ["heavy"]


def test_all_lists_every_export_and_the_version_and_star_import_works(lazypkg):
    assert lazypkg.__all__ == ["Heavy", "__version__", "make", "tools"]
    namespace: dict = {}
    exec("from lazypkg import *", namespace)
    assert namespace["make"] is lazypkg.make
    assert namespace["tools"].NAME == "tools"
    assert namespace["__version__"] == "1.0"


def test_dir_lists_the_exports_before_they_are_imported(lazypkg):
    assert {"Heavy", "make", "tools", "__version__"} <= set(dir(lazypkg))
    assert lazypkg.imports == []


def test_an_unlisted_submodule_is_reachable_as_an_attribute(lazypkg):
    assert lazypkg.extra.NAME == "extra"


def test_an_unknown_name_is_an_attribute_error_naming_it(lazypkg):
    with pytest.raises(AttributeError, match=r"module 'lazypkg' has no attribute 'nothing'"):
        _ = lazypkg.nothing
    assert not hasattr(lazypkg, "__wrapped__")  # dunder probes never try an import


def test_a_submodule_that_fails_to_import_reports_its_own_error(lazypkg):
    with pytest.raises(ModuleNotFoundError, match="a_module_that_does_not_exist"):
        _ = lazypkg.broken


def test_peft_core_exports_what_its_type_checking_block_imports():
    assert_lazy_exports_match_type_checking_imports(peft_core)


def test_importing_peft_core_and_the_recipe_options_imports_no_torch():
    imported = top_level_modules_imported_by(
        "import argparse, peft_core\n"
        "from peft_core.recipe_arguments import add_recipe_arguments\n"
        "add_recipe_arguments(argparse.ArgumentParser())\n"
        "peft_core.ConfigError, peft_core.atomic_write_text\n"
    )
    assert "torch" not in imported
    assert "torch" in top_level_modules_imported_by("import peft_core; peft_core.freeze")
