"""modules/files.py: a write replaces a file whole or not at all, and a damaged file moved aside is
never overwritten."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

import pytest

from modules import files
from modules.files import move_aside, write_atomically


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("data", [b"new \xff bytes", "new text, caf\u00e9", lambda file: file.write(b"new from a writer")],
                         ids=["bytes", "str", "callable"])
def test_the_content_is_replaced_whole(tmp_path: Path, data):
    path = tmp_path / "file.txt"
    path.write_bytes(b"an old content that is longer than the new one\n" * 100)
    write_atomically(path, data)
    expected = data if isinstance(data, bytes) else data.encode("utf-8") if isinstance(data, str) else b"new from a writer"
    assert path.read_bytes() == expected
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_the_folder_is_created(tmp_path: Path):
    path = tmp_path / "a" / "b" / "settings.json"
    write_atomically(path, "{}")
    assert path.read_text() == "{}"


def test_a_failing_writer_leaves_the_old_file_and_no_temporary_file(tmp_path: Path):
    path = tmp_path / "cache.json"
    path.write_text("old")

    def half_then_full_disk(file: BinaryIO) -> None:
        file.write(b"half of the new")
        file.flush()
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, half_then_full_disk)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def _interrupted(file: BinaryIO) -> None:
    file.write(b"{")
    raise KeyboardInterrupt  # not an Exception: the clean-up must catch BaseException


def test_an_interrupted_first_write_leaves_nothing(tmp_path: Path):
    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "new.json", _interrupted)
    assert list(tmp_path.iterdir()) == []


def test_a_given_temporary_file_is_used_and_removed_on_failure(tmp_path: Path):
    path, claim = tmp_path / "00001-5.png", tmp_path / "00001.tmp"
    claim.touch()
    write_atomically(path, b"image", temporary=claim)
    assert path.read_bytes() == b"image" and not claim.exists()

    claim.touch()
    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "00002-5.png", _interrupted, temporary=claim)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00001-5.png"]


def test_an_existing_files_mode_is_kept(tmp_path: Path):
    path = tmp_path / "styles.csv"
    path.write_text("old")
    path.chmod(0o640)
    write_atomically(path, "new")
    assert _mode(path) == 0o640
    write_atomically(path, "newer", mode=0o600)
    assert _mode(path) == 0o600


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_new_file_gets_0644_less_the_umask_not_0600(tmp_path: Path, umask: int):
    before = os.umask(umask)
    try:
        write_atomically(tmp_path / "model.safetensors", b"weights")
    finally:
        os.umask(before)
    assert _mode(tmp_path / "model.safetensors") == 0o644 & ~umask  # 0o644, 0o640: never mkstemp's 0600


def test_fsync_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(files.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    write_atomically(tmp_path / "config.json", "{}")
    assert synced == []
    write_atomically(tmp_path / "styles.csv", "name,prompt\n", fsync=True)
    assert len(synced) == 1


def test_move_aside_never_overwrites_an_earlier_damaged_file(tmp_path: Path):
    path = tmp_path / "config.json"
    moved = []
    for content in ("{first", "{second", "{third"):
        path.write_text(content)
        moved.append(move_aside(path))
        assert not path.exists()
    assert [p.name for p in moved] == ["config.json.corrupt", "config.json.corrupt.1", "config.json.corrupt.2"]
    assert [p.read_text() for p in moved] == ["{first", "{second", "{third"]


def test_move_aside_with_another_suffix_and_a_missing_file(tmp_path: Path):
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"damaged")
    assert move_aside(path, ".corrupt-20240501-120000").name == "history.sqlite3.corrupt-20240501-120000"
    with pytest.raises(FileNotFoundError):  # the caller decides whether that stops it
        move_aside(path)
