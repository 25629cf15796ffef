"""The package reports its installed version, depends on peft-core only, and imports torch only
when something needs it (so its command answers --help and usage errors at once)."""

from __future__ import annotations

import pytest

import point_peft
from peft_core.testing.packaging import (
    assert_depends_on_core_only,
    assert_lazy_exports_match_type_checking_imports,
    assert_version_matches_metadata,
    top_level_modules_imported_by,
)


def test_version_matches_the_installed_metadata():
    assert_version_matches_metadata(point_peft, "point-peft")


def test_depends_on_peft_core_and_on_no_sibling_method():
    assert_depends_on_core_only("point-peft")


def test_public_names_are_the_type_checking_imports():
    assert_lazy_exports_match_type_checking_imports(point_peft)


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["train", "--help"], ["train", "--method", "nope"]],
    ids=["help", "train-help", "usage-error"],
)
def test_the_command_answers_without_importing_torch(argv):
    imported = top_level_modules_imported_by(f"from point_peft.cli import main; main({argv!r})")
    assert "torch" not in imported


def test_importing_the_package_imports_no_torch_until_a_name_is_read():
    assert "torch" not in top_level_modules_imported_by("import point_peft")
