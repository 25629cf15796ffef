"""The package installs on its own, reports its version and depends on peft-core only."""

from __future__ import annotations

from importlib import metadata

import deft


def test_version_matches_the_installed_metadata():
    assert deft.__version__ == metadata.version("deft-peft")


def test_depends_on_peft_core_and_on_no_sibling_method():
    requirements = metadata.requires("deft-peft") or []
    names = {
        r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip()
        for r in requirements
    }
    assert "peft-core" in names
    assert not names & ({"meft", "deft-peft", "point-peft"} - {"deft-peft"})
