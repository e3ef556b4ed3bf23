"""txt2img end to end on tiny real checkpoints: every family generates, seeds behave as A1111's,
previews stream every step, interrupt and skip work; in float32 and in bfloat16 (AMX CPUs) alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.generation.previews import FullVaePreview, LinearFactorCache
from modules.generation.request import GenerationRequest
from modules.generation.engine import Interrupted, Skipped
from modules.generation.txt2img import txt2img
from tests.dtypes import CPU_DTYPES
from tools.make_test_models import write_test_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer_cache, dtype_name):
    root = tmp_path_factory.mktemp("models")
    write_test_checkpoint(root / "sd1.safetensors", "sd1", "tiny", seed=1)
    write_test_checkpoint(root / "sd2.safetensors", "sd2", "tiny", seed=2)
    write_test_checkpoint(root / "xl.safetensors", "sdxl-base", "tiny", seed=3)
    write_test_checkpoint(root / "inpaint.safetensors", "sd1-inpaint", "tiny", seed=4, in_channels=9)
    write_test_checkpoint(root / "sd2v.safetensors", "sd2", "tiny", seed=5)
    (root / "sd2v.yaml").write_text("model:\n  params:\n    parameterization: v\n")
    registry = ModelRegistry([root], [], HashCache(root / "cache.json"))
    return ModelManager(registry, torch.device("cpu"), CPU_DTYPES[dtype_name], tokenizer_cache, ManagerOptions(checkpoint_cache_size=5))


def _request(**changes) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blurry", sampler_name="Euler a", steps=4, width=64, height=64, seed=100)
    return GenerationRequest(**{**base, **changes})


@pytest.mark.parametrize("name", ["sd1", "sd2", "sd2v", "xl", "inpaint"])
def test_every_family_generates(models, name):
    loaded = models.switch_checkpoint(name)
    assert (loaded.spec.prediction_type == "v_prediction") == (name == "sd2v") and loaded.unet.dtype is models.dtype
    result = txt2img(loaded, _request())
    assert len(result.images) == 1 and result.images[0].size == (64, 64)
    array = np.asarray(result.images[0])
    assert array.std() > 0 and result.seeds == [100]


def test_batch_equals_single_runs(models):
    loaded = models.switch_checkpoint("sd1")
    batch = txt2img(loaded, _request(batch_size=3))
    assert batch.seeds == [100, 101, 102]
    for i, seed in enumerate((100, 101, 102)):
        single = txt2img(loaded, _request(seed=seed))
        assert torch.allclose(batch.latents[0][i], single.latents[0][0], rtol=1e-4, atol=1e-3), seed  # batched matmuls round differently


def test_variation_strength_ends(models):
    loaded = models.switch_checkpoint("sd1")
    plain = txt2img(loaded, _request(sampler_name="Euler")).latents[0]
    zero = txt2img(loaded, _request(sampler_name="Euler", subseed=7, subseed_strength=0.0)).latents[0]
    full = txt2img(loaded, _request(sampler_name="Euler", subseed=7, subseed_strength=1.0)).latents[0]
    other = txt2img(loaded, _request(sampler_name="Euler", seed=7)).latents[0]
    assert torch.equal(plain, zero)
    assert torch.allclose(full, other, atol=1e-5)


def test_previews_every_step_and_the_last_matches_the_image(models, tmp_path):
    loaded = models.switch_checkpoint("sd1")
    events = []
    cheap = LinearFactorCache(tmp_path / "f.json").get(loaded.vae_module)
    txt2img(loaded, _request(steps=20, sampler_name="DPM++ 2M"), on_step=events.append, preview=cheap)
    assert [e.step for e in events] == list(range(1, 21)) and all(e.preview for e in events)
    assert events[-1].preview[0].size == (8, 8)
    events.clear()
    result = txt2img(loaded, _request(steps=20, sampler_name="Euler"), on_step=events.append, preview=FullVaePreview(loaded.vae_module))
    # Euler's last step lands on the prediction it previews, so the last preview is the image.
    assert np.array_equal(np.asarray(events[-1].preview[0]), np.asarray(result.images[0]))


def test_interrupt_returns_what_was_done(models):
    loaded = models.switch_checkpoint("sd1")
    seen = []

    def on_step(event):
        seen.append(event.step)
        if event.step == 5:
            raise Interrupted()

    result = txt2img(loaded, _request(steps=20, n_iter=2), on_step=on_step)
    assert result.interrupted and seen == [1, 2, 3, 4, 5] and len(result.images) == 1


def test_skip_moves_to_the_next_batch(models):
    loaded = models.switch_checkpoint("sd1")

    def on_step(event):
        if event.image_index == 0 and event.step == 2:
            raise Skipped()

    result = txt2img(loaded, _request(steps=4, n_iter=2), on_step=on_step)
    assert not result.interrupted and len(result.images) == 1 and result.seeds == [100, 101]
    assert result.image_seeds == [101]  # the returned image is the second batch's


def test_bad_sampler_is_named(models):
    from modules.errors import UserError

    loaded = models.switch_checkpoint("sd1")
    with pytest.raises(UserError, match="Euler a"):
        txt2img(loaded, _request(sampler_name="Eulr"))
