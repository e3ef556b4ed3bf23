"""A loaded model is a working model: diffusers' own pipeline runs on our modules, and hot-swapping
changes the picture exactly as loading the other checkpoint from scratch would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from tests.dtypes import CPU_DTYPES
from tools.make_test_models import write_test_checkpoint


def _manager(root, tokenizer_cache, dtype=torch.float32):
    registry = ModelRegistry([root], [], HashCache(root / "cache.json"))
    return ModelManager(registry, torch.device("cpu"), dtype, tokenizer_cache, ManagerOptions(checkpoint_cache_size=2))


def _image(loaded, prompt="a red circle") -> np.ndarray:
    scheduler = EulerDiscreteScheduler.from_config(loaded.spec.scheduler_config)
    common = dict(vae=loaded.modules["vae"], unet=loaded.unet, scheduler=scheduler)
    if loaded.spec.family.name.startswith("sdxl"):
        pipe = StableDiffusionXLPipeline(
            text_encoder=loaded.modules["text_encoder"], text_encoder_2=loaded.modules["text_encoder_2"],
            tokenizer=loaded.tokenizers["tokenizer"], tokenizer_2=loaded.tokenizers["tokenizer_2"], **common,
        )
    else:
        pipe = StableDiffusionPipeline(
            text_encoder=loaded.modules["text_encoder"], tokenizer=loaded.tokenizers["tokenizer"],
            safety_checker=None, feature_extractor=None, requires_safety_checker=False, **common,
        )
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt, num_inference_steps=2, height=64, width=64, generator=torch.Generator().manual_seed(0), output_type="np")
    return out.images[0]


@pytest.mark.parametrize("dtype", CPU_DTYPES.values(), ids=CPU_DTYPES.keys())
def test_hot_swap_gives_the_same_pictures_as_fresh_loads(tmp_path, tokenizer_cache, dtype):
    write_test_checkpoint(tmp_path / "a.safetensors", "sd1", "tiny", seed=1)
    write_test_checkpoint(tmp_path / "b.safetensors", "sd1", "tiny", seed=2)
    manager = _manager(tmp_path, tokenizer_cache, dtype)
    first_a = _image(manager.switch_checkpoint("a"))
    assert manager.loaded.unet.dtype is dtype
    swapped_b = _image(manager.switch_checkpoint("b"))
    again_a = _image(manager.switch_checkpoint("a"))
    fresh_b = _image(_manager(tmp_path, tokenizer_cache, dtype).switch_checkpoint("b"))
    assert first_a.shape == (64, 64, 3) and np.isfinite(first_a).all()
    assert np.abs(first_a - swapped_b).max() > 0.01  # another checkpoint, another picture
    assert np.array_equal(first_a, again_a)
    assert np.array_equal(swapped_b, fresh_b)


@pytest.mark.parametrize("family", ["sd2", "sdxl-base"])
def test_other_families_run_in_diffusers_pipelines(tmp_path, tokenizer_cache, family):
    write_test_checkpoint(tmp_path / "m.safetensors", family, "tiny", seed=3)
    image = _image(_manager(tmp_path, tokenizer_cache).switch_checkpoint("m"))
    assert image.shape == (64, 64, 3) and np.isfinite(image).all() and image.std() > 0
