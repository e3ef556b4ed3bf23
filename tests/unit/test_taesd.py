"""TAESD previews: our decoder matches diffusers' AutoencoderTiny on every accepted file layout, bad
files get a sentence naming them, and the preview chooser falls back to the cheap preview."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny

from modules.checkpoints.tensor_files import write_safetensors
from modules.checkpoints.weights import build_module
from modules.errors import UserError
from modules.generation.previews import PREVIEW_METHODS, FullVaePreview, LinearPreview, PreviewChooser
from modules.generation.taesd import TaesdCache, TaesdPreview, build_taesd_decoder, load_taesd_decoder
from tools.make_test_models import random_weights, tiny_spec


def _published_keys() -> set[str]:
    """The keys of madebyollin's taesd_decoder.pth, written out from its layout (not from our code)."""
    keys = {"1.weight", "1.bias", "7.weight", "12.weight", "17.weight", "19.weight", "19.bias"}
    for block in (3, 4, 5, 8, 9, 10, 13, 14, 15, 18):
        keys |= {f"{block}.conv.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    return keys


@pytest.fixture(scope="module")
def tiny_autoencoder() -> AutoencoderTiny:
    torch.manual_seed(0)
    model = AutoencoderTiny()  # TAESD's own sizes: the published files only come in this one
    with torch.no_grad():
        for param in model.parameters():  # small weights with bias: activations stay in a sane range
            param.copy_(torch.randn_like(param) * 0.05)
    return model.eval()


def _published_state(model: AutoencoderTiny) -> dict[str, torch.Tensor]:
    """Diffusers' decoder as a taesd_decoder.pth state dict, matched module by module: diffusers'
    layers are ours after the input clamp (layer 0)."""
    decoder = build_taesd_decoder()
    ours = list(decoder)[1:]
    assert len(ours) == len(model.decoder.layers)
    for mine, theirs in zip(ours, model.decoder.layers):
        mine.load_state_dict(theirs.state_dict(), strict=True)
    return decoder.state_dict()


@pytest.fixture(scope="module")
def weight_files(tiny_autoencoder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("VAE-approx")
    published = _published_state(tiny_autoencoder)
    torch.save(published, folder / "taesd_decoder.pth")
    write_safetensors(folder / "diffusers_tiny.safetensors", tiny_autoencoder.state_dict().items())
    whole = {f"decoder.{k}": v for k, v in published.items()} | {"encoder.0.weight": torch.zeros(64, 3, 3, 3)}
    torch.save(whole, folder / "taesd_whole.pth")
    return folder


def _reference(model: AutoencoderTiny, latent: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return (model.decode(latent).sample + 1) / 2  # diffusers maps TAESD's [0, 1] to [-1, 1]


def test_published_layout_has_exactly_the_published_keys():
    state = build_taesd_decoder().state_dict()
    assert set(state) == _published_keys()
    assert state["1.weight"].shape == (64, 4, 3, 3) and state["19.weight"].shape == (3, 64, 3, 3)
    assert sum(t.numel() for t in state.values()) == 1_222_531


@pytest.mark.parametrize("name", ["taesd_decoder.pth", "diffusers_tiny.safetensors", "taesd_whole.pth"])
def test_every_layout_decodes_like_diffusers(name, weight_files, tiny_autoencoder):
    decoder = load_taesd_decoder(weight_files / name)
    latent = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1)) * 2
    expected = _reference(tiny_autoencoder, latent)
    got = TaesdPreview(decoder).rgb(latent)
    assert got.shape == (2, 3, 24, 40)
    assert expected.std() > 0.01  # the comparison is not of two constants
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_preview_images_are_the_decode_in_bytes(weight_files, tiny_autoencoder):
    latent = torch.randn(1, 4, 4, 3, generator=torch.Generator().manual_seed(2)) * 2
    images = TaesdPreview(load_taesd_decoder(weight_files / "taesd_decoder.pth"))(latent)
    assert len(images) == 1 and images[0].size == (24, 32) and images[0].mode == "RGB"
    expected = (_reference(tiny_autoencoder, latent)[0].clamp(0, 1) * 255).round().permute(1, 2, 0)
    got = torch.from_numpy(np.array(images[0])).float()
    assert (got - expected).abs().max() <= 1  # rounding of values within 1e-5 of a half


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda state: state.pop("12.weight"), "missing 12.weight"),
        (lambda state: state.update({"20.weight": torch.zeros(3)}), "unexpected 20.weight"),
    ],
)
def test_a_file_with_other_keys_is_refused_by_name(change, named, tmp_path, tiny_autoencoder):
    state = _published_state(tiny_autoencoder)
    change(state)
    torch.save(state, tmp_path / "taesd_decoder.pth")
    with pytest.raises(UserError) as error:
        load_taesd_decoder(tmp_path / "taesd_decoder.pth")
    assert "taesd_decoder.pth" in str(error.value) and named in str(error.value)


def test_a_file_with_wrong_shapes_is_refused_by_name(tmp_path, tiny_autoencoder):
    state = _published_state(tiny_autoencoder)
    state["1.weight"] = torch.zeros(64, 16, 3, 3)  # a 16-channel (SD3/Flux) decoder
    write_safetensors(tmp_path / "taesd_decoder.safetensors", state.items())
    with pytest.raises(UserError, match="taesd_decoder.safetensors"):
        load_taesd_decoder(tmp_path / "taesd_decoder.safetensors")


def test_the_cache_reads_a_file_once_and_again_when_it_changes(tmp_path, tiny_autoencoder):
    path = tmp_path / "taesd_decoder.pth"
    state = _published_state(tiny_autoencoder)
    torch.save(state, path)
    cache = TaesdCache()
    first = cache.get(path)
    assert cache.get(path) is first
    state["19.bias"] = state["19.bias"] + 1
    torch.save(state, path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    second = cache.get(path)
    assert second is not first
    assert torch.equal(second.decoder[19].bias, first.decoder[19].bias + 1)


@pytest.fixture(scope="module")
def factors_path(tmp_path_factory):
    """One fit of the tiny VAE's linear factors for the whole module (the cheap fallback)."""
    return tmp_path_factory.mktemp("data") / "factors.json"


@pytest.fixture(scope="module")
def tiny_vae():
    spec = tiny_spec("sd1")
    return build_module(spec.components["vae"], random_weights(spec, 0)["vae"], torch.device("cpu"))


def test_chooser_gives_taesd_when_the_weights_are_there(tmp_path, tiny_autoencoder, tiny_vae, factors_path):
    torch.save(_published_state(tiny_autoencoder), tmp_path / "taesd_decoder.pth")
    chooser = PreviewChooser(tmp_path, factors_path)
    preview = chooser.choose("TAESD", tiny_vae, sdxl=False)
    assert isinstance(preview, TaesdPreview) and preview.name == "TAESD"
    assert chooser.choose("TAESD", tiny_vae, sdxl=False) is preview  # read once
    images = preview(torch.randn(1, 4, 3, 5))
    assert images[0].size == (40, 24)


def test_chooser_falls_back_to_the_cheap_preview_with_one_warning(tmp_path, tiny_autoencoder, tiny_vae, factors_path, caplog):
    torch.save(_published_state(tiny_autoencoder), tmp_path / "taesd_decoder.pth")  # SD1 only
    chooser = PreviewChooser(tmp_path, factors_path)
    with caplog.at_level(logging.WARNING, logger="modules.generation.previews"):
        first = chooser.choose("TAESD", tiny_vae, sdxl=True)
        second = chooser.choose("TAESD", tiny_vae, sdxl=True)
    assert isinstance(first, LinearPreview) and isinstance(second, LinearPreview)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "taesdxl_decoder.pth" in warnings[0] and str(tmp_path) in warnings[0] and "Approx cheap" in warnings[0]


def test_chooser_falls_back_when_the_file_is_not_a_decoder(tmp_path, tiny_vae, factors_path, caplog):
    torch.save({"0.weight": torch.zeros(1)}, tmp_path / "taesd_decoder.pth")
    with caplog.at_level(logging.WARNING, logger="modules.generation.previews"):
        preview = PreviewChooser(tmp_path, factors_path).choose("TAESD", tiny_vae, sdxl=False)
    assert isinstance(preview, LinearPreview)
    assert "taesd_decoder.pth" in caplog.text and "unexpected 0.weight" in caplog.text


def test_chooser_other_methods(tmp_path, tiny_vae, factors_path):
    chooser = PreviewChooser(tmp_path / "VAE-approx", factors_path)
    assert PREVIEW_METHODS == ("Approx cheap", "Full", "TAESD", "None")
    assert chooser.choose("None", tiny_vae, sdxl=False) is None
    full = chooser.choose("Full", tiny_vae, sdxl=False)
    assert isinstance(full, FullVaePreview) and full.vae is tiny_vae
    cheap = chooser.choose("Approx cheap", tiny_vae, sdxl=False)
    assert isinstance(cheap, LinearPreview) and cheap.factors.shape == (4, 3)
    assert factors_path.is_file()  # the tiny VAE's factors were fitted and kept
    with pytest.raises(UserError, match="Approx cheap, Full, TAESD, None"):
        chooser.choose("Fast", tiny_vae, sdxl=False)
