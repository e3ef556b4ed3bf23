"""A full disk or an outputs folder that cannot be written: the job still returns its images, says
that they were not saved and why, records them in the history without a file, and leaves no
half-written or temporary file behind. The next job saves again once the disk has room.

The tests run as root here, where chmod does not stop writes, so the faults are made other ways:
an outputs folder whose parent is a regular file (the OS answers ENOTDIR, a real error from a real
mkdir), a read-only folder by chmod when not root, and a writer whose disk fills half-way through
an image (a subclass of the real OutputWriter: its write of the bytes stops with ENOSPC after half
of them are on disk, so the clean-up of the real save() is what is tested).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from modules.jobs import JobState
from modules.outputs import OutputWriter
from tests.robustness.rig import make_rig, pixels, request


class DiskFillsUp(OutputWriter):
    """The real writer on a disk with room for half an image while `full` is set."""

    def __init__(self, outputs_dir: Path):
        super().__init__(outputs_dir)
        self.full = True
        self.partial_writes = 0

    def _write(self, file: BinaryIO, data: bytes) -> None:
        if not self.full:
            return super()._write(file, data)
        temp_name = os.readlink(f"/proc/self/fd/{file.fileno()}")
        file.write(data[: len(data) // 2])
        file.flush()
        self.partial_writes += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), temp_name)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_disk_full_mid_image_returns_the_images_says_why_and_leaves_nothing(rig):
    service = rig.service
    reference = service.submit_txt2img(request(seed=31, batch_size=2, save_samples=False)).result(timeout=120)
    service.runner.recorder.outputs = writer = DiskFillsUp(rig.outputs)

    job = service.submit_txt2img(request(seed=31, batch_size=2))
    result = job.result(timeout=120)

    assert job.state is JobState.DONE and writer.partial_writes == 2
    assert [pixels(i) for i in result.images] == [pixels(i) for i in reference.images]
    assert result.paths == [None, None]
    assert any(note.startswith("2 of 2 images were not saved to the outputs folder: No space left on device")
               for note in result.notes), result.notes
    assert files_under(rig.outputs) == []  # no half image, no .tmp
    rows = rig.history.search(limit=2)  # the newest two: this job's (the reference run is recorded too)
    assert [(row.seed, row.path) for row in rows] == [(32, None), (31, None)]  # recorded, without a file

    writer.full = False  # room again: the next job saves as usual
    saved = service.submit_txt2img(request(seed=40)).result(timeout=120)
    assert saved.notes == [] and saved.paths[0] is not None and saved.paths[0].is_file()
    assert [p.suffix for p in files_under(rig.outputs)] == [".png"]


def test_outputs_folder_that_cannot_be_created(tmp_path, tokenizer_cache):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the outputs folder's parent should be")
    rig = make_rig(tmp_path, tokenizer_cache, outputs=blocker / "outputs")
    try:
        result = rig.service.submit_txt2img(request(seed=5)).result(timeout=120)
        assert len(result.images) == 1 and result.paths == [None]
        assert result.notes and result.notes[0].startswith("The image was not saved to the outputs folder: Not a directory ("), result.notes
        assert str(blocker) in result.notes[0]
        assert rig.history.search()[0].path is None and rig.history.search()[0].seed == 5
    finally:
        rig.queue.close()
        rig.history.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway; the other tests cover it")
def test_read_only_outputs_folder(rig):
    folder = rig.service.runner.recorder.outputs.folder("txt2img", __import__("datetime").datetime.now())
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    try:
        result = rig.service.submit_txt2img(request()).result(timeout=120)
    finally:
        folder.chmod(0o755)
    assert result.images and result.paths == [None]
    assert "not saved to the outputs folder: Permission denied" in result.notes[0]
    assert files_under(rig.outputs) == []


def test_api_answers_with_the_images_and_a_note_when_saving_fails(tmp_path):
    from tests.api.api_helpers import decode, info_of, make_client
    from tools.make_test_models import write_test_checkpoint

    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    write_test_checkpoint(models / "Stable-diffusion" / "alpha.safetensors", seed=1)
    data = tmp_path / "data"
    data.mkdir()
    (data / "outputs").write_text("not a folder")  # every save fails with ENOTDIR
    client, services = make_client(models, data)
    try:
        with client:
            response = client.post("/sdapi/v1/txt2img", json={"prompt": "kept", "seed": 9, "steps": 3, "width": 64, "height": 64})
            info = info_of(response)
            image = decode(response.json()["images"][0])
            assert image.size == (64, 64) and "Seed: 9" in image.info["parameters"]
            assert info["notes"][0].startswith("The image was not saved to the outputs folder: Not a directory"), info["notes"]
    finally:
        services.close()
    assert (data / "outputs").read_text() == "not a folder"
