"""DDIM CFG++ through the engine: the guidance keeps the unconditional x0 for it, at A1111's CFG
scale / 12.5, and the masked and hooked denoisers pass that x0 on. (Its step against A1111's own
loop: tests/unit/test_timestep_samplers.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.generation.engine import DenoiseInput, EngineHooks, HookedDenoiser, Interrupted, MaskedDenoiser
from modules.generation.guidance import GuidedDenoiser, StepConditions
from modules.generation.img2img import img2img
from modules.generation.request import GenerationRequest, Img2ImgRequest
from modules.generation.txt2img import txt2img
from modules.prompts.conditioning import Conditioning
from modules.sampling.types import UncondDenoiser
from tools.make_test_models import write_test_checkpoint

CFG = 7.0


# -- the guidance ------------------------------------------------------------------------------


def scaled_by_prompt(x, sigma, hidden, pooled=None):
    """A toy model: x0 = x times the prompt's mean hidden value (batched or not)."""
    return x * hidden.mean(dim=(1, 2))[:, None, None, None]


def prompt(value: float) -> StepConditions:
    return StepConditions([(100, [(Conditioning(torch.full((1, 3, 4), value)), 1.0)])])


def guidance(cfg_scale: float, keep_uncond: bool) -> GuidedDenoiser:
    return GuidedDenoiser(scaled_by_prompt, prompt(2.0), prompt(0.5), cfg_scale, 0.03, 14.6, keep_uncond=keep_uncond)


def test_the_guidance_keeps_the_unconditional_x0_only_when_asked():
    x, sigma = torch.ones(2, 4, 2, 2), torch.full((2,), 3.0)
    kept = guidance(0.56, keep_uncond=True)
    assert kept.last_uncond_x0 is None and isinstance(kept, UncondDenoiser)
    assert torch.allclose(kept(x, sigma), x * (0.5 + 0.56 * 1.5))
    assert torch.equal(kept.last_uncond_x0, x * 0.5)
    plain = guidance(0.56, keep_uncond=False)
    plain(x, sigma)
    assert plain.last_uncond_x0 is None


def test_at_scale_one_the_kept_uncond_is_still_computed():
    """A CFG of 12.5 is CFG++'s scale 1: the usual shortcut (cond alone) would lose the uncond."""
    x, sigma = torch.ones(1, 4, 2, 2), torch.full((1,), 3.0)
    kept = guidance(1.0, keep_uncond=True)
    assert torch.equal(kept(x, sigma), x * 2.0)
    assert torch.equal(kept.last_uncond_x0, x * 0.5)


def test_masked_and_hooked_denoisers_pass_the_unconditional_x0_on():
    x, sigma = torch.ones(1, 4, 2, 2), torch.full((1,), 3.0)
    guided = guidance(0.56, keep_uncond=True)
    keep = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    init = torch.full((1, 4, 2, 2), 9.0)
    masked = MaskedDenoiser(guided, init, keep)
    assert masked.last_uncond_x0 is None
    seen: list[DenoiseInput] = []
    hooked = HookedDenoiser(masked, guided, seen.append, total_steps=1, done={"steps": 0})
    hooked(x, sigma)
    # held like the guided x0: the init latent where the mask keeps it, the prediction elsewhere
    expected = torch.where(keep.bool().expand_as(x), init, x * 0.5)
    assert torch.equal(masked.last_uncond_x0, expected) and torch.equal(hooked.last_uncond_x0, expected)
    assert len(seen) == 1


# -- the engine on a tiny checkpoint -----------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory, tokenizer_cache):
    root = tmp_path_factory.mktemp("models")
    write_test_checkpoint(root / "sd1.safetensors", "sd1", "tiny", seed=1)
    registry = ModelRegistry([root], [], HashCache(root / "cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions(checkpoint_cache_size=1))
    return manager.switch_checkpoint("sd1")


def _request(**changes) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blurry", sampler_name="DDIM CFG++", steps=6, width=64, height=64,
                seed=100, cfg_scale=CFG, preview_every=0)
    return GenerationRequest(**{**base, **changes})


def first_prediction(model, request: GenerationRequest) -> torch.Tensor:
    """The x0 of the first step (interrupting there returns it)."""

    def stop(event):
        raise Interrupted()

    result = txt2img(model, request, on_step=stop)
    assert result.interrupted
    return result.latents[0]


def test_the_engine_guides_cfgpp_at_the_scale_divided_by_12_5(model):
    cfgpp = first_prediction(model, _request())
    assert torch.equal(cfgpp, first_prediction(model, _request(sampler_name="DDIM", cfg_scale=CFG * (1 / 12.5))))
    assert (cfgpp - first_prediction(model, _request(sampler_name="DDIM"))).abs().max() > 1e-3


def test_the_engine_steps_cfgpp_along_the_unconditional_prediction(model):
    cfgpp = txt2img(model, _request()).latents[0]
    ddim = txt2img(model, _request(sampler_name="DDIM", cfg_scale=CFG * (1 / 12.5))).latents[0]
    assert torch.isfinite(cfgpp).all() and (cfgpp - ddim).abs().max() > 1e-3
    # with the prompt as its own negative, the unconditional prediction is the guided one: DDIM
    same = dict(negative_prompt="a red circle")
    assert torch.allclose(txt2img(model, _request(**same)).latents[0], txt2img(model, _request(sampler_name="DDIM", **same)).latents[0], atol=1e-5)


def test_cfgpp_inpaints_with_extension_hooks(model):
    picture = Image.new("RGB", (64, 64), (90, 120, 200))
    ImageDraw.Draw(picture).ellipse((8, 8, 40, 40), fill=(230, 40, 30))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((24, 24, 47, 47), fill=255)
    calls: list[int] = []
    request = Img2ImgRequest(prompt="a red circle", negative_prompt="blurry", sampler_name="DDIM CFG++", steps=10, width=64, height=64,
                             seed=100, cfg_scale=CFG, init_images=[picture], mask=mask, mask_blur=0, denoising_strength=0.6)
    result = img2img(model, request, hooks=EngineHooks(before_denoise=lambda call: calls.append(call.step)))
    out, original = (np.asarray(image.convert("RGB"), dtype=np.int16) for image in (result.images[0], picture))
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], original[outside])
    assert np.abs(out[~outside] - original[~outside]).mean() > 10
    assert calls == list(range(len(calls))) and len(calls) >= 5
