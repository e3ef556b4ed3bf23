"""LoRA files: scanning, A1111's hashes (checked against an independent computation), metadata for
display, the API shape, and a clear refusal of files that are not LoRAs."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from modules.checkpoints.tensor_files import write_safetensors
from modules.errors import ModelLoadError, ModelNotFoundError
from modules.lora.files import LoraLibrary, addnet_hash_safetensors, read_lora_tensors, scan_lora_folder


def _lora_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    return {
        base + ".lora_down.weight": torch.randn(4, 32, generator=g).half(),
        base + ".lora_up.weight": torch.randn(32, 4, generator=g).half(),
        base + ".alpha": torch.tensor(2.0),
    }


def _independent_addnet_hash(path) -> str:
    """kohya's addnet hash written out plainly: sha256 of the bytes after the 8-byte length + header."""
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + header_len:]).hexdigest()


def test_hash_is_sha256_after_the_header_and_ignores_metadata(tmp_path):
    a = tmp_path / "style.safetensors"
    b = tmp_path / "other" / "style-renamed.safetensors"
    write_safetensors(a, sorted(_lora_tensors().items()), {"ss_output_name": "style"})
    write_safetensors(b, sorted(_lora_tensors().items()), {"ss_output_name": "a much longer name", "modelspec.title": "Style"})
    library = LoraLibrary(tmp_path)
    entries = {e.name: e for e in library.refresh()}
    assert set(entries) == {"style", "style-renamed"}
    expected = _independent_addnet_hash(a)
    assert library.sha256(entries["style"]) == expected == addnet_hash_safetensors(a)
    assert library.short_hash(entries["style"]) == expected[:12]
    # Same tensors, different metadata: different files, same LoRA hash (A1111's reason for it).
    assert hashlib.sha256(a.read_bytes()).hexdigest() != hashlib.sha256(b.read_bytes()).hexdigest()
    assert library.sha256(entries["style-renamed"]) == expected
    assert expected != hashlib.sha256(a.read_bytes()).hexdigest()


def test_sshs_model_hash_metadata_wins_and_pickles_hash_the_whole_file(tmp_path):
    write_safetensors(tmp_path / "hashed.safetensors", sorted(_lora_tensors().items()), {"sshs_model_hash": "ab" * 32})
    torch.save(_lora_tensors(1), tmp_path / "old.pt")
    library = LoraLibrary(tmp_path)
    entries = {e.name: e for e in library.refresh()}
    assert library.short_hash(entries["hashed"]) == "ab" * 6
    assert library.sha256(entries["old"]) == hashlib.sha256((tmp_path / "old.pt").read_bytes()).hexdigest()


def test_hash_is_recomputed_when_the_file_changes(tmp_path):
    path = tmp_path / "x.safetensors"
    write_safetensors(path, sorted(_lora_tensors(0).items()))
    library = LoraLibrary(tmp_path)
    first = library.sha256(library.refresh()[0])
    write_safetensors(path, sorted(_lora_tensors(1).items()))
    assert library.sha256(library.refresh()[0]) == _independent_addnet_hash(path) != first


def test_metadata_for_display_and_the_api(tmp_path):
    metadata = {
        "ss_output_name": "detail_tweaker",
        "ss_sd_model_name": "v1-5-pruned-emaonly.safetensors",
        "ss_base_model_version": "sd_v1",
        "modelspec.title": "Detail Tweaker",
        "ss_tag_frequency": json.dumps({"set": {"detail": 3}}),
    }
    write_safetensors(tmp_path / "sub" / "detail.safetensors", sorted(_lora_tensors().items()), metadata)
    (tmp_path / "sub" / "detail.preview.png").write_bytes(b"png")
    write_safetensors(tmp_path / "xl.safetensors", sorted(_lora_tensors().items()), {"ss_base_model_version": "sdxl_base_v1-0"})
    write_safetensors(tmp_path / "bare.safetensors", sorted(_lora_tensors().items()))
    (tmp_path / "notes.txt").write_text("not a model")
    entries = {e.name: e for e in scan_lora_folder(tmp_path)}
    assert set(entries) == {"detail", "xl", "bare"}
    detail = entries["detail"]
    assert (detail.relative, detail.alias, detail.title, detail.base_model, detail.sd_version) == (
        "sub/detail", "detail_tweaker", "Detail Tweaker", "v1-5-pruned-emaonly.safetensors", "sd1")
    assert detail.preview() == tmp_path / "sub" / "detail.preview.png"
    assert entries["xl"].sd_version == "sdxl" and entries["bare"].sd_version == "unknown"
    assert entries["bare"].alias == entries["bare"].title == "bare" and entries["bare"].preview() is None
    api = detail.api_dict()
    assert api["name"] == "detail" and api["alias"] == "detail_tweaker" and api["path"] == str(detail.path)
    assert api["metadata"]["ss_tag_frequency"] == {"set": {"detail": 3}}


def test_find_by_stem_path_or_alias_and_missing_names_say_so(tmp_path):
    write_safetensors(tmp_path / "a" / "one.safetensors", sorted(_lora_tensors().items()), {"ss_output_name": "first"})
    library = LoraLibrary(tmp_path)
    library.refresh()
    assert library.find("one") == library.find("a/one") == library.find("first")
    with pytest.raises(ModelNotFoundError, match="LoRA 'two' was not found"):
        library.find("two")


def test_find_before_refresh_raises(tmp_path):
    with pytest.raises(ModelNotFoundError):
        LoraLibrary(tmp_path).find("anything")


def test_reading_a_lora_and_refusing_other_files(tmp_path):
    write_safetensors(tmp_path / "lora.safetensors", sorted(_lora_tensors().items()), {"ss_network_dim": "4"})
    tensors, metadata = read_lora_tensors(tmp_path / "lora.safetensors")
    assert set(tensors) == set(_lora_tensors()) and metadata == {"ss_network_dim": "4"}
    torch.save(_lora_tensors(), tmp_path / "lora.ckpt")
    assert set(read_lora_tensors(tmp_path / "lora.ckpt")[0]) == set(_lora_tensors())

    write_safetensors(tmp_path / "checkpoint.safetensors", [("model.diffusion_model.conv_in.weight", torch.zeros(4, 4))])
    with pytest.raises(ModelLoadError, match="checkpoint.safetensors is not a LoRA"):
        read_lora_tensors(tmp_path / "checkpoint.safetensors")
    torch.save({"string_to_param": {"*": torch.zeros(1, 8)}, "emb_params": torch.zeros(1, 8)}, tmp_path / "embedding.pt")
    with pytest.raises(ModelLoadError, match="is not a LoRA"):
        read_lora_tensors(tmp_path / "embedding.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"\x05")
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        read_lora_tensors(tmp_path / "broken.safetensors")
    with pytest.raises(ModelNotFoundError):
        read_lora_tensors(tmp_path / "missing.safetensors")
