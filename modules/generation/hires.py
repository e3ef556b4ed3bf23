"""Hires fix: txt2img's second pass. The first pass's latent is upscaled (interpolated as a latent,
or decoded, resized as a picture and encoded again), noised to the hires denoising strength and
sampled for exactly the hires steps (A1111's fixed-steps rule), with the hires prompt's schedule.

The size rule is A1111's: "Upscale by" multiplies the first pass size; "Resize width/height to"
with one side 0 keeps the aspect ratio; with both, the picture is upscaled to cover the target and
the latent cropped to it (centre).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from modules.checkpoints.manager import LoadedModel
from modules.errors import UserError
from modules.generation.engine import (
    Interrupted,
    Progress,
    SamplingPass,
    StepEvent,
    decode_pixels,
    encode,
    model_denoiser,
    resolve_sampler,
    sample,
    tail_steps,
)
from modules.generation.guidance import StepConditions
from modules.generation.request import IMAGE_UPSCALERS, LATENT_UPSCALE_MODES, GenerationRequest
from modules.sampling import noise as noise_mod
from modules.sampling.partial import partial_schedule
from modules.sampling.sampler_table import SamplerSpec
from modules.upscalers.progress import describe_tiles

if TYPE_CHECKING:
    from modules.controlnet.service import PassControl
    from modules.generation.guidance import EntrySwitch
    from modules.generation.refiner import RefinerSwitch
    from modules.regions.attention import RegionPlan
    from modules.upscalers.progress import OnProgress, TileProgress
    from modules.upscalers.service import Upscalers

OPT_F = 8  # pixels per latent cell


@dataclass(frozen=True)
class HiresTarget:
    """The size the first pass is upscaled to, and how many latent cells are cut off after."""

    upscale_x: int
    upscale_y: int
    truncate_x: int = 0  # latent columns to crop (half each side)
    truncate_y: int = 0

    @property
    def width(self) -> int:
        return (self.upscale_x // OPT_F - self.truncate_x) * OPT_F

    @property
    def height(self) -> int:
        return (self.upscale_y // OPT_F - self.truncate_y) * OPT_F


def hires_target(request: GenerationRequest) -> HiresTarget:
    """A1111's `calculate_target_resolution`."""
    width, height = request.width, request.height
    rx, ry = request.hr_resize_x, request.hr_resize_y
    if rx == 0 and ry == 0:
        return HiresTarget(int(width * request.hr_scale), int(height * request.hr_scale))
    if ry == 0:
        return HiresTarget(rx, rx * height // width)
    if rx == 0:
        return HiresTarget(ry * width // height, ry)
    if width / height < rx / ry:
        to_x, to_y = rx, rx * height // width
    else:
        to_x, to_y = ry * width // height, ry
    return HiresTarget(to_x, to_y, (to_x - rx) // OPT_F, (to_y - ry) // OPT_F)


def hires_parameters(request: GenerationRequest, first_sampler: str, first_schedule: str) -> dict[str, Any]:
    """The infotext keys A1111 writes for a hires pass, in its order (Denoising strength goes to
    its core position)."""
    params: dict[str, Any] = {"Denoising strength": hires_strength(request)}
    if request.hr_resize_x == 0 and request.hr_resize_y == 0:
        params["Hires upscale"] = request.hr_scale
    else:
        params["Hires resize"] = f"{request.hr_resize_x}x{request.hr_resize_y}"
    if request.hr_second_pass_steps:
        params["Hires steps"] = request.hr_second_pass_steps
    params["Hires upscaler"] = request.hr_upscaler
    if request.hr_sampler_name and request.hr_sampler_name != first_sampler:
        params["Hires sampler"] = request.hr_sampler_name
    if request.hr_scheduler and request.hr_scheduler != first_schedule:
        params["Hires schedule type"] = request.hr_scheduler
    if request.hr_prompt and request.hr_prompt != request.prompt:
        params["Hires prompt"] = request.hr_prompt
    if request.hr_negative_prompt and request.hr_negative_prompt != request.negative_prompt:
        params["Hires negative prompt"] = request.hr_negative_prompt
    return params


def hires_strength(request: GenerationRequest) -> float:
    return request.denoising_strength if request.denoising_strength is not None else 0.7


def hires_steps(request: GenerationRequest) -> int:
    return request.hr_second_pass_steps or request.steps


def hires_sampler(request: GenerationRequest) -> tuple[SamplerSpec, str]:
    """The hires pass's sampler and schedule ("Use same" = the first pass's)."""
    return resolve_sampler(request.hr_sampler_name or request.sampler_name, request.hr_scheduler or request.scheduler)


def upscale(model: LoadedModel, latent: torch.Tensor, request: GenerationRequest, target: HiresTarget, progress: Progress | None = None,
            upscalers: "Upscalers | None" = None) -> torch.Tensor:
    """The first pass's latent at the target size (before the crop). Latent modes interpolate the
    latent; Lanczos and Nearest resize the decoded picture; a model upscaler runs A1111's loop
    (`resize_image`: upscale by the larger of the two ratios, then Lanczos to the exact size),
    reporting its tiles as progress (an interrupt stops it between tiles)."""
    size = (target.upscale_y // OPT_F, target.upscale_x // OPT_F)
    if request.hr_upscaler in LATENT_UPSCALE_MODES:
        mode, antialias = LATENT_UPSCALE_MODES[request.hr_upscaler]
        return torch.nn.functional.interpolate(latent, size=size, mode=mode, antialias=antialias)
    dest = (size[1] * OPT_F, size[0] * OPT_F)
    pixels = decode_pixels(model, latent, progress.notes if progress else None)
    images = []
    for image in pixels:
        array = (image.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)  # A1111 truncates, too
        picture = Image.fromarray(array)
        if request.hr_upscaler in IMAGE_UPSCALERS or request.hr_upscaler == "None":  # None: A1111 resizes with Lanczos
            resample = Image.Resampling.NEAREST if request.hr_upscaler == "Nearest" else Image.Resampling.LANCZOS
            resized = picture.resize(dest, resample=resample)
        else:
            if upscalers is None:
                raise UserError(f"The upscaler {request.hr_upscaler!r} is a model, and model upscalers are not available here.")
            scale = max(dest[0] / picture.width, dest[1] / picture.height)
            resized = upscalers.upscale(picture, request.hr_upscaler, scale, _tile_reporter(progress)) if scale > 1 else picture
            if resized.size != dest:
                resized = resized.resize(dest, resample=Image.Resampling.LANCZOS)
        images.append(torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255).permute(2, 0, 1))
    return encode(model, torch.stack(images))


def _tile_reporter(progress: Progress | None) -> "OnProgress | None":
    """Tile progress as step events (the progress line shows the text; the step callback may raise
    Interrupted between tiles)."""
    if progress is None or progress.on_step is None:
        return None
    on_step = progress.on_step

    def report(tiles: "TileProgress") -> None:
        on_step(StepEvent(progress.first_image, progress.image_count, progress.steps_before, progress.steps_total, None, describe_tiles(tiles)))
    return report


def crop(latent: torch.Tensor, target: HiresTarget) -> torch.Tensor:
    ty, tx = target.truncate_y, target.truncate_x
    return latent[:, :, ty // 2 : latent.shape[2] - (ty + 1) // 2, tx // 2 : latent.shape[3] - (tx + 1) // 2]


def hires_pass(
    model: LoadedModel,
    request: GenerationRequest,
    latent: torch.Tensor,
    seeds: list[int],
    subseeds: list[int],
    conds: StepConditions,
    unconds: StepConditions,
    progress: Progress,
    time_ids: torch.Tensor | None,
    image_conditioning: torch.Tensor | None,
    upscalers: "Upscalers | None" = None,
    control: "PassControl | None" = None,
    regions: "RegionPlan | None" = None,
    entry_switch: "EntrySwitch | None" = None,
    refiner: "RefinerSwitch | None" = None,
) -> tuple[torch.Tensor | None, bool]:
    """Upscales the first pass's `latent` and runs the second pass. Returns (latent, interrupted);
    interrupted while upscaling, the first pass's latent."""
    target = hires_target(request)
    try:
        upscaled = upscale(model, latent, request, target, progress, upscalers)
    except Interrupted:
        return latent, True
    latent = crop(upscaled, target)
    sampler, schedule = hires_sampler(request)
    steps = hires_steps(request)
    total, t_enc = tail_steps(steps, hires_strength(request), fix_steps=True)
    if total == 0:  # denoising strength 0: the upscaled first pass as it is
        return latent, False
    tail = partial_schedule(sampler, schedule, total, t_enc, model_denoiser(model), sdxl=model.spec.family.latent_space == "sdxl")  # in RAM: see engine.sample
    sigmas, full = tail.sigmas, tail.full
    noise = noise_mod.batch_noise(
        tuple(latent.shape[1:]), seeds, subseeds, request.subseed_strength,
        (request.seed_resize_from_w, request.seed_resize_from_h), request.rng_source, latent.device,
    )
    plan = SamplingPass(
        x=tail.start(latent, noise), sigmas=sigmas, sampler=sampler, conds=conds, unconds=unconds, seeds=seeds,
        image_conditioning=image_conditioning, time_ids=time_ids,
        noise_range=(full[full > 0].min(), full.max()), fallback=latent, control=control.plan(len(sigmas) - 1) if control else None,
        regions=regions, entry_switch=entry_switch, refiner=refiner,
    )
    return sample(model, request, plan, progress)
