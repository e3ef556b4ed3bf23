"""txt2img: the denoising loop set up from noise. Reads top to bottom, like a diffusers pipeline.

1. validate the request; resolve seeds (-1 is random; image i uses seed+i, subseed+i)
2. encode the prompts into per-step conditioning (editing, alternation, AND; cached)
3. per batch: draw each image's noise from its own seed (variation and resize-seed applied)
4. sigmas from the sampler's schedule; the sampler runs the guided denoiser, reporting every step
5. decode the final latents; interrupted -> the last prediction, skipped -> next batch
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from modules.checkpoints.manager import LoadedModel
from modules.errors import UserError
from modules.generation.guidance import GuidedDenoiser, StepConditions, UNetEps, sdxl_time_ids
from modules.generation.previews import FullVaePreview, PreviewMethod
from modules.generation.request import GenerationRequest
from modules.generation.text import build_prompt_encoder, step_conditions
from modules.sampling import noise as noise_mod
from modules.sampling.denoiser import DiscreteDenoiser
from modules.sampling.sampler_table import parse_sampler_name, sigmas_for
from modules.sampling.types import SamplerContext, StepInfo


class Interrupted(Exception):
    """Raised from the step callback to stop the job; the engine keeps what was done."""


class Skipped(Exception):
    """Raised from the step callback to abandon the current batch and go on with the next."""


@dataclass
class StepEvent:
    """What the engine reports after every step."""

    image_index: int  # first image of the current batch
    image_count: int
    step: int  # 1-based
    steps: int
    preview: list[Image.Image] | None


@dataclass
class GenerationResult:
    images: list[Image.Image] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)  # of every image the job was to make (A1111's all_seeds)
    subseeds: list[int] = field(default_factory=list)
    image_seeds: list[int] = field(default_factory=list)  # of each returned image, in order (skips leave gaps)
    interrupted: bool = False
    latents: list[torch.Tensor] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)  # per returned image (filled by the service)
    paths: list[Path | None] = field(default_factory=list)  # where each was saved, if it was
    grid: Image.Image | None = None  # of all images, when there are several (filled by the service)
    grid_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def txt2img(
    model: LoadedModel,
    request: GenerationRequest,
    on_step: Callable[[StepEvent], None] | None = None,
    preview: PreviewMethod | None = None,
) -> GenerationResult:
    """Generates `n_iter` batches of `batch_size` images. `on_step` may raise Interrupted/Skipped."""
    # 1. validate, seeds
    request.validate()
    sampler, named_schedule = parse_sampler_name(request.sampler_name)  # "DPM++ 2M Karras" carries one
    schedule = named_schedule if named_schedule and request.scheduler.lower() == "automatic" else request.scheduler
    total = request.batch_size * request.n_iter
    seeds, subseeds = noise_mod.batch_seeds(
        noise_mod.resolve_seed(request.seed), noise_mod.resolve_seed(request.subseed), request.subseed_strength, total
    )
    result = GenerationResult(seeds=seeds, subseeds=subseeds)
    device = model.device
    started = time.perf_counter()

    # 2. prompts -> per-step conditioning (cached by text)
    encoder = build_prompt_encoder(model, request.clip_skip)
    conds = step_conditions(encoder, request.prompt, request.steps, allow_and=True)
    unconds = step_conditions(encoder, request.negative_prompt, request.steps, allow_and=False)
    result.timings["text"] = time.perf_counter() - started

    unet = model.unet
    sdxl = model.spec.family.name.startswith("sdxl")
    decode = FullVaePreview(model.vae_module)
    time_ids = None
    if sdxl:
        time_ids = sdxl_time_ids(request.width, request.height, refiner=model.spec.family.name == "sdxl-refiner")
    latent_shape = (4, request.height // 8, request.width // 8)
    image_conditioning = None
    if unet.config.in_channels == 9:
        image_conditioning = whole_image_mask_conditioning(model, request.width, request.height)
    elif unet.config.in_channels != 4:
        raise UserError(f"{model.checkpoint.name} is a {model.spec.variant or 'non-standard'} model ({unet.config.in_channels} input channels); it cannot do txt2img.")
    inner = DiscreteDenoiser(UNetEps(unet, time_ids, image_conditioning), alphas_cumprod(model), model.spec.prediction_type)
    sigmas = sigmas_for(sampler, schedule, request.steps, inner, sdxl=sdxl).to(device)
    eta = request.eta if request.eta is not None else (sampler.eta_default if sampler.eta_default is not None else 1.0)

    for batch_index in range(request.n_iter):
        first = batch_index * request.batch_size
        seeds = result.seeds[first : first + request.batch_size]
        subseeds = result.subseeds[first : first + request.batch_size]
        # 3. noise, each image from its own seed
        x = noise_mod.batch_noise(
            latent_shape, seeds, subseeds, request.subseed_strength,
            (request.seed_resize_from_w, request.seed_resize_from_h), request.rng_source, device,
        )
        # 4. sample
        guided = GuidedDenoiser(inner, conds, unconds, request.cfg_scale, inner.sigma_min, inner.sigma_max)
        last: dict[str, torch.Tensor] = {}

        def callback(info: StepInfo) -> None:
            last["denoised"] = info.denoised
            shown = None
            if preview is not None and request.preview_every and ((info.index + 1) % request.preview_every == 0 or info.index + 1 == info.total):
                shown = preview(info.denoised)
            if on_step is not None:
                on_step(StepEvent(first, total, info.index + 1, info.total, shown))

        context = SamplerContext(
            callback=callback,
            noise=noise_mod.AncestralNoise(seeds, request.eta_noise_seed_delta, request.rng_source, device),
            eta=eta,
            s_noise=request.s_noise,
            seeds=seeds,
        )
        try:
            with torch.no_grad():
                latent = sampler.run(guided, x * sigmas[0], sigmas, context)
        except Interrupted:
            result.interrupted = True
            if "denoised" in last:
                result.latents.append(last["denoised"])
                result.images += decode(last["denoised"])
                result.image_seeds += seeds
            break
        except Skipped:
            continue
        # 5. decode
        result.latents.append(latent)
        result.images += decode(latent)
        result.image_seeds += seeds
    result.timings["total"] = time.perf_counter() - started
    return result


def whole_image_mask_conditioning(model: LoadedModel, width: int, height: int) -> torch.Tensor:
    """What an inpainting UNet sees in txt2img (A1111's choice): everything masked (a mask of ones)
    over the latent of a mid-grey image."""
    vae = model.vae_module
    param = next(vae.parameters())
    grey = torch.zeros(1, 3, height, width, device=param.device, dtype=param.dtype)  # 0.5 in [0, 1]
    with torch.no_grad():
        latent = vae.encode(grey).latent_dist.mean.float() * vae.config.scaling_factor
    return torch.cat([torch.ones_like(latent[:, :1]), latent], dim=1)


def alphas_cumprod(model: LoadedModel) -> torch.Tensor:
    """The training noise schedule from the family's scheduler config (SD's scaled-linear betas)."""
    config = model.spec.scheduler_config
    start, end, count = config.get("beta_start", 0.00085), config.get("beta_end", 0.012), config.get("num_train_timesteps", 1000)
    betas = torch.linspace(start**0.5, end**0.5, count, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()
