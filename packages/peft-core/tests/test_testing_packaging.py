"""The packaging checks the method packages run on themselves catch what they should."""

from __future__ import annotations

from importlib import metadata

import pytest

from peft_core.testing import packaging


def _fake_requires(monkeypatch, requirements):
    monkeypatch.setattr(metadata, "requires", lambda distribution: requirements)


def test_requirement_names_strip_versions_markers_and_extras(monkeypatch):
    _fake_requires(
        monkeypatch,
        ["peft-core<0.2,>=0.1", "torch>=2.4", "transformers[torch]>=4.44; extra == 'hf'"],
    )
    assert packaging.requirement_names("anything") == {"peft-core", "torch", "transformers"}


def test_a_sibling_dependency_is_caught(monkeypatch):
    _fake_requires(monkeypatch, ["peft-core>=0.1,<0.2", "meft>=0.1"])
    with pytest.raises(AssertionError, match="sibling method packages \\['meft'\\]"):
        packaging.assert_depends_on_core_only("deft-peft")


def test_a_missing_core_dependency_is_caught(monkeypatch):
    _fake_requires(monkeypatch, ["torch>=2.4"])
    with pytest.raises(AssertionError, match="does not depend on peft-core"):
        packaging.assert_depends_on_core_only("meft")
