"""The semantic tests' model: Easel's shipped demo checkpoint, loaded through the real loader once
per session (CPU, fp32), and a helper that draws one picture with it."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from PIL import Image

from modules.demo_model import DEMO_DEFAULTS
from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import LoadedModel, ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.cmd_args import DEMO_CHECKPOINT
from modules.generation.request import GenerationRequest
from modules.generation.txt2img import txt2img

SIZE = DEMO_DEFAULTS.width  # the demo model's training size (64)
CFG = DEMO_DEFAULTS.cfg_scale  # the scale the UI opens with for the demo (2.5); see its model card for CFG 7


@pytest.fixture(scope="session")
def demo(tmp_path_factory, tokenizer_cache) -> LoadedModel:
    """The committed demo checkpoint, as Easel loads any single-file checkpoint."""
    assert DEMO_CHECKPOINT.is_file(), f"{DEMO_CHECKPOINT} is missing: run tools/train_demo_model.py"
    root = tmp_path_factory.mktemp("demo")
    registry = ModelRegistry([], [], HashCache(root / "cache.json"), [DEMO_CHECKPOINT])
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions())
    return manager.switch_checkpoint(registry.entry_for_path(DEMO_CHECKPOINT))


def request(prompt: str, seed: int, **changes: Any) -> GenerationRequest:
    """A 64 x 64, 20-step request at the demo's CFG, with no previews and no saving."""
    base = dict(prompt=prompt, seed=seed, steps=20, cfg_scale=CFG, width=SIZE, height=SIZE, sampler_name="Euler a", preview_every=0, save_samples=False)
    return GenerationRequest(**{**base, **changes})


@pytest.fixture(scope="session")
def draw(demo) -> Callable[..., list[Image.Image]]:
    """draw(prompt, seed, **request fields) -> the pictures txt2img makes (one per batch item)."""

    def run(prompt: str, seed: int, **changes: Any) -> list[Image.Image]:
        return txt2img(demo, request(prompt, seed, **changes)).images

    return run
