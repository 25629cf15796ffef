"""The package reports its installed version and depends on peft-core only."""

from __future__ import annotations

import point_peft
from peft_core.testing.packaging import assert_depends_on_core_only, assert_version_matches_metadata


def test_version_matches_the_installed_metadata():
    assert_version_matches_metadata(point_peft, "point-peft")


def test_depends_on_peft_core_and_on_no_sibling_method():
    assert_depends_on_core_only("point-peft")
