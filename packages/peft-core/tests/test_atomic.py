"""Crash-safe writes: a reader sees the old file or the new one, never a torn one, and no litter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peft_core._atomic import (
    atomic_directory,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    fsync_directory,
)


class Crash(RuntimeError):
    pass


def _entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_atomic_write_text_creates_file_and_parents(tmp_path):
    target = tmp_path / "a" / "b" / "config.json"
    returned = atomic_write_text(target, "héllo\n")
    assert returned == target
    assert target.read_bytes() == "héllo\n".encode()
    assert _entries(target.parent) == ["config.json"]


def test_atomic_write_bytes_replaces_existing(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old contents")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _entries(tmp_path) == ["weights.bin"]


def test_write_callback_gets_a_temporary_in_the_same_directory(tmp_path):
    # Same directory => same filesystem => os.replace is an atomic rename.
    target = tmp_path / "out.txt"
    seen: list[Path] = []

    def write(temporary: Path) -> None:
        seen.append(temporary)
        assert temporary.exists()  # mkstemp created it
        assert not target.exists()  # the target only appears at the very end
        temporary.write_text("done")

    atomic_write(target, write)
    assert len(seen) == 1
    assert seen[0].parent == target.parent
    assert seen[0] != target
    assert not seen[0].exists()
    assert target.read_text() == "done"


@pytest.mark.parametrize("error", [Crash, KeyboardInterrupt])
def test_crash_mid_write_keeps_previous_file_and_leaves_no_temporary(tmp_path, error):
    target = tmp_path / "adapter_model.safetensors"
    previous = b"previous complete file " * 100
    target.write_bytes(previous)
    new = b"NEW" * 1000

    def write_half_then_crash(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            handle.write(new[: len(new) // 2])
        assert temporary.stat().st_size == len(new) // 2  # the torn half really is on disk
        raise error("power cut")

    with pytest.raises(error, match="power cut"):
        atomic_write(target, write_half_then_crash)
    assert target.read_bytes() == previous
    assert _entries(tmp_path) == [target.name]


def test_crash_on_first_write_leaves_nothing(tmp_path):
    target = tmp_path / "fresh.txt"

    def write(temporary: Path) -> None:
        temporary.write_text("half")
        raise Crash("boom")

    with pytest.raises(Crash):
        atomic_write(target, write)
    assert _entries(tmp_path) == []


def test_atomic_directory_success_creates_directory_with_nested_files(tmp_path):
    target = tmp_path / "checkpoint-10"
    with atomic_directory(target) as staging:
        assert staging != target
        assert staging.parent == target.parent
        assert not target.exists()
        (staging / "model.safetensors").write_bytes(b"w")
        (staging / "sub").mkdir()
        (staging / "sub" / "state.json").write_text("{}")
    assert (target / "model.safetensors").read_bytes() == b"w"
    assert (target / "sub" / "state.json").read_text() == "{}"
    assert _entries(tmp_path) == ["checkpoint-10"]


def test_atomic_directory_creates_missing_parents(tmp_path):
    target = tmp_path / "run" / "checkpoints" / "step-5"
    with atomic_directory(target) as staging:
        (staging / "trainer_state.json").write_text("{}")
    assert _entries(target) == ["trainer_state.json"]
    assert _entries(target.parent) == ["step-5"]


def test_atomic_directory_success_replaces_existing_directory(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "stale.bin").write_bytes(b"stale")
    (target / "shared.txt").write_text("old")
    with atomic_directory(target) as staging:
        (staging / "shared.txt").write_text("new")
    assert _entries(target) == ["shared.txt"]  # the stale file did not survive
    assert (target / "shared.txt").read_text() == "new"
    assert _entries(tmp_path) == ["ckpt"]


@pytest.mark.parametrize("error", [Crash, KeyboardInterrupt])
def test_atomic_directory_exception_leaves_no_target_and_no_staging(tmp_path, error):
    target = tmp_path / "ckpt"
    staging_seen: list[Path] = []

    def checkpoint() -> None:
        with atomic_directory(target) as staging:
            staging_seen.append(staging)
            (staging / "model.safetensors").write_bytes(b"partial")
            raise error("mid-checkpoint")

    with pytest.raises(error, match="mid-checkpoint"):
        checkpoint()
    assert not target.exists()
    assert not staging_seen[0].exists()
    assert _entries(tmp_path) == []


def test_atomic_directory_exception_keeps_existing_directory(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"good")

    def checkpoint() -> None:
        with atomic_directory(target) as staging:
            (staging / "model.safetensors").write_bytes(b"bad")
            raise Crash("bad checkpoint")

    with pytest.raises(Crash, match="bad checkpoint"):
        checkpoint()
    assert _entries(target) == ["model.safetensors"]
    assert (target / "model.safetensors").read_bytes() == b"good"
    assert _entries(tmp_path) == ["ckpt"]


def test_fsync_directory_tolerates_missing_directory(tmp_path):
    fsync_directory(tmp_path)  # an existing directory: no error
    fsync_directory(tmp_path / "does-not-exist")  # cannot be opened: silently skipped
    assert _entries(tmp_path) == []


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_written_files_and_directories_get_the_usual_permissions(tmp_path, umask_022):
    # The temporary file (mkstemp: 0600) and directory (mkdtemp: 0700) used to be renamed as they
    # were, so saved weights were unreadable to anyone else sharing the folder.
    new_file = atomic_write_text(tmp_path / "new.json", "{}")
    assert new_file.stat().st_mode & 0o777 == 0o644
    with atomic_directory(tmp_path / "checkpoint") as staging:
        (staging / "weights").write_bytes(b"w")
    assert (tmp_path / "checkpoint").stat().st_mode & 0o777 == 0o755


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_replacing_a_file_keeps_its_permissions(tmp_path, umask_022):
    target = tmp_path / "private.json"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.stat().st_mode & 0o777 == 0o640
    assert target.read_text() == "new"


def test_abandoned_staging_is_removed_by_the_names_the_writers_use(tmp_path):
    # What atomic_write and atomic_directory leave when killed: their own staging names.
    import tempfile

    from peft_core._atomic import remove_abandoned_staging

    left_file = Path(tempfile.mkstemp(prefix=".step-00000008.", suffix=".tmp", dir=tmp_path)[1])
    left_dir = Path(tempfile.mkdtemp(prefix=".step-00000004.", suffix=".tmp", dir=tmp_path))
    other = Path(tempfile.mkdtemp(prefix=".final.", suffix=".tmp", dir=tmp_path))
    kept = tmp_path / "step-00000002"
    kept.mkdir()
    remove_abandoned_staging(tmp_path, "step-*")
    assert not left_file.exists()
    assert not left_dir.exists()
    assert other.exists()  # another target's name
    assert kept.exists()  # a finished checkpoint
    remove_abandoned_staging(tmp_path / "absent")  # nothing to do
