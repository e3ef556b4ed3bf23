"""The LDM writer and reader are exact inverses, agree with diffusers' own converters, and infer
the architecture of non-standard sizes from shapes alone."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)

from modules.checkpoints.architecture import HINTS_METADATA_KEY
from modules.checkpoints.ldm_keys import strip_text_model
from modules.checkpoints.loader import read_single_file
from modules.checkpoints.tensor_files import SafetensorsFile, write_safetensors
from modules.checkpoints.weights import _instantiate
from tools.make_test_models import tiny_spec, write_test_checkpoint

CASES = [
    ("sd1", "tiny", None),
    ("sd1", "small", None),
    ("sd1-inpaint", "tiny", 9),
    ("sd2", "tiny", None),
    ("sd2", "small", None),
    ("sdxl-base", "tiny", None),
    ("sdxl-base", "small", None),
    ("sdxl-refiner", "tiny", None),
]


def _assert_same(loaded: dict, written: dict) -> None:
    assert loaded.keys() == written.keys()
    for component, tensors in written.items():
        assert loaded[component].keys() == tensors.keys(), component
        for key, tensor in tensors.items():
            assert torch.equal(loaded[component][key], tensor), f"{component}.{key}"


@pytest.mark.parametrize("family,size,in_channels", CASES)
def test_write_then_read_returns_identical_tensors(tmp_path, family, size, in_channels):
    path = tmp_path / f"{family}-{size}.safetensors"
    spec, written = write_test_checkpoint(path, family, size, seed=3, in_channels=in_channels)
    weights = read_single_file(path, torch.float32)
    assert weights.spec.family.name == family
    assert weights.spec.signature() == spec.signature()
    _assert_same(weights.tensors, written)


@pytest.mark.parametrize("family,size,in_channels", [c for c in CASES if not c[0].startswith("sdxl")])
def test_architecture_from_shapes_alone(tmp_path, family, size, in_channels):
    """Without our metadata hints the same architecture comes back (SDXL needs one hint: its
    time-embedding width, which no tensor shape carries, so it is excluded)."""
    path = tmp_path / "with-hints.safetensors"
    spec, written = write_test_checkpoint(path, family, size, seed=1, in_channels=in_channels)
    bare = tmp_path / "bare.safetensors"
    file = SafetensorsFile(path)
    assert HINTS_METADATA_KEY in file.metadata
    write_safetensors(bare, [(k, file.read(k)) for k in file.shapes()])
    file.close()
    weights = read_single_file(bare, torch.float32)
    for name, component in spec.components.items():
        inferred = weights.spec.components[name].config
        differing = {k for k in component.config if component.config[k] != inferred.get(k)}
        assert differing <= {"sample_size"}, (name, differing)  # the default resolution is no shape
    _assert_same(weights.tensors, written)


def test_unet_config_matches_sizes(tmp_path):
    path = tmp_path / "small.safetensors"
    write_test_checkpoint(path, "sd1", "small", seed=0)
    unet = read_single_file(path, torch.float32).spec.components["unet"].config
    assert unet["block_out_channels"] == [32, 64, 64]
    assert unet["layers_per_block"] == 2
    assert unet["down_block_types"] == ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
    assert unet["cross_attention_dim"] == 64
    assert unet["attention_head_dim"] == 8


def _ldm_dict(path) -> dict:
    file = SafetensorsFile(path)
    out = {k: file.read(k).clone() for k in file.shapes()}
    file.close()
    return out


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl-base"])
def test_reader_agrees_with_diffusers_converters(tmp_path, family):
    path = tmp_path / "m.safetensors"
    spec, written = write_test_checkpoint(path, family, "small", seed=7)
    ldm = _ldm_dict(path)
    unet = convert_ldm_unet_checkpoint(ldm, spec.components["unet"].config)
    assert unet.keys() == written["unet"].keys()
    for key in unet:
        assert torch.equal(unet[key], written["unet"][key]), key
    vae = convert_ldm_vae_checkpoint(ldm, spec.components["vae"].config)
    for key, tensor in written["vae"].items():
        assert torch.equal(vae[key].reshape(tensor.shape), tensor), key
    if family == "sd1":
        text = convert_ldm_clip_checkpoint(ldm)
    else:
        name, prefix = ("text_encoder", "cond_stage_model.model.") if family == "sd2" else ("text_encoder_2", "conditioner.embedders.1.model.")
        module = _instantiate(spec.components[name].class_name, spec.components[name].config)
        text = convert_open_clip_checkpoint(module, ldm, prefix=prefix)
    text = {strip_text_model(k): v for k, v in text.items()}
    name = "text_encoder" if family != "sdxl-base" else "text_encoder_2"
    for key, tensor in written[name].items():
        assert torch.equal(text[strip_text_model(key)], tensor), key


def test_fp16_file_loads_as_float32_of_the_fp16_values(tmp_path):
    path = tmp_path / "half.safetensors"
    _, written = write_test_checkpoint(path, "sd1", "tiny", seed=2, dtype=torch.float16)
    header = json.loads(path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F16"}
    weights = read_single_file(path, torch.float32)
    key = "conv_in.weight"
    assert weights.tensors["unet"][key].dtype == torch.float32
    assert torch.equal(weights.tensors["unet"][key], written["unet"][key].half().float())


def test_tiny_spec_families_have_expected_text_encoders():
    assert set(tiny_spec("sdxl-base").components) == {"unet", "vae", "text_encoder", "text_encoder_2"}
    assert set(tiny_spec("sdxl-refiner").components) == {"unet", "vae", "text_encoder_2"}
    assert tiny_spec("sd2").components["text_encoder"].config["hidden_act"] == "gelu"


def _write_variant(path, family, **unet_changes):
    from dataclasses import replace

    from modules.checkpoints.architecture import ComponentSpec
    from modules.checkpoints.weights import normalize_spec, write_ldm_checkpoint
    from tools.make_test_models import random_weights

    spec = tiny_spec(family, "small")
    unet = dict(spec.components["unet"].config, **unet_changes)
    spec = normalize_spec(replace(spec, components={**spec.components, "unet": ComponentSpec("UNet2DConditionModel", unet)}))
    weights = random_weights(spec, 11)
    write_ldm_checkpoint(path, spec, weights)
    return spec, weights


def test_distilled_layout_without_mid_block_loads(tmp_path):
    """BK-SDM-style models drop the UNet's middle block; shapes alone must tell."""
    path = tmp_path / "bk.safetensors"
    spec, written = _write_variant(path, "sd1", mid_block_type=None)
    weights = read_single_file(path, torch.float32)
    assert weights.spec.components["unet"].config["mid_block_type"] is None
    _assert_same(weights.tensors, written)


def test_extra_keys_of_real_checkpoints_are_ignored(tmp_path):
    """Real files carry EMA copies, position_ids, schedule buffers: none of them stops a load."""
    path = tmp_path / "a.safetensors"
    _, written = write_test_checkpoint(path, "sd1", "tiny", seed=5)
    file = SafetensorsFile(path)
    items = [(k, file.read(k)) for k in file.shapes()]
    metadata = file.metadata
    file.close()
    items += [
        ("model_ema.decay", torch.tensor(0.9999)),
        ("alphas_cumprod", torch.linspace(1, 0, 1000)),
        ("cond_stage_model.transformer.text_model.embeddings.position_ids", torch.arange(77)[None]),
    ]
    write_safetensors(path, items, metadata)
    _assert_same(read_single_file(path, torch.float32).tensors, written)


def test_old_sd1_text_encoder_prefix_without_text_model(tmp_path):
    path = tmp_path / "old.safetensors"
    _, written = write_test_checkpoint(path, "sd1", "tiny", seed=6)
    file = SafetensorsFile(path)
    items = [(k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."), file.read(k)) for k in file.shapes()]
    file.close()
    write_safetensors(path, items)
    _assert_same(read_single_file(path, torch.float32).tensors, written)


def test_yaml_beside_the_checkpoint_sets_heads_and_prediction(tmp_path):
    """A `<stem>.yaml` (the LDM config A1111 reads) supplies what no shape carries."""
    path = tmp_path / "custom.safetensors"
    spec, written = _write_variant(path, "sd2", attention_head_dim=[2, 4, 4])  # 16 channels per head
    file = SafetensorsFile(path)
    items = [(k, file.read(k)) for k in file.shapes()]
    file.close()
    write_safetensors(path, items)  # no hints: only shapes and the yaml
    (tmp_path / "custom.yaml").write_text(
        "model:\n  params:\n    parameterization: v\n    scale_factor: 0.5\n"
        "    unet_config:\n      params:\n        num_head_channels: 16\n"
    )
    weights = read_single_file(path, torch.float32)
    assert weights.spec.components["unet"].config["attention_head_dim"] == [2, 4, 4]
    assert weights.spec.prediction_type == "v_prediction" and weights.spec.family.name == "sd2-v"
    assert weights.spec.components["vae"].config["scaling_factor"] == 0.5
    _assert_same(weights.tensors, written)
