"""The start-up clean-up of temporary files that killed saves left in the outputs folders: only the
writer's own temporary names, only inside <task>-images/<day> or <task>-grids/<day>, only when old
enough not to be a save still in progress (another Easel process may share the folder)."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

from PIL import Image

from modules.outputs import LEFTOVER_AGE_S, OutputWriter


def _age(path: Path, seconds: float) -> Path:
    os.utime(path, (time.time() - seconds, time.time() - seconds))
    return path


def test_only_old_temporary_files_of_the_writer_are_removed(tmp_path: Path):
    writer = OutputWriter(tmp_path / "outputs")
    saved = writer.save(Image.new("RGB", (8, 8), "red"), "x\nSteps: 1, Seed: 1, Size: 8x8", seed=1, prompt="x", model_name="m")
    day = saved.parent
    grids = writer.folder("txt2img", datetime.now(), "grids")
    grids.mkdir(parents=True)
    old = [day / "00001.tmp", day / "00002-7.txt.tmp", grids / "00000.tmp"]
    for path in old:
        path.write_bytes(b"half")
        _age(path, LEFTOVER_AGE_S + 5)
    young = day / "00003.tmp"
    young.write_bytes(b"a save in progress")
    not_ours = [day / "notes.tmp", tmp_path / "outputs" / "00009.tmp", tmp_path / "outputs" / "mine" / "2024-01-01" / "00001.tmp"]
    for path in not_ours:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"user file")
        _age(path, 3600)

    removed = writer.remove_leftovers()

    assert sorted(removed) == sorted(old)
    assert not any(path.exists() for path in old)
    assert young.exists() and saved.exists() and all(path.exists() for path in not_ours)
    assert writer.remove_leftovers() == []
