"""``RunLog``: the line count a checkpoint records matches the file through writes and cuts."""

from __future__ import annotations

import json

from peft_core.trainer.run_log import RunLog


def _file_lines(log: RunLog) -> list[dict]:
    return [json.loads(line) for line in log.path.read_text(encoding="utf-8").splitlines()]


def test_line_count_follows_writes_and_cuts(tmp_path):
    log = RunLog(tmp_path / "log.jsonl", writes=True)
    assert log.line_count() == 0
    for step in range(1, 6):
        log.write({"step": step})
    assert log.line_count() == 5 == len(_file_lines(log))
    log.keep_first(3)
    assert log.line_count() == 3
    assert [line["step"] for line in _file_lines(log)] == [1, 2, 3]
    log.write({"step": 4})
    log.keep_through_step(2)
    assert log.line_count() == 2
    assert [line["step"] for line in _file_lines(log)] == [1, 2]


def test_line_count_reads_an_existing_log_once(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n', encoding="utf-8")
    log = RunLog(path, writes=True)
    reads = []
    read_lines = RunLog._lines
    monkeypatch.setattr(RunLog, "_lines", lambda self: reads.append(1) or read_lines(self))
    assert log.line_count() == 2
    for step in range(3, 10):  # a checkpoint at every step does not re-read the whole log
        log.write({"step": step})
        assert log.line_count() == step
    assert len(reads) == 1


def test_a_process_that_does_not_write_leaves_the_file_alone(tmp_path):
    log = RunLog(tmp_path / "log.jsonl", writes=False)
    log.write({"step": 1})
    log.keep_first(0)
    assert not log.path.exists()
    assert log.line_count() == 0
