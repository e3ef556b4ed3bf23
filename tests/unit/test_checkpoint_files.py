"""Reading checkpoints in every supported container, and refusing bad ones with a sentence."""

from __future__ import annotations

import os
import pickle
import zipfile

import pytest
import torch

from modules.checkpoints.loader import read_diffusers_folder, read_single_file
from modules.checkpoints.tensor_files import SafetensorsFile, open_tensor_file
from modules.checkpoints.weights import read_vae_file, write_ldm_checkpoint
from modules.errors import ModelLoadError, UnsafeCheckpointError
from tools.make_test_models import tiny_spec, write_diffusers_folder, write_test_checkpoint, write_test_vae


def test_ckpt_pickle_with_state_dict_loads(tmp_path):
    spec, written = write_test_checkpoint(tmp_path / "a.safetensors", "sd1", "tiny", seed=4)
    ckpt = tmp_path / "a.ckpt"
    write_ldm_checkpoint(ckpt, spec, written)
    assert zipfile.is_zipfile(ckpt)
    weights = read_single_file(ckpt, torch.float32)
    for key, tensor in written["unet"].items():
        assert torch.equal(weights.tensors["unet"][key], tensor)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload(marker)}, evil)
    with pytest.raises(UnsafeCheckpointError, match="refused.*Nothing from it was executed"):
        open_tensor_file(evil)
    assert not marker.exists()
    # the same for an old-style (non-zip) pickle
    legacy = tmp_path / "legacy.ckpt"
    with open(legacy, "wb") as f:
        pickle.dump({"state_dict": {}, "payload": _Payload(marker)}, f)
    with pytest.raises(ModelLoadError):
        open_tensor_file(legacy)
    assert not marker.exists()


def test_diffusers_folder_loads_with_its_own_configs(tmp_path):
    folder = tmp_path / "tiny-diffusers"
    written = write_diffusers_folder(folder, "sd1", "tiny", seed=5)
    weights = read_diffusers_folder(folder, torch.float32)
    assert weights.spec.family.name == "sd1"
    for component in ("unet", "vae", "text_encoder"):
        for key, tensor in written[component].items():
            assert torch.equal(weights.tensors[component][key], tensor), key


def test_standalone_vae_file_in_ldm_and_diffusers_layouts(tmp_path):
    vae_spec = tiny_spec("sd1").components["vae"]
    path = tmp_path / "x.vae.safetensors"
    written = write_test_vae(path, "sd1", "tiny", seed=9)
    file = SafetensorsFile(path)
    assert "encoder.down.0.block.0.conv1.weight" in file.shapes()  # A1111's bare layout
    tensors = read_vae_file(file, vae_spec, torch.float32)
    file.close()
    for key, tensor in written.items():
        assert torch.equal(tensors[key], tensor)
    from modules.checkpoints.tensor_files import write_safetensors

    diffusers_path = tmp_path / "d.safetensors"
    write_safetensors(diffusers_path, written.items())
    file = SafetensorsFile(diffusers_path)
    assert torch.equal(read_vae_file(file, vae_spec, torch.float32)["decoder.conv_out.weight"], written["decoder.conv_out.weight"])


def test_truncated_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "t.safetensors"
    write_test_checkpoint(path, "sd1", "tiny")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        read_single_file(path, torch.float32)


@pytest.mark.parametrize(
    "content,message",
    [(b"", "not a safetensors file"), (b"\xff" * 64, "bad header length"), (b"\x08\x00\x00\x00\x00\x00\x00\x00notjson!", "unreadable header")],
)
def test_garbage_files_give_a_clear_error(tmp_path, content, message):
    path = tmp_path / "g.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        read_single_file(path, torch.float32)


def test_vae_or_lora_given_as_checkpoint_is_named(tmp_path):
    vae = tmp_path / "v.safetensors"
    write_test_vae(vae)
    with pytest.raises(ModelLoadError, match="only a VAE"):
        read_single_file(vae, torch.float32)


def test_wrong_shapes_are_reported_not_misloaded(tmp_path):
    from modules.checkpoints.tensor_files import write_safetensors

    path = tmp_path / "a.safetensors"
    write_test_checkpoint(path, "sd1", "tiny")
    file = SafetensorsFile(path)
    tensors = [(k, file.read(k)) for k in file.shapes()]
    file.close()
    key = "model.diffusion_model.input_blocks.1.1.proj_out.weight"
    broken = [(k, torch.zeros(3, 3, 1, 1) if k == key else t) for k, t in tensors]
    write_safetensors(path, broken)
    with pytest.raises(ModelLoadError, match="proj_out.weight has shape"):
        read_single_file(path, torch.float32)
