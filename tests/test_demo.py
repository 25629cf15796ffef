"""`nox -s demo` end to end, in its --smoke form: every section runs on the real MiniLM and the
embedded Rotten-Tomatoes task (32 training and 64 test sentences) and on procedural point clouds.
A tiny Point-MAE stands in for the default backbone, which takes minutes to pre-train.

The numbers of a smoke run mean nothing; the test checks that each section produces its rows,
with the fields its tables print, and that results.json holds them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DEMO = Path(__file__).parents[1] / "demo"


@pytest.fixture
def run_demo(monkeypatch, tmp_path):
    from tiny_backbone import use_tiny_default_backbone

    use_tiny_default_backbone(monkeypatch)
    monkeypatch.setenv("POINT_PEFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.syspath_prepend(str(DEMO))
    for name in ("run_demo", "demo_options", "core_section", "meft_section", "deft_section",
                 "point_section"):  # fmt: skip
        sys.modules.pop(name, None)
    import run_demo

    return run_demo


def test_every_demo_section_runs_end_to_end_and_writes_its_rows(run_demo, tmp_path, capsys):
    output = tmp_path / "demo"
    results = run_demo.main(["--smoke", "--output-dir", str(output)])

    settings = {section: [row["setting"] for row in rows] for section, rows in results.items()}
    assert settings == {
        "core": ["linear probe", "bottleneck adapters", "full fine-tuning"],
        "meft": ["full fine-tuning"] + [f"MEFT{i} (float64 streams)" for i in (1, 2, 3)],
        "deft": ["LoRA", "LoRA + DEFT (λ=1)"],
        "point": ["Point-PEFT", "full fine-tuning", "linear probe"],
    }
    for rows in results.values():
        for row in rows:
            assert 0.0 <= row["test_accuracy"] <= 1.0
            assert 0 < row["trainable_params"] <= row["total_params"]
    for row in results["deft"]:
        assert 0.0 < row["density_masked_percent"] <= 100.0
    assert [row["steps"] for row in results["point"]] == [3, 3, 3]
    assert json.loads((output / "results.json").read_text(encoding="utf-8")) == results

    printed = capsys.readouterr().out
    assert "masked density reduction vs LoRA" in printed
    assert f"results written to {output / 'results.json'}" in printed


def test_smoke_sets_the_caps_that_are_not_given(run_demo):
    def caps(*argv: str) -> tuple[int, int]:
        args = run_demo.parse_arguments(list(argv))
        return args.max_train, args.max_eval

    assert caps() == (2000, 0)
    assert caps("--smoke") == (32, 64)
    assert caps("--smoke", "--max-eval", "0") == (32, 0)
    assert caps("--max-train", "0") == (0, 0)


def test_a_negative_cap_is_refused_naming_the_option(run_demo, capsys):
    with pytest.raises(SystemExit):
        run_demo.parse_arguments(["--max-eval", "-1"])
    assert (
        "argument --max-eval: must be a non-negative integer, got '-1'" in capsys.readouterr().err
    )
