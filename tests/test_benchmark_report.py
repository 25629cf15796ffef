"""benchmarks/REPORT.md says what the committed records say, and every figure it shows exists.

The report is rendered from benchmarks/results/*.json by `python -m benchmarks.report`; a renderer
edited without re-rendering, or a record committed without its report, would leave the two
disagreeing, and readers trust the report.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMAGE_LINE = re.compile(r"^!\[[^\]]*\]\((plots/[^)]+)\)$")


@pytest.fixture
def report_module(monkeypatch, tmp_path):
    """benchmarks.report importable, with figures written to a scratch folder, not the tree."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import plotting, report

    monkeypatch.setattr(plotting, "PLOTS", tmp_path / "plots")
    return report


def _records():
    from benchmarks.records import RESULTS_DIR, read_records

    return read_records(RESULTS_DIR)


def _without_figures(text: str) -> list[str]:
    """The report's lines without its image links (those need matplotlib to be rendered)."""
    return [line for line in text.splitlines() if not IMAGE_LINE.match(line)]


def test_the_committed_report_is_rendered_from_the_committed_records(report_module):
    committed = (ROOT / "benchmarks" / "REPORT.md").read_text(encoding="utf-8")
    rendered = report_module.render(_records())
    assert _without_figures(rendered) == _without_figures(committed), (
        "benchmarks/REPORT.md is stale: run `python -m benchmarks.report` and commit the result"
    )


def test_every_record_has_its_own_renderer(report_module):
    generic = [
        record["name"]
        for record in _records()
        if not any(record["name"].startswith(prefix) for prefix in report_module.RENDERERS)
    ]
    assert not generic, f"records shown only as a flattened table: {generic}"


def test_every_figure_the_report_links_is_committed_and_none_is_left_over():
    report = (ROOT / "benchmarks" / "REPORT.md").read_text(encoding="utf-8")
    linked = {m.group(1) for line in report.splitlines() if (m := IMAGE_LINE.match(line))}
    committed = {f"plots/{p.name}" for p in (ROOT / "benchmarks" / "plots").glob("*.png")}
    assert linked, "the report shows no figure"
    assert linked - committed == set(), "linked figures that are not committed"
    assert committed - linked == set(), "committed figures the report no longer shows"


def test_rendering_draws_exactly_the_figures_the_report_links(report_module, tmp_path):
    pytest.importorskip("matplotlib")
    rendered = report_module.render(_records())
    linked = {m.group(1) for line in rendered.splitlines() if (m := IMAGE_LINE.match(line))}
    drawn = {f"plots/{p.name}" for p in (tmp_path / "plots").glob("*.png")}
    assert drawn == linked


def test_re_rendering_unchanged_records_leaves_the_figures_unchanged(report_module, tmp_path):
    pytest.importorskip("matplotlib")
    records = _records()
    report_module.render(records)
    first = {p.name: p.read_bytes() for p in (tmp_path / "plots").glob("*.png")}
    report_module.render(records)
    assert {p.name: p.read_bytes() for p in (tmp_path / "plots").glob("*.png")} == first


def test_a_line_plot_leaves_out_points_a_log_axis_cannot_show(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import plotting

    monkeypatch.setattr(plotting, "PLOTS", tmp_path)
    lines = plotting.line_plot(
        "diverged",
        {
            "converged": ([0, 1, 2], [1e-3, 1e-6, 1e-9]),
            "diverged": ([0, 1, 2], [float("nan"), 0.0, 2.0]),
        },
        xlabel="k",
        ylabel="error",
        title="errors",
        log_y=True,
    )
    assert lines == ["", "![errors](plots/diverged.png)"]
    assert (tmp_path / "diverged.png").stat().st_size > 0


def test_figures_are_named_after_the_record_and_its_device(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.plotting import figure_name

    record = {
        "name": "meft memory and speed bert-base 12L 8x128",
        "run_info": {"device": {"kind": "cuda"}},
    }
    assert figure_name(record) == "meft-memory-and-speed-bert-base-12l-8x128-cuda"
    assert (
        figure_name(record, "saved inputs")
        == "meft-memory-and-speed-bert-base-12l-8x128-saved-inputs-cuda"
    )


def test_the_qlora_comparison_names_what_its_recipe_shares_with_deft_minilm(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.deft.report_sections import _recipe_comparison

    qlora = {"learning_rate": 2e-3, "epochs": 2.0, "batch_size": 32, "max_train": 2000}
    minilm = {
        "run_info": {"config": {"learning_rates": {"LoRA": 2e-3}, "epochs": 4.0, "batch_size": 32}}
    }
    text = _recipe_comparison(qlora, minilm)
    assert text.startswith("same learning_rate, batch_size;")
    assert "different epochs 4.0 there, 2.0 here" in text
    assert "not recorded by deft-minilm: warmup_ratio" in text
    assert "max_train" in text
