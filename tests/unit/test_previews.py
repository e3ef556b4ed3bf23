"""Live-preview methods: published factors for the SD VAEs, fitted factors (cached) for others."""

from __future__ import annotations

import torch
import numpy as np
import pytest
from accelerate import init_empty_weights
from diffusers import AutoencoderKL

from modules.checkpoints.architecture import family_config
from modules.checkpoints.weights import build_module
from modules.generation.previews import (
    SD_FACTORS,
    SDXL_FACTORS,
    FullVaePreview,
    LinearFactorCache,
    LinearPreview,
    synthetic_images,
)
from tests.dtypes import CPU_DTYPES, VAE_DECODE_LEVELS
from tools.make_test_models import random_weights, tiny_spec


def _tiny_vae(seed=0):
    spec = tiny_spec("sd1")
    return build_module(spec.components["vae"], random_weights(spec, seed)["vae"], torch.device("cpu"))


def test_published_factors_for_the_sd_and_sdxl_vaes(tmp_path):
    cache = LinearFactorCache(tmp_path / "f.json")
    for family, factors in (("sd1", SD_FACTORS), ("sdxl-base", SDXL_FACTORS)):
        with init_empty_weights():
            vae = AutoencoderKL.from_config(family_config(family, "vae"))
        preview = cache.get(vae)
        assert torch.equal(preview.factors, torch.tensor(factors))
    assert not (tmp_path / "f.json").exists()  # nothing fitted


def test_linear_preview_shape_and_range():
    latent = torch.randn(2, 4, 8, 12)
    images = LinearPreview(torch.tensor(SD_FACTORS))(latent)
    assert len(images) == 2 and images[0].size == (12, 8) and images[0].mode == "RGB"


def test_factors_are_fitted_once_cached_and_predict_the_decode(tmp_path):
    vae = _tiny_vae()
    cache = LinearFactorCache(tmp_path / "f.json")
    preview = cache.get(vae)
    assert preview.factors.shape == (4, 3) and (tmp_path / "f.json").exists()
    again = LinearFactorCache(tmp_path / "f.json").get(vae)  # from disk, no refit
    assert torch.equal(again.factors, preview.factors)
    other = LinearFactorCache(tmp_path / "f.json").get(_tiny_vae(seed=1))  # other weights, other fit
    assert not torch.equal(other.factors, preview.factors)
    held_out = synthetic_images(12, 64, seed=5)
    with torch.no_grad():
        raw = vae.encode(held_out).latent_dist.mean
        decoded = torch.nn.functional.adaptive_avg_pool2d(vae.decode(raw).sample, raw.shape[-2:])
    predicted = preview.rgb(raw * vae.config.scaling_factor)
    r2 = 1 - ((predicted - decoded) ** 2).mean() / ((decoded - decoded.mean()) ** 2).mean()
    assert r2 > 0.05  # better than the mean colour on images it never saw


def test_full_vae_preview_is_the_decode_at_full_size():
    vae = _tiny_vae()
    images = FullVaePreview(vae)(torch.randn(1, 4, 8, 8))
    assert images[0].size == (64, 64)


@pytest.mark.parametrize("dtype", CPU_DTYPES.values(), ids=CPU_DTYPES.keys())
def test_previews_in_each_cpu_dtype_match_the_float32_pictures(tmp_path, dtype):
    """A model held in bf16 (AMX CPUs) hands the previews bf16 latents and a bf16 VAE: each method
    draws the float32 picture up to the dtype's rounding, and fitted factors stay float32."""
    latent = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    reference_full = [np.asarray(image, dtype=int) for image in FullVaePreview(_tiny_vae())(latent)]
    full = [np.asarray(image, dtype=int) for image in FullVaePreview(_tiny_vae().to(dtype))(latent.to(dtype))]
    differences = np.abs(np.stack(full) - np.stack(reference_full))
    most, mean = VAE_DECODE_LEVELS[dtype]
    assert full[0].shape == (64, 64, 3) and differences.max() <= most and differences.mean() <= mean

    linear = LinearPreview(torch.tensor(SD_FACTORS))
    reference_linear = np.stack([np.asarray(image, dtype=int) for image in linear(latent)])
    rounded = np.stack([np.asarray(image, dtype=int) for image in linear(latent.to(dtype))])
    assert np.abs(rounded - reference_linear).max() <= (0 if dtype is torch.float32 else 1)  # bf16 latent: 1 level

    fitted = LinearFactorCache(tmp_path / "f.json").get(_tiny_vae().to(dtype))
    assert fitted.factors.dtype == torch.float32 and fitted(latent.to(dtype))[0].size == (8, 8)
