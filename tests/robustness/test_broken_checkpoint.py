"""A checkpoint that is truncated or deleted after it was listed: switching to it (or a job that
names it) fails with a sentence naming the file, and the model loaded before stays loaded and makes
the same pixels as before."""

from __future__ import annotations

import pytest

from modules.errors import UserError
from modules.jobs import JobState
from tests.robustness.rig import pixels, request


from tools.make_test_models import write_test_checkpoint

# how the file is broken -> what the error says (after the file name)
BREAKS = {
    "truncated": r"beta\.safetensors is truncated: tensor \S+ ends at byte \d+ but the file has \d+ bytes\. Download or copy it again\.",
    "deleted": r"beta\.safetensors cannot be read: No such file or directory\. Press refresh\.",
    "emptied": r"beta\.safetensors is not a safetensors file \(it is only 0 bytes\)\.",
    "header overwritten": r"beta\.safetensors is not a valid safetensors file \(unreadable header\)\.",
    "ckpt truncated": r"Cannot read beta\.ckpt: it is corrupt or not a PyTorch checkpoint",
}


def _break(path, how: str) -> None:
    size = path.stat().st_size
    if how == "deleted":
        path.unlink()
        return
    with open(path, "r+b") as handle:
        if how == "header overwritten":
            handle.write(b"\0" * 4096)
        else:
            handle.truncate(0 if how == "emptied" else size // 2)


@pytest.mark.parametrize("how", list(BREAKS))
def test_switching_to_a_broken_checkpoint_keeps_the_old_model(rig, how):
    manager = rig.service.runner.manager
    name = "beta.ckpt" if how.startswith("ckpt") else "beta.safetensors"
    if name == "beta.ckpt":
        (rig.models / "beta.safetensors").unlink()
        write_test_checkpoint(rig.models / name, seed=2)
        manager.registry.refresh()
    before = rig.service.submit_txt2img(request(seed=77)).result(timeout=120)
    assert [entry.stem for entry in manager.registry.checkpoints] == ["alpha", "beta"]  # listed while whole
    _break(rig.models / name, how)

    with pytest.raises(UserError, match="^" + BREAKS[how]):
        manager.switch_checkpoint("beta")
    assert manager.loaded.checkpoint.stem == "alpha"

    job = rig.service.submit_txt2img(request(seed=77, checkpoint="beta"))  # a job that names it
    with pytest.raises(UserError, match="^" + BREAKS[how]):
        job.result(timeout=120)
    assert job.state is JobState.FAILED

    after = rig.service.submit_txt2img(request(seed=77)).result(timeout=120)
    assert manager.loaded.checkpoint.stem == "alpha"
    assert pixels(after.images[0]) == pixels(before.images[0])


def test_the_active_checkpoint_truncated_on_disk_keeps_working_and_a_reload_fails_cleanly(rig):
    manager = rig.service.runner.manager
    before = rig.service.submit_txt2img(request(seed=78)).result(timeout=120)
    _break(rig.models / "alpha.safetensors", "truncated")

    during = rig.service.submit_txt2img(request(seed=78)).result(timeout=120)  # the weights in memory
    with pytest.raises(UserError, match=r"^alpha\.safetensors is truncated"):
        manager.reload()
    after = rig.service.submit_txt2img(request(seed=78)).result(timeout=120)
    assert manager.loaded.checkpoint.stem == "alpha"
    assert pixels(during.images[0]) == pixels(after.images[0]) == pixels(before.images[0])
