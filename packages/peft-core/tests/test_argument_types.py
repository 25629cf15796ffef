"""Command-line number types: each refuses what it should, in argparse's words, naming the option."""

from __future__ import annotations

import argparse

import pytest

from peft_core import argument_types as types
from peft_core.recipes import resolve_model_path

CASES = [  # type, accepted texts, refused texts
    (types.positive_int, {"1": 1, "32": 32}, ["0", "-1", "2.5", "abc", ""]),
    (types.non_negative_int, {"0": 0, "7": 7}, ["-1", "1e3", "x"]),
    (types.positive_float, {"1e-3": 1e-3, "2": 2.0}, ["0", "-1", "nan", "inf", "1e400", "x"]),
    (types.non_negative_float, {"0": 0.0, "0.5": 0.5}, ["-0.1", "nan", "-inf"]),
    (types.fraction, {"0": 0.0, "1": 1.0, "0.25": 0.25}, ["1.5", "-0.1", "nan"]),
    (types.open_fraction, {"0.5": 0.5}, ["0", "1", "nan"]),
]


@pytest.mark.parametrize(("kind", "accepted", "refused"), CASES)
def test_each_type_accepts_and_refuses(kind, accepted, refused, capsys):
    parser = argparse.ArgumentParser(prog="train")
    parser.add_argument("--value", type=kind)
    for text, value in accepted.items():
        assert parser.parse_args([f"--value={text}"]).value == value
    for text in refused:
        with pytest.raises(SystemExit):
            parser.parse_args([f"--value={text}"])
        error = capsys.readouterr().err
        assert "argument --value: must be a" in error
        assert repr(text) in error


def test_a_model_that_can_only_be_a_folder_must_exist(tmp_path):
    assert resolve_model_path("owner/name") == "owner/name"  # a Hub id: checked by the Hub
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    for missing in (str(tmp_path / "absent"), "./absent", "runs/a/model"):
        with pytest.raises(FileNotFoundError, match="no such folder"):
            resolve_model_path(missing)
