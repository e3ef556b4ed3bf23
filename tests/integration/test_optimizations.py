"""The optimised paths of modules/device/ against the plain ones on a tiny real model.

Each optimisation may change float rounding only (see the tolerances in modules/device/__init__.py's
docstring): fp32 latents within 1e-3, 8-bit pixels within 2 levels. Tiled VAE decoding blends tile
borders, so it is held to its own documented bound, and must really have tiled. The fp32 VAE retry
runs against a VAE module whose half-precision decode gives NaN (a wrapper, as a broken fp16 VAE
behaves), never a patched library.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.autoencoders.vae import DecoderOutput

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.generation.engine import decode_pixels, encode
from modules.generation.request import GenerationRequest
from modules.generation.txt2img import txt2img
from modules.device.optimizations import Optimizations
from modules.device.unet_pass import unet_for_pass
from modules.device.vae import decode_checked
from tools.make_test_models import write_test_checkpoint

LATENT_ATOL = 1e-3
PIXEL_LEVELS = 2
TILED_SHARE_OF_UNRELATED = 0.75


@pytest.fixture(scope="module")
def model(tmp_path_factory, tokenizer_cache):
    root = tmp_path_factory.mktemp("opt-models")
    write_test_checkpoint(root / "sd1.safetensors", "sd1", "tiny", seed=11)
    registry = ModelRegistry([root], [], HashCache(root / "cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions(checkpoint_cache_size=1))
    return manager.switch_checkpoint("sd1")


def _request(**changes) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blurry", sampler_name="Euler a", steps=4, width=64, height=64, seed=7)
    return GenerationRequest(**{**base, **changes})


def _with(model, options: Optimizations | None):
    """The same loaded modules with other choices (a fresh per-model cache)."""
    return replace(model, optimizations=options, caches={})


def _pixels(result) -> np.ndarray:
    return np.stack([np.asarray(image, dtype=np.int16) for image in result.images])


def _state(module: torch.nn.Module) -> dict[str, tuple[int, torch.Tensor]]:
    return {name: (p.data_ptr(), p.detach().clone()) for name, p in module.named_parameters()}


def test_default_attention_is_pytorch_sdpa(model):
    processors = model.unet.attn_processors
    assert processors and all(type(p) is AttnProcessor2_0 for p in processors.values())


@pytest.mark.parametrize("choice", [
    {"channels_last": True},
    {"fuse_qkv": True},
    {"attention_slicing": True},
    {"channels_last": True, "fuse_qkv": True},
])
def test_optimised_pass_gives_the_same_image(model, choice):
    before = _state(model.unet)
    plain = txt2img(_with(model, None), _request())
    fast = txt2img(_with(model, Optimizations(**choice)), _request())
    assert torch.allclose(plain.latents[0], fast.latents[0], atol=LATENT_ATOL, rtol=0)
    assert np.abs(_pixels(plain) - _pixels(fast)).max() <= PIXEL_LEVELS
    # afterwards the model is the plain one again: same parameter objects and values, SDPA processors
    after = _state(model.unet)
    assert after.keys() == before.keys()
    for name, (ptr, value) in before.items():
        assert after[name][0] == ptr and torch.equal(after[name][1], value), name
    assert all(type(p) is AttnProcessor2_0 for p in model.unet.attn_processors.values())
    assert not any(hasattr(m, "to_qkv") or hasattr(m, "to_kv") for m in model.unet.modules())


def test_fused_qkv_really_runs_fused_and_sees_the_current_weights(model):
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500, 500])
    hidden = torch.randn(2, 77, model.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    cache: dict = {}
    with torch.no_grad():
        plain = model.unet(x, t, encoder_hidden_states=hidden).sample
        with unet_for_pass(model.unet, Optimizations(fuse_qkv=True), cache, tuple(x.shape)) as unet:
            kinds = {type(p).__name__ for p in unet.attn_processors.values()}
            fused = unet(x, t, encoder_hidden_states=hidden).sample
        assert kinds == {"FusedAttnProcessor2_0"} and cache["performance.fused_qkv"]
        assert torch.allclose(plain, fused, atol=1e-5, rtol=1e-4)
        # a weight changed between passes (as a LoRA patch does) is in the next fused pass
        attn = next(m for m in model.unet.modules() if type(m).__name__ == "Attention")
        saved = attn.to_q.weight.data
        attn.to_q.weight.data = saved * 1.5
        try:
            changed = model.unet(x, t, encoder_hidden_states=hidden).sample
            with unet_for_pass(model.unet, Optimizations(fuse_qkv=True), cache, tuple(x.shape)) as unet:
                fused_changed = unet(x, t, encoder_hidden_states=hidden).sample
        finally:
            attn.to_q.weight.data = saved
    assert not torch.allclose(changed, plain)
    assert torch.allclose(changed, fused_changed, atol=1e-5, rtol=1e-4)


def test_fast_mode_compiles_once_per_shape_and_matches(model):
    """The compile wiring on the CPU with the "eager" backend (no C++ build here): the pass gets a
    compiled module, the warm-up is announced once per latent shape, the output is the plain one."""
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([300, 300])
    hidden = torch.randn(2, 77, model.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(3))
    cache: dict = {}
    said: list[str] = []
    with torch.no_grad():
        plain = model.unet(x, t, encoder_hidden_states=hidden).sample
        outputs = []
        for _ in range(2):
            with unet_for_pass(model.unet, Optimizations(compile=True), cache, tuple(x.shape), said.append, compile_backend="eager") as unet:
                assert isinstance(unet, torch._dynamo.eval_frame.OptimizedModule)
                outputs.append(unet(x, t, encoder_hidden_states=hidden).sample)
    assert said == ["Fast mode: compiling the UNet for 64x64 (first job at this size; later ones reuse it)"]
    for out in outputs:
        assert torch.allclose(plain, out, atol=1e-5, rtol=1e-4)


def test_tiled_vae_decode_and_encode_engage_above_the_threshold(model):
    """Tiles have their own GroupNorm statistics and mid-block attention, so a tiled decode is not the
    plain one: on this random-weight VAE with 64 px tiles it differs a lot (a trained SD VAE with 512 px
    tiles differs far less), which is why tiling only engages above the memory plan's size. What is
    held: it engages exactly above the threshold, restores the module's state, and stays much closer
    to the plain decode than a decode of another latent is."""
    vae = model.vae_module
    latent = torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(4))  # 192x192 pixels; tiles are 64
    other = torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(9))
    plain_model = _with(model, None)
    plain = decode_pixels(plain_model, latent)
    tiled_model = _with(model, Optimizations(vae_tile_above_pixels=64 * 64))
    tiled = decode_pixels(tiled_model, latent)
    assert not getattr(vae, "use_tiling", False)  # the module's own state is restored
    difference = (plain - tiled).abs() * 255
    unrelated = (plain - decode_pixels(plain_model, other)).abs() * 255
    assert difference.max() > 0.5  # it really decoded in tiles
    assert difference.mean() < TILED_SHARE_OF_UNRELATED * unrelated.mean(), (difference.mean(), unrelated.mean())
    # at or below the threshold nothing changes at all
    small = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(decode_pixels(plain_model, small), decode_pixels(tiled_model, small))
    pixels = plain[:, :, :192, :192]
    plain_latent, tiled_latent = encode(plain_model, pixels), encode(tiled_model, pixels)
    assert not torch.equal(plain_latent, tiled_latent)
    assert tiled_latent.shape == plain_latent.shape and torch.isfinite(tiled_latent).all()


class NaNOnHalfVae(torch.nn.Module):
    """A VAE whose half-precision decode gives NaN (as the SDXL VAE does in fp16); float32 works."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.half_decodes = 0

    @property
    def config(self):
        return self.inner.config

    def decode(self, z: torch.Tensor) -> DecoderOutput:
        if z.dtype == torch.float16:
            self.half_decodes += 1
            out = self.inner.decode(z).sample
            return DecoderOutput(sample=torch.full_like(out, float("nan")))
        return self.inner.decode(z)


def test_half_precision_vae_nan_is_redone_in_float32(model):
    vae = NaNOnHalfVae(copy.deepcopy(model.vae_module).half())
    reference = copy.deepcopy(vae.inner).float()
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    notes: list[str] = []
    out = decode_checked(vae, latent, Optimizations(), notes)
    assert vae.half_decodes == 1 and torch.isfinite(out).all()
    assert next(vae.parameters()).dtype == torch.float32  # stays float32 for the next decodes
    with torch.no_grad():
        expected = reference.decode(latent / reference.config.scaling_factor).sample
    assert torch.equal(out, expected)
    assert len(notes) == 1 and "gave NaN" in notes[0] and "float32" in notes[0]
    decode_checked(vae, latent, Optimizations(), notes)
    assert vae.half_decodes == 1 and len(notes) == 1


def test_a_job_with_a_nan_vae_returns_pictures_and_says_so(model):
    vae = NaNOnHalfVae(copy.deepcopy(model.vae_module).half())
    broken = replace(model, modules={**model.modules, "vae": vae}, caches={}, optimizations=Optimizations())
    result = txt2img(broken, _request())
    assert vae.half_decodes == 1
    assert np.asarray(result.images[0]).std() > 0
    assert any("gave NaN" in note for note in result.notes)


def test_fast_mode_warm_up_is_shown_in_the_job_progress_and_notes(model):
    fast = _with(model, Optimizations(compile=True, compile_backend="eager"))
    events = []
    plain = txt2img(_with(model, None), _request())
    first = txt2img(fast, _request(), on_step=events.append)
    texts = [e.text for e in events if e.text]
    assert texts == ["Fast mode: compiling the UNet for 64x64 (first job at this size; later ones reuse it)"]
    assert events[0].text and events[0].step == 0 and events[0].preview is None  # shown before the first step
    assert texts[0] in first.notes
    second = txt2img(fast, _request(), on_step=events.append)
    assert len([e for e in events if e.text]) == 1 and not any("Fast mode" in n for n in second.notes)
    assert torch.allclose(plain.latents[0], first.latents[0], atol=LATENT_ATOL, rtol=0)


def test_previews_on_the_cpu_arrive_at_their_own_step(model):
    from modules.generation.previews import AsyncPreviews, LinearPreview

    method = LinearPreview(torch.eye(4, 3))
    previews = AsyncPreviews(method)
    latent = torch.randn(1, 4, 8, 8)
    shown = previews.submit(latent)
    assert shown is not None and np.array_equal(np.asarray(shown[0]), np.asarray(method(latent)[0]))
    assert previews.poll() is None and previews.poll(wait=True) is None
    assert np.array_equal(method.pixels(latent)[0].numpy(), np.asarray(method(latent)[0]))
