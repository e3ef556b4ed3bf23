"""LoRA patching on tiny real checkpoints loaded through the real loader, with kohya-format LoRA files:
weight 0 is no LoRA, weight w changes the picture, removal restores every weight bitwise, LoRAs add,
te/unet multipliers touch only their component, deltas are cached, SDXL's te1/te2 and SD2's keys map.
Each runs with the models in float32 and in bfloat16 (the dtype Easel picks on AMX CPUs); fp16 has
its own test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.checkpoints.tensor_files import write_safetensors
from modules.generation.request import GenerationRequest
from modules.generation.txt2img import txt2img
from modules.lora.files import LoraLibrary
from modules.lora.format import LoraLayer, layer_delta
from modules.lora.patch import LoraPatcher, LoraUse
from tests.dtypes import CPU_DTYPES
from tools.make_test_loras import make_lora_tensors, write_test_lora
from tools.make_test_models import tiny_spec, write_test_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tokenizer_cache, dtype_name):
    root = tmp_path_factory.mktemp("lora")
    write_test_checkpoint(root / "Stable-diffusion" / "sd1.safetensors", "sd1", "tiny", seed=1)
    write_test_checkpoint(root / "Stable-diffusion" / "sd1b.safetensors", "sd1", "tiny", seed=2)
    write_test_checkpoint(root / "Stable-diffusion" / "xl.safetensors", "sdxl-base", "tiny", seed=3)
    write_test_checkpoint(root / "Stable-diffusion" / "sd2.safetensors", "sd2", "tiny", seed=4)
    expected = {
        "a": write_test_lora(root / "Lora" / "a.safetensors", "sd1", "tiny", seed=10, rank=4),
        "b": write_test_lora(root / "Lora" / "sub" / "b.safetensors", "sd1", "tiny", seed=11, rank=2, alpha=2.0, conv_rank=2),
        "old": write_test_lora(root / "Lora" / "old.pt", "sd1", "tiny", seed=12, rank=3),
        "xl": write_test_lora(root / "Lora" / "xl.safetensors", "sdxl-base", "tiny", seed=13, rank=4),
        "sd2": write_test_lora(root / "Lora" / "sd2.safetensors", "sd2", "tiny", seed=15, rank=4),
    }
    # A file with layers the model lacks and a LyCORIS key we do not read: reported, not fatal.
    tensors, expected["odd"] = make_lora_tensors(tiny_spec("sd1", "tiny"), seed=14, components=("unet",))
    tensors["lora_unet_no_such_block_to_q.lora_down.weight"] = torch.zeros(2, 8)
    tensors["lora_unet_no_such_block_to_q.lora_up.weight"] = torch.zeros(8, 2)
    tensors["lora_unet_mid_block_attentions_0_proj_in.hada_w1_a"] = torch.zeros(2, 2)
    write_safetensors(root / "Lora" / "odd.safetensors", sorted(tensors.items()))
    registry = ModelRegistry([root / "Stable-diffusion"], [], HashCache(root / "cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), CPU_DTYPES[dtype_name], tokenizer_cache, ManagerOptions(checkpoint_cache_size=3))
    library = LoraLibrary(root / "Lora")
    library.refresh()
    return manager, library, expected


@pytest.fixture
def sd1(setup):
    manager, library, expected = setup
    loaded = manager.switch_checkpoint("sd1")
    patcher = LoraPatcher()
    yield loaded, library, expected, patcher
    patcher.restore(loaded)


@pytest.fixture(scope="module")
def plain_sd1(setup) -> np.ndarray:
    """The sd1 picture without LoRA (made once: CPU time is shared)."""
    return _image(setup[0].switch_checkpoint("sd1"))


def _request(**changes) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blurry", sampler_name="Euler", steps=1, width=64, height=64, seed=7)
    return GenerationRequest(**{**base, **changes})


def _image(loaded) -> np.ndarray:
    return np.asarray(txt2img(loaded, _request()).images[0])


def _snapshot(loaded) -> dict[str, dict[str, torch.Tensor]]:
    return {c: {k: v.detach().clone() for k, v in m.named_parameters()} for c, m in loaded.modules.items()}


def _changed(loaded, before) -> dict[str, set[str]]:
    return {c: {k for k, v in m.named_parameters() if not torch.equal(v, before[c][k])} for c, m in loaded.modules.items()}


def _assert_patched(actual: torch.Tensor, want: torch.Tensor) -> None:
    """A patched weight against base + sum of scaled deltas computed in float32: equal up to the
    rounding of the weights' own dtype (the patch is computed in float32 and stored once)."""
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 8e-3, torch.float16: 2e-3}[actual.dtype]
    torch.testing.assert_close(actual.detach().float(), want.float(), rtol=tolerance, atol=tolerance)


def _assert_restored(loaded, before) -> None:
    assert _changed(loaded, before) == {c: set() for c in loaded.modules}


def test_weight_zero_is_no_lora_and_weight_one_changes_the_picture_until_removed(sd1, plain_sd1):
    loaded, library, _, patcher = sd1
    before = _snapshot(loaded)
    plain = plain_sd1

    report = patcher.apply(loaded, [LoraUse(library.find("a"), 0.0)])
    assert report.parameters == 0 and not patcher.is_patched
    _assert_restored(loaded, before)
    assert np.array_equal(_image(loaded), plain)

    report = patcher.apply(loaded, [LoraUse(library.find("a"), 1.0)])
    assert report.parameters > 0 and report.unmatched == {}
    assert not np.array_equal(_image(loaded), plain)

    patcher.restore(loaded)
    _assert_restored(loaded, before)
    assert np.array_equal(_image(loaded), plain)


def test_two_loras_add_their_scaled_deltas(sd1):
    loaded, library, expected, patcher = sd1
    before = _snapshot(loaded)
    report = patcher.apply(loaded, [LoraUse(library.find("a"), 0.7), LoraUse(library.find("b"), -1.3)])
    assert sorted(report.applied) == ["a", "b"]
    touched = 0
    for component, module in loaded.modules.items():
        for name, param in module.named_parameters():
            want = before[component][name].to(torch.float32, copy=True)
            for lora, weight in (("a", 0.7), ("b", -1.3)):
                if name in expected[lora].get(component, {}):
                    want += weight * expected[lora][component][name]
            touched += not torch.equal(want, before[component][name].float())
            _assert_patched(param, want)
    # a: 6 attention/projection targets in the UNet, 6 per text layer; b adds the ResNet 3x3 convs.
    assert touched == report.parameters == len(set().union(*[{(c, k) for c in e for k in e[c]} for e in (expected["a"], expected["b"])]))
    patcher.restore(loaded)
    _assert_restored(loaded, before)


@pytest.mark.parametrize("te, unet, component", [(1.0, 0.0, "text_encoder"), (0.0, 1.0, "unet")])
def test_te_and_unet_multipliers_touch_only_their_component(sd1, plain_sd1, te, unet, component):
    loaded, library, _, patcher = sd1
    before = _snapshot(loaded)
    plain = plain_sd1
    patcher.apply(loaded, [LoraUse(library.find("a"), te, unet)])
    changed = _changed(loaded, before)
    assert changed[component] and all(not keys for name, keys in changed.items() if name != component)
    # Text-encoder-only must change the picture too: the cached prompt encodings are dropped.
    assert not np.array_equal(_image(loaded), plain)
    patcher.restore(loaded)
    _assert_restored(loaded, before)


def test_deltas_are_cached_and_the_applied_set_is_reused(sd1):
    loaded, library, expected, patcher = sd1
    before = _snapshot(loaded)
    a = library.find("a")
    first = patcher.apply(loaded, [LoraUse(a, 1.0)])
    assert first.computed == ["a"] and patcher.cache.computed == 1
    again = patcher.apply(loaded, [LoraUse(a, 1.0)])
    assert again.unchanged and again.parameters == first.parameters
    patcher.restore(loaded)
    third = patcher.apply(loaded, [LoraUse(a, 0.5)])  # new strength: re-patched from the cached deltas
    assert not third.unchanged and third.computed == [] and patcher.cache.computed == 1 and patcher.cache.hits == 1
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    _assert_patched(loaded.unet.get_parameter(name), before["unet"][name].float() + 0.5 * expected["a"]["unet"][name])
    patcher.apply(loaded, [])
    assert not patcher.is_patched
    _assert_restored(loaded, before)


def test_a_pickled_lora_and_unknown_keys(sd1):
    loaded, library, expected, patcher = sd1
    before = _snapshot(loaded)
    patcher.apply(loaded, [LoraUse(library.find("old"), 1.0)])
    name = "text_model.encoder.layers.1.mlp.fc2.weight" if "text_model.encoder.layers.1.mlp.fc2.weight" in before["text_encoder"] else "encoder.layers.1.mlp.fc2.weight"
    _assert_patched(loaded.modules["text_encoder"].get_parameter(name), before["text_encoder"][name].float() + expected["old"]["text_encoder"][name])
    report = patcher.apply(loaded, [LoraUse(library.find("odd"), 1.0)])
    unmatched = report.unmatched["odd"]
    assert any("no_such_block" in item for item in unmatched) and any("hada_w1_a" in item for item in unmatched)
    assert report.parameters == sum(len(p) for p in expected["odd"].values())
    patcher.restore(loaded)
    _assert_restored(loaded, before)


def test_restore_after_a_checkpoint_switch_repairs_the_patched_checkpoint(setup, sd1):
    manager = setup[0]
    loaded, library, _, patcher = sd1
    before = _snapshot(loaded)
    patcher.apply(loaded, [LoraUse(library.find("a"), 1.0)])
    other = manager.switch_checkpoint("sd1b")  # same architecture: parameters re-pointed, not rebuilt
    other_before = _snapshot(other)
    patcher.restore(other)
    _assert_restored(other, other_before)
    again = manager.switch_checkpoint("sd1")  # served from the RAM cache, whose tensors were patched
    _assert_restored(again, before)


def test_half_precision_weights_restore_bitwise(setup, tokenizer_cache):
    manager, library, expected = setup
    half = ModelManager(manager.registry, torch.device("cpu"), torch.float16, tokenizer_cache, ManagerOptions())
    loaded = half.switch_checkpoint("sd1")
    before = _snapshot(loaded)
    patcher = LoraPatcher()
    patcher.apply(loaded, [LoraUse(library.find("a"), 1.0), LoraUse(library.find("b"), 0.5)])
    name = "up_blocks.1.attentions.0.proj_out.weight"
    param = loaded.unet.get_parameter(name)
    assert param.dtype == torch.float16
    want = before["unet"][name].float() + expected["a"]["unet"][name] + 0.5 * expected["b"]["unet"][name]
    _assert_patched(param, want)
    patcher.restore(loaded)
    _assert_restored(loaded, before)


@pytest.mark.parametrize("name, components", [
    ("xl", {"unet", "text_encoder", "text_encoder_2"}),  # lora_te1_/lora_te2_, LDM-named UNet layers
    ("sd2", {"unet", "text_encoder"}),  # OpenCLIP text encoder under transformers names, linear proj_in
])
def test_sdxl_and_sd2_loras_map_every_layer(setup, name, components):
    manager, library, expected = setup
    loaded = manager.switch_checkpoint(name)
    before = _snapshot(loaded)
    patcher = LoraPatcher()
    report = patcher.apply(loaded, [LoraUse(library.find(name), 0.8, 0.6)])
    assert report.unmatched == {}
    assert set(expected[name]) == components
    for component, params in expected[name].items():
        weight = 0.6 if component == "unet" else 0.8
        for param, delta in params.items():
            _assert_patched(loaded.modules[component].get_parameter(param), before[component][param].float() + weight * delta)
    assert report.parameters == sum(len(p) for p in expected[name].values())
    patcher.restore(loaded)
    _assert_restored(loaded, before)


def test_applied_block_removes_the_lora_even_when_the_generation_fails(sd1):
    loaded, library, _, patcher = sd1
    before = _snapshot(loaded)
    with pytest.raises(RuntimeError, match="boom"):
        with patcher.applied(loaded, [LoraUse(library.find("a"), 1.0)]) as report:
            assert report.parameters > 0 and _changed(loaded, before)["unet"]
            raise RuntimeError("boom")
    assert not patcher.is_patched
    _assert_restored(loaded, before)


def test_layer_delta_shapes_conv_cp_and_mismatch():
    g = torch.Generator().manual_seed(0)
    up, down = torch.randn(6, 2, 1, 1, generator=g), torch.randn(2, 5, 3, 3, generator=g)
    conv = layer_delta(LoraLayer("c", down=down, up=up, alpha=1.0), torch.Size([6, 5, 3, 3]), torch.device("cpu"))
    want = torch.nn.functional.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3) * 0.5  # kohya's merge
    torch.testing.assert_close(conv, want)
    # Linear-shaped factors on a 1x1-conv weight (SD2-style LoRA on an SD1-style proj_in): reshaped.
    up2, down2 = torch.randn(6, 2, generator=g), torch.randn(2, 5, generator=g)
    onexone = layer_delta(LoraLayer("p", down=down2, up=up2), torch.Size([6, 5, 1, 1]), torch.device("cpu"))
    torch.testing.assert_close(onexone, (up2 @ down2).reshape(6, 5, 1, 1))
    # LoCon CP decomposition: mid (rank x rank x 3 x 3) between 1x1 down and up.
    mid, down3 = torch.randn(2, 2, 3, 3, generator=g), torch.randn(2, 5, 1, 1, generator=g)
    cp = layer_delta(LoraLayer("m", down=down3, up=up, mid=mid, alpha=4.0), torch.Size([6, 5, 3, 3]), torch.device("cpu"))
    want = torch.einsum("or,rskl,si->oikl", up.flatten(1), mid, down3.flatten(1)) * 2.0
    torch.testing.assert_close(cp, want)
    with pytest.raises(ValueError, match="makes a"):
        layer_delta(LoraLayer("x", down=down2, up=up2), torch.Size([7, 5]), torch.device("cpu"))
