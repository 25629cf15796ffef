"""The package installs on its own, reports its version and depends on peft-core only."""

from __future__ import annotations

from importlib import metadata

import point_peft


def test_version_matches_the_installed_metadata():
    assert point_peft.__version__ == metadata.version("point-peft")


def test_depends_on_peft_core_and_on_no_sibling_method():
    requirements = metadata.requires("point-peft") or []
    names = {
        r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip()
        for r in requirements
    }
    assert "peft-core" in names
    assert not names & ({"meft", "deft-peft", "point-peft"} - {"point-peft"})
