"""How benchmark records are written, resumed and run: a rerun measures afresh unless asked to
resume; a resumed record keeps the provenance of the run that started it; records say which commit
measured them; `--output-dir` and `--quick` keep smoke runs out of benchmarks/results/; the runner
refuses to guess which suites to run.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMIT = {"sha": "a" * 40, "dirty": False}
LATER_COMMIT = {"sha": "b" * 40, "dirty": True}


@pytest.fixture
def records(monkeypatch, tmp_path):
    """benchmarks.records writing to a scratch folder, resuming off, as a fresh process has it."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import records

    monkeypatch.setattr(records, "_settings", {"output_dir": tmp_path / "out", "resume": False})
    monkeypatch.setattr(records, "_resumed", {})
    monkeypatch.setattr(records, "code_version", lambda: COMMIT)
    return records


def _record(records, rows: list[int], name: str = "bench test", config: dict | None = None):
    return records.make_record(
        name,
        method="m",
        model="tiny",
        data="none",
        config={"epochs": 1.0, "seeds": [0, 1]} if config is None else config,
        eval_info={"rows": rows},
    )


def _started_earlier(records) -> Path:
    """A record an interrupted run wrote, with provenance of its own."""
    record = _record(records, [0])
    record["run_info"]["created_at"] = "2020-01-01T00:00:00+00:00"
    record["run_info"]["versions"] = {"torch": "0.0"}
    return records.write_record(record)


def _next_invocation(records, monkeypatch, commit=LATER_COMMIT) -> None:
    """What a new process sees: nothing resumed yet, perhaps another commit checked out."""
    monkeypatch.setattr(records, "_resumed", {})
    monkeypatch.setattr(records, "code_version", lambda: commit)


def test_a_rerun_measures_afresh_unless_asked_to_resume(records, capsys):
    _started_earlier(records)
    assert records.read_matching_record("bench test", {"epochs": 1.0, "seeds": [0, 1]}) is None
    assert "--resume" in capsys.readouterr().out
    fresh = _record(records, [5])
    assert fresh["run_info"]["created_at"] != "2020-01-01T00:00:00+00:00"
    assert "resumed" not in fresh["run_info"]


def test_a_resumed_record_keeps_its_provenance_and_lists_each_resumption(records, monkeypatch):
    path = _started_earlier(records)
    records.allow_resume(True)
    for invocation, commit in enumerate([LATER_COMMIT, {"sha": "c" * 40, "dirty": False}], 1):
        _next_invocation(records, monkeypatch, commit)
        earlier = records.read_matching_record("bench test", {"epochs": 1.0, "seeds": [0, 1]})
        assert earlier is not None
        rows = [*earlier["eval_info"]["rows"], invocation]
        records.write_record(_record(records, rows))
        records.write_record(_record(records, rows))  # rewritten again in the same invocation
        written = json.loads(path.read_text(encoding="utf-8"))
        info = written["run_info"]
        assert written["eval_info"]["rows"] == [0, *range(1, invocation + 1)]
        assert info["created_at"] == "2020-01-01T00:00:00+00:00"
        assert info["commit"] == COMMIT
        assert info["versions"] == {"torch": "0.0"}
        assert [entry["commit"] for entry in info["resumed"]] == [
            LATER_COMMIT,
            {"sha": "c" * 40, "dirty": False},
        ][:invocation]
        assert all(entry["at"] for entry in info["resumed"])


def test_a_resumed_record_with_nothing_new_is_not_rewritten(records, monkeypatch):
    path = _started_earlier(records)
    before = path.read_bytes()
    records.allow_resume(True)
    _next_invocation(records, monkeypatch)
    earlier = records.read_matching_record("bench test", {"epochs": 1.0, "seeds": [0, 1]})
    assert records.write_record(_record(records, earlier["eval_info"]["rows"])) == path
    assert path.read_bytes() == before


def test_a_record_of_another_configuration_is_not_resumed(records, capsys):
    _started_earlier(records)
    records.allow_resume(True)
    assert records.read_matching_record("bench test", {"epochs": 2.0, "seeds": [0, 1]}) is None
    assert "configuration differs in epochs" in capsys.readouterr().out
    # entries a suite may change (more seeds asked for) are ignored when it says so
    found = records.read_matching_record(
        "bench test", {"epochs": 1.0, "seeds": [0]}, ignoring=("seeds",)
    )
    assert found is not None


@pytest.mark.parametrize(
    ("key", "other"),
    [("torch_threads", 977), ("cpu", "another cpu"), ("python", "2.7.18"), ("kind", "cuda"),
     ("cuda_device", "NVIDIA H100")],
)  # fmt: skip
def test_a_record_measured_on_another_device_is_not_resumed(records, capsys, key, other):
    path = _started_earlier(records)
    written = json.loads(path.read_text(encoding="utf-8"))
    written["run_info"]["device"][key] = other
    path.write_text(json.dumps(written), encoding="utf-8")
    records.allow_resume(True)
    assert records.read_matching_record("bench test", {"epochs": 1.0, "seeds": [0, 1]}) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "another device" in out
    assert key in out
    assert "resumed" not in _record(records, [1])["run_info"]


def test_records_carry_the_commit_and_the_versions_of_the_code_that_ran(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import peft_core
    from benchmarks import records

    record = _record(records, [0])
    commit = record["run_info"]["commit"]
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        assert commit is None
    else:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert commit["sha"] == sha
        assert isinstance(commit["dirty"], bool)
    # installed metadata of an editable install keeps the version it was installed at
    assert record["run_info"]["versions"]["peft-core"] == peft_core.__version__


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_commit_is_dirty_for_code_changes_but_not_for_records_or_the_report(
    monkeypatch, tmp_path
):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import records

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
             *args], cwd=tmp_path, check=True, capture_output=True,
        )  # fmt: skip

    bench = tmp_path / "benchmarks"
    (bench / "results").mkdir(parents=True)
    (bench / "suite.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    monkeypatch.setattr(records, "BENCHMARKS_DIR", bench)

    def version():
        records.code_version.cache_clear()
        return records.code_version()

    try:
        first = version()
        assert first is not None
        assert len(first["sha"]) == 40
        assert not first["dirty"]
        (bench / "results" / "bench-cpu.json").write_text("{}\n")
        (bench / "REPORT.md").write_text("# report\n")
        (bench / "plots").mkdir()
        (bench / "plots" / "figure.png").write_bytes(b"png")
        assert not version()["dirty"]
        (bench / "suite.py").write_text("x = 2\n")
        assert version()["dirty"]
        monkeypatch.setattr(records, "BENCHMARKS_DIR", tmp_path.parent / "no-checkout-here")
        assert version() is None
    finally:
        records.code_version.cache_clear()


def test_records_go_to_the_output_dir_and_quick_runs_to_their_own_folder(records, tmp_path):
    assert records.configure(quick=False, resume=False) == records.RESULTS_DIR
    assert records.configure(quick=True, resume=False) == records.QUICK_RESULTS_DIR
    assert records.QUICK_RESULTS_DIR != records.RESULTS_DIR
    assert records.configure(quick=True, resume=True, directory=tmp_path / "x") == tmp_path / "x"
    assert records.resume_allowed()
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(records.QUICK_RESULTS_DIR / "a-cpu.json")], cwd=ROOT
    )
    if shutil.which("git") and (ROOT / ".git").exists():
        assert ignored.returncode == 0, "benchmarks/results-quick/ is not ignored by git"


@pytest.fixture
def runner(records, monkeypatch):
    """benchmarks.run with one fake suite, which writes one record."""
    from benchmarks import run

    suite = types.ModuleType("fake_benchmark_suite")

    def main(quick: bool = False):
        name = "fake suite" + (" quick" if quick else "")
        earlier = records.read_matching_record(name, {"size": 1})
        rows = [] if earlier is None else earlier["eval_info"]["rows"]
        return [records.write_record(_record(records, [*rows, len(rows)], name, {"size": 1}))]

    suite.main = main
    monkeypatch.setitem(sys.modules, suite.__name__, suite)
    monkeypatch.setattr(run, "SUITES", {"fake": suite.__name__})
    return run


def test_the_runner_writes_where_output_dir_says(runner, records, tmp_path):
    target = tmp_path / "elsewhere"
    assert runner.main(["fake", "--output-dir", str(target)]) == 0
    assert list(target.iterdir()) == [records.record_path("fake suite", target)]
    assert not records.record_path("fake suite", records.RESULTS_DIR).exists()
    # resuming is off unless asked for, and then reads from that folder too
    assert runner.main(["fake", "--output-dir", str(target)]) == 0
    assert json.loads(next(target.iterdir()).read_text())["eval_info"]["rows"] == [0]
    assert runner.main(["fake", "--output-dir", str(target), "--resume"]) == 0
    assert json.loads(next(target.iterdir()).read_text())["eval_info"]["rows"] == [0, 1]


def test_the_runner_refuses_to_run_without_a_suite(runner, capsys):
    with pytest.raises(SystemExit) as exit_:
        runner.main([])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "name at least one suite, or 'all'" in err
    assert "fake" in err


def test_the_runner_refuses_an_unknown_suite_and_lists_the_known_ones(runner, capsys):
    with pytest.raises(SystemExit) as exit_:
        runner.main(["fake", "no-such-suite"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown suite 'no-such-suite'" in err
    assert "suites: fake" in err
    assert "[]" not in err


def test_the_help_lists_every_suite_with_its_stated_duration(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import run

    with pytest.raises(SystemExit):
        run.main(["--help"])
    out = capsys.readouterr().out
    assert "[]" not in out
    listed = [line.split()[0] for line in out.split("suites (durations")[1].splitlines()[1:]]
    assert listed == [*run.SUITES, "all"]
    assert run.stated_duration("meft-accuracy") == "about 1 h on 2 quiet CPU cores"
    assert run.stated_duration("core") is None


def test_the_report_leaves_out_quick_runs_and_shows_the_commit(records, monkeypatch, tmp_path):
    from benchmarks import plotting, report

    monkeypatch.setattr(plotting, "PLOTS", tmp_path / "plots")
    kept = _record(records, [1], "bench kept")
    quick = _record(records, [1], "bench kept quick")
    flagged = _record(records, [1], "bench flagged", {"quick": True})
    text = report.render([kept, quick, flagged])
    assert "## bench kept\n" in text
    assert "bench kept quick" not in text
    assert "bench flagged" not in text
    assert "commit aaaaaaa;" in text
    kept["run_info"]["commit"] = None
    assert "commit" not in report.render([kept])


def test_the_learning_rate_note_is_shown_only_for_records_that_need_it(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.meft.report_sections import learning_rate_section

    run = {"learning_rate": 1e-3, "best_validation_accuracy": 0.8, "test_accuracy": 0.79}
    info = {"runs": [run], "picked_learning_rates": [1e-3], "picked_test_accuracies": [0.79]}
    note = "skipped the evaluation"
    assert note in "\n".join(learning_rate_section({"eval_info": info}))
    fixed = {**info, "best_validation_includes_last_epoch": True}
    assert note not in "\n".join(learning_rate_section({"eval_info": fixed}))


def test_interleaved_timing_keeps_what_each_suite_asked_for(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.timing import time_interleaved

    calls = {"a": 0, "b": 0}

    def counted(name):
        def fn():
            calls[name] += 1

        return fn

    timings = time_interleaved({n: counted(n) for n in calls}, 3, warmup=2, repeats=2)
    assert calls == {"a": 3 + 3 * 2, "b": 3 + 3 * 2}  # warm-up round: 2 + 1 untimed
    assert sorted(timings["a"]) == ["median_ms", "min_ms", "samples"]
    assert timings["a"]["samples"] == 6
    with_max = time_interleaved({"a": counted("a")}, 1, warmup=0, keep_max=True)
    assert with_max["a"]["max_ms"] >= with_max["a"]["median_ms"] >= with_max["a"]["min_ms"]


def test_interleaved_samples_keep_the_order_of_the_rounds(monkeypatch):
    """Suites pair the n-th samples of two rows as one round's: a row that slows down round by
    round must show it in that order."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.timing import time_interleaved

    calls = []

    def slowing():
        calls.append(None)
        time.sleep(0.01 * len(calls))  # the untimed warm-up call is the first

    timings = time_interleaved({"slowing": slowing, "quick": lambda: None}, 3, warmup=0,
                               keep_samples=True)  # fmt: skip
    samples = timings["slowing"]["samples_ms"]
    assert len(samples) == timings["slowing"]["samples"] == 3
    assert samples == sorted(samples)
    assert samples[-1] - samples[0] >= 15
    assert timings["slowing"]["median_ms"] == statistics.median(samples)
    assert len(timings["quick"]["samples_ms"]) == 3


def test_an_accuracy_suite_resumes_with_a_setting_added(records, monkeypatch):
    """A setting added to an accuracy suite is run on --resume; the runs kept are those of the
    settings still asked for at the learning rate they were recorded with."""
    from benchmarks.meft import bench_accuracy

    trained = []

    def run_one(setting, seed, max_train, epochs):
        trained.append((setting, seed))
        return {"seed": seed, "test_accuracy": 0.8, "train_seconds": 1.0,
                "trainable_params": 1, bench_accuracy.LAST_EPOCH_KEY: True}  # fmt: skip

    monkeypatch.setattr(bench_accuracy, "run_one", run_one)
    monkeypatch.setattr(bench_accuracy, "summarise_setting", lambda setting, rows: {"runs": rows})
    monkeypatch.setattr(bench_accuracy, "_record", _accuracy_record(records))
    full, meft1, meft3 = "full fine-tuning", "MEFT1 (float64 streams)", "MEFT3 (float64 streams)"
    bench_accuracy.run_accuracy([full, meft1], 10.0, "acc test", False, seeds=(0, 1))
    assert trained == [(full, 0), (meft1, 0), (full, 1), (meft1, 1)]  # seed by seed

    trained.clear()
    _next_invocation(records, monkeypatch)
    records.allow_resume(True)
    bench_accuracy.run_accuracy([full, meft1, meft3], 10.0, "acc test", False, seeds=(0, 1))
    assert trained == [(meft3, 0), (meft3, 1)]

    trained.clear()
    _next_invocation(records, monkeypatch)
    monkeypatch.setitem(bench_accuracy.SETTINGS, meft1, (bench_accuracy.SETTINGS[meft1][0], 1e-3))
    bench_accuracy.run_accuracy([full, meft1, meft3], 10.0, "acc test", False, seeds=(0, 1))
    assert trained == [(meft1, 0), (meft1, 1)]  # another learning rate: measured again


def test_an_accuracy_suite_remeasures_runs_recorded_before_the_last_epoch_was_evaluated(
    records, monkeypatch
):
    """--resume measures again, seed by seed, each run whose best validation figure left out the
    last epoch, and keeps it in the record until its replacement is written."""
    from benchmarks.meft import bench_accuracy

    full, meft1 = "full fine-tuning", "MEFT1 (float64 streams)"
    trained, old_trainer = [], {"stale": {(full, 1), (meft1, 1)}}

    def run_one(setting, seed, max_train, epochs):
        trained.append((setting, seed))
        current = (setting, seed) not in old_trainer["stale"]
        return {"seed": seed, "test_accuracy": 0.8, "train_seconds": 1.0,
                "trainable_params": 1, bench_accuracy.LAST_EPOCH_KEY: current}  # fmt: skip

    monkeypatch.setattr(bench_accuracy, "run_one", run_one)
    monkeypatch.setattr(bench_accuracy, "summarise_setting", lambda setting, rows: {"runs": rows})
    monkeypatch.setattr(bench_accuracy, "_record", _accuracy_record(records))
    bench_accuracy.run_accuracy([full, meft1], 10.0, "acc test", False, seeds=(0, 1))
    trained.clear()
    old_trainer["stale"] = set()  # the trainer fixed
    _next_invocation(records, monkeypatch)
    records.allow_resume(True)
    written = []
    write_record = bench_accuracy.write_record
    monkeypatch.setattr(
        bench_accuracy,
        "write_record",
        lambda record: written.append(record) or write_record(record),
    )
    bench_accuracy.run_accuracy([full, meft1], 10.0, "acc test", False, seeds=(0, 1))

    assert trained == [(full, 1), (meft1, 1)]
    seeds_after_first_rerun = {
        setting: [run["seed"] for run in row["runs"]]
        for setting, row in written[0]["eval_info"]["settings"].items()
    }
    assert seeds_after_first_rerun == {full: [0, 1], meft1: [0, 1]}  # the stale one still kept
    final = written[-1]["eval_info"]["settings"]
    assert all(bench_accuracy.is_current(run) for row in final.values() for run in row["runs"])


def _accuracy_record(records):
    def record(name, settings, config, max_train):
        return records.make_record(
            name, method="m", model="tiny", data="none", config=config,
            eval_info={"settings": settings},
        )  # fmt: skip

    return record


def test_step_time_ratios_are_taken_round_by_round(records, monkeypatch, tmp_path):
    """meft-step-time pairs each reversible step with the vanilla step of its own round: with
    hand-made samples the per-round ratios, their median and the estimate are exact."""
    from benchmarks import plotting
    from benchmarks.meft import bench_step_time
    from benchmarks.meft.report_sections import step_time_section

    def row(*samples_ms):
        ordered = sorted(samples_ms)
        return {"median_ms": statistics.median(samples_ms), "min_ms": ordered[0],
                "max_ms": ordered[-1], "samples": len(samples_ms), "samples_ms": list(samples_ms)}  # fmt: skip

    timings = {}
    for variant in bench_step_time.VARIANTS:
        timings[f"{variant} vanilla backprop"] = row(100.0, 200.0, 400.0)  # a load that grows
        timings[f"{variant} forward (no autograd)"] = row(50.0, 100.0, 200.0)
        timings[variant] = row(150.0, 260.0, 560.0)  # 1.5, 1.3, 1.4 of its round's vanilla step
    timings[bench_step_time.FLOAT64_ROW] = row(170.0, 340.0, 720.0)  # 1.7, 1.7, 1.8
    timings[bench_step_time.TOP_LAYER_ROW] = row(140.0, 280.0, 560.0)  # 1.4 in every round
    ratios = bench_step_time.ratios(timings, num_layers=4)
    assert ratios["MEFT2"]["ratio_per_round"] == pytest.approx([1.5, 1.3, 1.4])
    assert ratios["MEFT2"]["median_ratio_per_round"] == pytest.approx(1.4)
    assert ratios["MEFT2"]["ratio_of_medians"] == pytest.approx(1.3)
    assert ratios["MEFT2"]["estimate"] == pytest.approx(1.5)
    assert ratios["MEFT2"]["verdict"] == "meets"
    assert ratios[bench_step_time.FLOAT64_ROW]["verdict"] == "misses"
    # the top layer is not recomputed: 3 of the 4 layers' forward, 1 + 0.75 * 200 / 200
    assert ratios[bench_step_time.TOP_LAYER_ROW]["estimate"] == pytest.approx(1.375)
    assert bench_step_time.verdict(1.47, 1.5005) == "on the bound"
    assert bench_step_time.verdict(1.5071, 1.4958) == "on the bound"

    record = records.make_record(
        "meft step time in one process bert-base 12L 8x128", method="m", model="bert",
        data="random", config={"rounds": 3, "untimed_calls_per_row": 1},
        train_info={"rows": timings, "versus_vanilla": ratios, "target": 1.5,
                   "load_average_1min": {"before": 1.0, "after": 2.0}},
    )  # fmt: skip
    monkeypatch.setattr(plotting, "PLOTS", tmp_path / "plots")
    text = "\n".join(step_time_section(json.loads(json.dumps(record, sort_keys=True))))
    assert "| MEFT2 | 1.40 | 1.30 – 1.50 | 1.30 | 1.50 | meets |" in text
    assert f"| {bench_step_time.FLOAT64_ROW} | 1.70 | 1.70 – 1.80 | 1.70 | 1.50 | misses |" in text
    assert "| MEFT1 vanilla backprop | 0.200 | 0.100 | 0.400 |" in text
    assert text.index("| MEFT1 |") < text.index("| MEFT2 |") < text.index("float64 streams |")
    assert f"| {bench_step_time.TOP_LAYER_ROW} | 1.40 | 1.40 – 1.40 | 1.40 | 1.38 | meets |" in text
    # a record from before the allocator setting: glibc's default, no kernel columns
    assert "Allocator: glibc default." in text
    assert "kernel CPU s" not in text

    for name, timing in timings.items():
        timing["kernel_s_per_call"] = [0.5, 0.0, 0.25]
        timing["minor_faults_per_call"] = [1000, 0, 2500] if "vanilla" in name else [0, 0, 0]
    record["run_info"]["config"]["allocator"] = "kept by a test"
    text = "\n".join(step_time_section(json.loads(json.dumps(record, sort_keys=True))))
    assert "Allocator: kept by a test." in text
    assert "| MEFT1 vanilla backprop | 0.200 | 0.100 | 0.400 | 0.25 | 1,000 |" in text
    assert "| MEFT1 | 0.260 | 0.150 | 0.560 | 0.25 | 0 |" in text
