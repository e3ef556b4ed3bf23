"""txt2img: the denoising loop set up from noise. Reads top to bottom, like a diffusers pipeline.

1. validate the request; resolve seeds (-1 is random; image i uses seed+i, subseed+i)
2. encode the prompts into per-step conditioning (editing, alternation, AND; cached)
3. per batch: draw each image's noise from its own seed (variation and resize-seed applied)
4. sigmas from the sampler's schedule; the sampler runs the guided denoiser, reporting every step
5. with hires fix, a second pass at the larger size (hires.py)
6. decode the final latents; interrupted -> the last prediction, skipped -> next batch
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import torch

from modules.checkpoints.manager import LoadedModel
from modules.errors import UserError
from modules.generation.controls import control_seed, needs_controlnets
from modules.generation.engine import (
    EngineHooks,
    GenerationResult,
    Progress,
    SamplingPass,
    StepEvent,
    decode,
    encode,
    model_denoiser,
    on_device,
    resolve_sampler,
    run_batches,
    sample,
)
from modules.generation.guidance import sdxl_time_ids
from modules.generation.hires import hires_parameters, hires_pass, hires_steps, hires_target
from modules.generation.loras import JobLoras
from modules.generation.previews import PreviewMethod
from modules.generation.refiner import RefinerModels, handed_back, refiner_switch
from modules.generation.regional import region_previews, regional_pass
from modules.generation.request import GenerationRequest
from modules.generation.text import build_prompt_encoder, step_conditions, ti_hashes
from modules.regions.setup import prepare_regions
from modules.sampling import noise as noise_mod
from modules.sampling.labels import sampler_and_schedule
from modules.sampling.sampler_table import sigmas_for

if TYPE_CHECKING:
    from modules.controlnet.service import ControlNets
    from modules.upscalers.service import Upscalers


def txt2img(
    model: LoadedModel,
    request: GenerationRequest,
    on_step: Callable[[StepEvent], None] | None = None,
    preview: PreviewMethod | None = None,
    hooks: EngineHooks | None = None,
    upscalers: "Upscalers | None" = None,
    controlnets: "ControlNets | None" = None,
    loras: JobLoras | None = None,
    refiner: RefinerModels | None = None,
) -> GenerationResult:
    """Generates `n_iter` batches of `batch_size` images. `on_step` may raise Interrupted/Skipped;
    `hooks`: the extensions' per-batch and per-model-call hooks; `upscalers`: hires fix's model
    upscalers; `loras`: the job's LoRAs (regional Latent mode gives each region's pass its own);
    `refiner`: the checkpoint that takes each pass's last steps, when the request names one."""
    # 1. validate
    request.validate()
    sampler, schedule = resolve_sampler(request.sampler_name, request.scheduler)
    result = GenerationResult()
    device = model.device
    started = time.perf_counter()

    # 2. prompts -> per-step conditioning (cached by text)
    encoder = build_prompt_encoder(model, request.clip_skip)
    regional = prepare_regions(request.regional, request.prompt, request.negative_prompt)
    if regional is not None:  # the regions' parts, each part's tokens kept (modules/regions)
        first_pass = regional_pass(regional, model, encoder, request.clip_skip, request.steps, loras)
        conds, unconds = first_pass.conds, first_pass.unconds
        result.extra_parameters.update(regional.infotext)
    else:
        conds = step_conditions(encoder, request.prompt, request.steps, allow_and=True)
        unconds = step_conditions(encoder, request.negative_prompt, request.steps, allow_and=False)
    result.extra_parameters.update(ti_hashes(encoder, request.steps, request.prompt, request.negative_prompt))
    hires = request.enable_hr
    if hires:
        second = hires_steps(request)
        if regional is not None:  # the regional prompt in the hires pass too (the extension's hrdealer)
            second_pass = regional_pass(regional, model, encoder, request.clip_skip, request.steps, loras, hires_steps=second)
            hr_conds, hr_unconds = second_pass.conds, second_pass.unconds
        else:
            hr_conds = step_conditions(encoder, request.hr_prompt or request.prompt, request.steps, allow_and=True, hires_steps=second)
            hr_unconds = step_conditions(encoder, request.hr_negative_prompt or request.negative_prompt, request.steps, allow_and=False, hires_steps=second)
        result.extra_parameters.update(hires_parameters(request, *sampler_and_schedule(request.sampler_name, request.scheduler)))
    result.timings["text"] = time.perf_counter() - started

    family = model.spec.family
    time_ids = sdxl_time_ids(request.width, request.height, refiner=family.refiner) if family.size_conditioning else None
    latent_shape = family.latent_shape(request.width, request.height)
    image_conditioning = None
    in_channels = model.unet.config["in_channels"]
    if in_channels == 9:
        image_conditioning = whole_image_mask_conditioning(model, request.width, request.height)
    elif in_channels != 4:
        raise UserError(f"{model.checkpoint.name} is a {model.spec.variant or 'non-standard'} model ({in_channels} input channels); it cannot do txt2img.")
    sigmas = sigmas_for(sampler, schedule, request.steps, model_denoiser(model), sdxl=family.latent_space == "sdxl")  # stays in RAM: see engine.sample
    steps_total = len(sigmas) - 1 + (hires_steps(request) if hires else 0)
    control = hr_control = None
    if request.control_units:
        controls = needs_controlnets(controlnets)
        request = replace(request, seed=noise_mod.resolve_seed(request.seed))  # the preprocessors that draw numbers use it
        result.extra_parameters.update(controls.infotext(request.control_units))
        control = controls.prepare(request.control_units, model, request.width, request.height, None, seed=control_seed(request))
        control.encode_latents(lambda pixels: encode(model, pixels))
        result.detected_maps = list(control.maps)
    if hires:
        target = hires_target(request)
        if request.control_units:
            hr_control = needs_controlnets(controlnets).prepare(request.control_units, model, target.width, target.height, None, hires=True,
                                                                seed=control_seed(request))
            hr_control.encode_latents(lambda pixels: encode(model, pixels))
        hr_time_ids = sdxl_time_ids(target.upscale_x, target.upscale_y, refiner=family.refiner) if family.size_conditioning else None
        hr_image_conditioning = whole_image_mask_conditioning(model, target.width, target.height) if in_channels == 9 else None

    def make_batch(first: int, seeds: list[int], subseeds: list[int]):
        # 3. noise, each image from its own seed
        x = noise_mod.batch_noise(
            latent_shape, seeds, subseeds, request.subseed_strength,
            (request.seed_resize_from_w, request.seed_resize_from_h), request.rng_source, device,
        )
        progress = Progress(first, request.batch_size * request.n_iter, 0, steps_total, on_step, preview, request.preview_every, hooks, result.notes)
        # 4. sample
        first_refiner = refiner_switch(refiner, request, request.steps, request.width, request.height) \
            if refiner is not None and refiner.in_pass(hires, False) else None
        plan = SamplingPass(x * sigmas[0], sigmas, sampler, conds, unconds, seeds, image_conditioning=image_conditioning, time_ids=time_ids,
                            refiner=first_refiner,
                            control=control.plan(len(sigmas) - 1) if control else None, regions=first_pass.plan if regional else None,
                            entry_switch=first_pass.switch if regional else None)
        latent, interrupted = sample(model, request, plan, progress)
        handed_back(refiner, first_refiner, request, result)
        # 5. hires pass
        if hires and not interrupted:
            assert latent is not None  # sample gives None only when interrupted
            progress.steps_before = len(sigmas) - 1
            second_refiner = refiner_switch(refiner, request, hires_steps(request), target.width, target.height, hires_steps=hires_steps(request)) \
                if refiner is not None and refiner.in_pass(True, True) else None
            latent, interrupted = hires_pass(model, request, latent, seeds, subseeds, hr_conds, hr_unconds, progress, hr_time_ids, hr_image_conditioning, upscalers, hr_control,
                                             regions=second_pass.plan if regional else None, entry_switch=second_pass.switch if regional else None,
                                             refiner=second_refiner)
            handed_back(refiner, second_refiner, request, result)
        # 6. decode
        if latent is None:
            return [], [], interrupted
        images = decode(model, latent, result.notes)
        if regional is not None:  # Prompt mode: the regions it found, shown beside the pictures
            result.detection_previews += region_previews(second_pass.plan if hires else first_pass.plan, images)
        final_control = hr_control if hires else control
        return (final_control.finish(images) if final_control else images), [latent], interrupted

    return run_batches(request, result, make_batch, hooks)


def whole_image_mask_conditioning(model: LoadedModel, width: int, height: int) -> torch.Tensor:
    """What an inpainting UNet sees in txt2img (A1111's choice): everything masked (a mask of ones)
    over the latent of a mid-grey image."""
    vae = model.vae_module
    on_device(model, vae)
    param = next(vae.parameters())
    grey = torch.zeros(1, 3, height, width, device=param.device, dtype=param.dtype)  # 0.5 in [0, 1]
    with torch.no_grad():
        latent = vae.encode(grey).latent_dist.mean.float() * vae.config["scaling_factor"]
    return torch.cat([torch.ones_like(latent[:, :1]), latent], dim=1)
