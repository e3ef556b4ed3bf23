"""img2img and inpainting: the denoising loop set up from a picture (A1111 1.10 `processing.py`).

1. prepare each init image once per job: flatten to RGB, check its size, and for inpainting turn
   the mask into its blurred, inverted-if-asked form; "Only masked" crops the padded mask box
   (grown to the render aspect ratio) and renders it at the chosen size; the others resize the
   image by the resize mode. Masked content "fill" paints the hole with blurred surroundings.
2. encode it; "latent upscale" resizes the latent instead of the picture; "latent noise" and
   "latent nothing" replace the masked part of the latent.
3. per batch: noise from each image's seed, added at the first sigma of the schedule's tail
   (denoising strength decides how much of the schedule runs); for inpainting the unmasked latent
   is held at every step and at the end; 9-channel inpainting UNets get mask + masked-image latent.
4. decode; for inpainting the original is composited back over everything outside the mask
   ("Only masked": the render is scaled back into its box first), so those pixels are unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from modules.checkpoints.manager import LoadedModel
from modules.errors import UserError
from modules.generation import masks
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
    resolve_sampler,
    run_batches,
    sample,
    tail_steps,
)
from modules.generation.guidance import sdxl_time_ids
from modules.generation.image_ops import check_size, resize_image, to_rgb
from modules.generation.loras import JobLoras
from modules.generation.previews import PreviewMethod
from modules.generation.refiner import RefinerModels, handed_back, refiner_switch
from modules.generation.regional import region_previews, regional_pass
from modules.generation.request import INPAINT_AREAS, MASK_MODES, MASKED_CONTENT, Img2ImgRequest, MaskedContent, ResizeMode, RngSource
from modules.generation.text import build_prompt_encoder, step_conditions, ti_hashes
from modules.regions.setup import prepare_regions
from modules.sampling import noise as noise_mod
from modules.sampling.partial import partial_schedule

if TYPE_CHECKING:
    from modules.controlnet.service import ControlNets


@dataclass
class PreparedImage:
    """One init image, ready to encode: what the model sees and what goes back on top after."""

    pixels: torch.Tensor  # (3, H, W) in [0, 1]; "latent upscale": the image at its own size
    mask: Image.Image | None = None  # L, the render size: where to repaint (blurred); None: img2img
    overlay: Image.Image | None = None  # RGBA original, transparent where repainted
    paste_box: tuple[int, int, int, int] | None = None  # "Only masked": (x, y, w, h) in the original


@dataclass
class Preparation:
    images: list[PreparedImage]
    parameters: dict[str, Any] = field(default_factory=dict)  # infotext keys, in A1111's order
    notes: list[str] = field(default_factory=list)


def check_inputs(request: Img2ImgRequest, max_megapixels: float) -> None:
    """Refuses what cannot be used before the job is queued: unreadable or oversized images."""
    for index, image in enumerate([*request.init_images, *([request.mask] if request.mask is not None else [])]):
        is_mask = index == len(request.init_images)
        if not isinstance(image, Image.Image):
            if is_mask:
                raise UserError(f"The mask is not a picture Easel can read ({type(image).__name__}).")
            raise UserError(f"Image {index + 1} is not a picture Easel can read ({type(image).__name__}).")
        check_size(image, max_megapixels)
        try:
            image.load()  # a truncated or corrupt file fails here, not in the middle of the job
        except (OSError, ValueError) as error:
            if is_mask:
                raise UserError(f"The mask could not be read ({error}); it may be cut short or damaged. Save it again and retry.") from error
            raise UserError(f"Image {index + 1} could not be read ({error}); it may be cut short or damaged. Save it again and retry.") from error


def prepare(request: Img2ImgRequest) -> Preparation:
    """Step 1 for every init image (see the module docstring)."""
    out = Preparation([])
    width, height = request.width, request.height
    mask = None
    if request.mask is not None:
        mask, mask_notes = _mask_for(request, request.mask)
        out.notes += mask_notes
    if mask is not None:
        blur_x, blur_y = request.blur_xy
        if request.inpainting_mask_invert:
            out.parameters["Mask mode"] = MASK_MODES[1]
        out.parameters["Mask blur"] = blur_x if blur_x == blur_y else None
        if blur_x != blur_y:
            out.parameters["Mask blur X"], out.parameters["Mask blur Y"] = blur_x, blur_y
        if request.inpaint_full_res:
            out.parameters["Inpaint area"] = INPAINT_AREAS[1]
            out.parameters["Masked area padding"] = request.inpaint_full_res_padding
        if request.inpainting_fill != MaskedContent.ORIGINAL:
            out.parameters["Masked content"] = MASKED_CONTENT[request.inpainting_fill]
    if request.initial_noise_multiplier != 1.0:
        out.parameters["Noise multiplier"] = request.initial_noise_multiplier

    for source in request.init_images:
        image = to_rgb(source)
        if mask is None:
            out.images.append(PreparedImage(_pixels(_resized(image, request))))
            continue
        image_mask = _fit_mask(mask, image.size)
        if request.inpaint_full_res:
            region = masks.crop_region(image_mask, request.inpaint_full_res_padding)
            if region is None:  # cannot happen: empty masks were turned into img2img above
                raise UserError("The mask is empty.")
            x1, y1, x2, y2 = masks.expand_crop_region(region, width, height, image.width, image.height)
            render_mask = resize_image(ResizeMode.RESIZE_AND_FILL, image_mask.crop((x1, y1, x2, y2)), width, height)
            overlay = masks.overlay_image(image, image_mask)
            render = resize_image(ResizeMode.RESIZE_AND_FILL, image.crop((x1, y1, x2, y2)), width, height)
            paste_box = (x1, y1, x2 - x1, y2 - y1)
        else:
            # "Latent upscale" stretches the mask and the composite base like "Just resize"; the
            # picture itself is encoded at its own size and its latent resized.
            mode = ResizeMode.JUST_RESIZE if request.resize_mode == ResizeMode.LATENT_UPSCALE else request.resize_mode
            render_mask = resize_image(mode, image_mask, width, height)
            base = resize_image(mode, image, width, height)
            overlay = masks.overlay_image(base, masks.overlay_mask(render_mask))
            render = _eighths(image) if request.resize_mode == ResizeMode.LATENT_UPSCALE else base
            paste_box = None
        if request.inpainting_fill == MaskedContent.FILL:
            hole = render_mask if render.size == render_mask.size else _fit_mask(image_mask, render.size)
            render = masks.fill_masked(render, hole)
        out.images.append(PreparedImage(_pixels(render), render_mask, overlay, paste_box))
    return out


def _mask_for(request: Img2ImgRequest, painted: Image.Image) -> tuple[Image.Image | None, list[str]]:
    """The mask as A1111 uses it (L, white = repaint) from the request's `painted` one: binary from
    alpha or luminance, inverted for "Inpaint not masked", blurred. None when nothing is to be repainted."""
    notes = []
    mask = masks.mask_from_image(painted, round=request.mask_round)
    if request.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    if mask.getbbox() is None:
        notes.append("The mask is empty (nothing painted): ran img2img on the whole picture instead.")
        return None, notes
    first = request.init_images[0]
    if mask.size != first.size:
        notes.append(f"The mask is {mask.width}x{mask.height} and the image {first.width}x{first.height}: the mask was resized to fit.")
    blur_x, blur_y = request.blur_xy
    return masks.blur_mask(mask, blur_x, blur_y), notes


def _fit_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    return mask if mask.size == size else mask.resize(size, Image.Resampling.LANCZOS)


def _resized(image: Image.Image, request: Img2ImgRequest) -> Image.Image:
    if request.resize_mode == ResizeMode.LATENT_UPSCALE:
        return _eighths(image)
    return resize_image(request.resize_mode, image, request.width, request.height)


def _eighths(image: Image.Image) -> Image.Image:
    """"Latent upscale" encodes the picture at its own size: rounded down to whole latent cells."""
    width, height = max(8, image.width // 8 * 8), max(8, image.height // 8 * 8)
    return image if (width, height) == image.size else image.resize((width, height), Image.Resampling.LANCZOS)


def _pixels(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


@dataclass
class EncodedImage:
    latent: torch.Tensor  # (1, 4, h, w) at the render size
    keep: torch.Tensor | None  # (1, 1, h, w): 1 = keep the init latent
    conditioning: torch.Tensor | None  # (1, 5, h, w) for 9-channel UNets


def encode_prepared(model: LoadedModel, prepared: PreparedImage, request: Img2ImgRequest) -> EncodedImage:
    """Step 2 without the per-seed part: the latent at the render size, the latent-size keep mask
    and the inpainting UNet's conditioning."""
    latent = encode(model, prepared.pixels[None])
    size = model.spec.family.latent_shape(request.width, request.height)[1:]
    if latent.shape[-2:] != size:  # "latent upscale"
        latent = torch.nn.functional.interpolate(latent, size=size, mode="bilinear")
    keep = None
    if prepared.mask is not None:
        regen = masks.latent_mask(prepared.mask, size[1], size[0], round=request.mask_round)
        keep = 1 - torch.from_numpy(regen)[None, None].to(latent.device)
    conditioning = None
    if model.unet.config["in_channels"] == 9:
        conditioning = inpainting_conditioning(model, prepared, request, latent)
    return EncodedImage(latent, keep, conditioning)


def inpainting_conditioning(model: LoadedModel, prepared: PreparedImage, request: Img2ImgRequest, latent: torch.Tensor) -> torch.Tensor:
    """A1111's `inpainting_image_conditioning` (mask weight 1): the rounded mask, and the latent of
    the picture with the masked part set to mid-grey. No mask: everything masked."""
    pixels = prepared.pixels
    if prepared.mask is not None and pixels.shape[-2:] == (request.height, request.width):
        mask = torch.from_numpy(np.asarray(prepared.mask, dtype=np.float32) / 255)[None, None]
        if request.mask_round:
            mask = torch.round(mask)
    else:
        mask = torch.ones(1, 1, *pixels.shape[-2:])
    source = pixels[None] * 2 - 1
    masked = source * (1 - mask)
    masked_latent = encode(model, (masked + 1) / 2)
    if masked_latent.shape[-2:] != latent.shape[-2:]:
        masked_latent = torch.nn.functional.interpolate(masked_latent, size=latent.shape[-2:], mode="bilinear")
    small_mask = torch.nn.functional.interpolate(mask, size=latent.shape[-2:]).to(latent.device)
    return torch.cat([small_mask, masked_latent], dim=1)


def repaint_mask(request: Img2ImgRequest) -> Image.Image | None:
    """The inpaint mask as white = repaint (Mask mode "Inpaint not masked" inverts it), or None."""
    if request.mask is None:
        return None
    mask = request.mask.convert("L")
    return ImageOps.invert(mask) if request.inpainting_mask_invert == 1 else mask


def masked_content_latent(init: torch.Tensor, keep: torch.Tensor, content: int, seeds: list[int], rng_source: RngSource) -> torch.Tensor:
    """The latent sampling starts from under the mask: "latent noise" is each image's seed noise
    (A1111 draws it like the first noise, without variation), "latent nothing" zeros; "fill" and
    "original" keep the encoded picture (fill already painted the hole before encoding)."""
    if content == MaskedContent.LATENT_NOISE:
        noise = noise_mod.batch_noise(tuple(init.shape[1:]), seeds, None, 0.0, None, rng_source, init.device)
        return init * keep + noise * (1 - keep)
    if content == MaskedContent.LATENT_NOTHING:
        return init * keep
    return init


def _joined(parts: list[torch.Tensor | None]) -> torch.Tensor:
    """The images' tensors joined on the batch axis. Every image of a request has a mask or none
    has, and every one has inpainting conditioning on an inpainting model: so all are there."""
    present = [part for part in parts if part is not None]
    assert len(present) == len(parts)
    return torch.cat(present)


def finish(images: list[Image.Image], prepared: list[PreparedImage]) -> list[Image.Image]:
    """Step 4: the original back over everything that was not to be repainted."""
    return [masks.apply_overlay(image, p.paste_box, p.overlay) for image, p in zip(images, prepared)]


def img2img(
    model: LoadedModel,
    request: Img2ImgRequest,
    on_step: Callable[[StepEvent], None] | None = None,
    preview: PreviewMethod | None = None,
    fix_steps: bool = False,
    hooks: EngineHooks | None = None,
    controlnets: "ControlNets | None" = None,
    loras: JobLoras | None = None,
    refiner: RefinerModels | None = None,
) -> GenerationResult:
    """Makes `n_iter` batches of `batch_size` images from `request.init_images` (image i starts from
    init image i mod their count). `fix_steps`: A1111's img2img_fix_steps setting; `hooks`: the
    extensions' per-batch and per-model-call hooks; `loras`: the job's LoRAs (regional Latent mode);
    `refiner`: the checkpoint that takes the pass's last steps, when the request names one."""
    request.validate()
    sampler, schedule = resolve_sampler(request.sampler_name, request.scheduler)
    in_channels = model.unet.config["in_channels"]
    if in_channels not in (4, 9):
        raise UserError(f"{model.checkpoint.name} is a {model.spec.variant or 'non-standard'} model ({in_channels} input channels); Easel cannot run it for img2img yet.")
    result = GenerationResult()
    device = model.device
    started = time.perf_counter()

    preparation = prepare(request)
    result.notes += preparation.notes
    result.extra_parameters.update({"Denoising strength": request.strength, **preparation.parameters})
    encoded = [encode_prepared(model, p, request) for p in preparation.images]

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
    result.timings["text"] = time.perf_counter() - started

    total_steps, t_enc = tail_steps(request.steps, request.strength, fix_steps)
    family = model.spec.family
    tail = partial_schedule(sampler, schedule, total_steps, t_enc, model_denoiser(model), sdxl=family.latent_space == "sdxl")  # in RAM: see engine.sample
    sigmas, full = tail.sigmas, tail.full
    time_ids = sdxl_time_ids(request.width, request.height, refiner=family.refiner) if family.size_conditioning else None
    latent_shape = family.latent_shape(request.width, request.height)
    control = None
    if request.control_units:  # a unit without its own image uses the first init image (and mask), as the extension does
        controls = needs_controlnets(controlnets)
        request = replace(request, seed=noise_mod.resolve_seed(request.seed))  # the preprocessors that draw numbers use it
        result.extra_parameters.update(controls.infotext(request.control_units))
        control = controls.prepare(request.control_units, model, request.width, request.height, request.init_images[0].convert("RGB"),
                                   init_mask=repaint_mask(request), seed=control_seed(request))
        control.encode_latents(lambda pixels: encode(model, pixels))
        result.detected_maps = list(control.maps)

    def make_batch(first: int, seeds: list[int], subseeds: list[int]):
        picks = [(first + j) % len(encoded) for j in range(len(seeds))]
        init = torch.cat([encoded[i].latent for i in picks])
        keep = _joined([encoded[i].keep for i in picks]) if encoded[picks[0]].keep is not None else None
        conditioning = _joined([encoded[i].conditioning for i in picks]) if in_channels == 9 else None
        if keep is not None:
            init = masked_content_latent(init, keep, request.inpainting_fill, seeds, request.rng_source)
        if request.strength == 0:  # nothing to denoise: the picture as the VAE gives it back
            latent, interrupted = init, False
        else:
            noise = noise_mod.batch_noise(
                latent_shape, seeds, subseeds, request.subseed_strength,
                (request.seed_resize_from_w, request.seed_resize_from_h), request.rng_source, device,
            ) * request.initial_noise_multiplier
            switch = refiner_switch(refiner, request, len(sigmas) - 1, request.width, request.height) if refiner is not None else None
            plan = SamplingPass(
                tail.start(init, noise), sigmas, sampler, conds, unconds, seeds, refiner=switch,
                init_latent=init if keep is not None else None, keep=keep, image_conditioning=conditioning, time_ids=time_ids,
                noise_range=(full[full > 0].min(), full.max()), fallback=init, control=control.plan(len(sigmas) - 1) if control else None,
                regions=first_pass.plan if regional else None, entry_switch=first_pass.switch if regional else None,
            )
            progress = Progress(first, request.batch_size * request.n_iter, 0, len(sigmas) - 1, on_step, preview, request.preview_every, hooks, result.notes)
            sampled, interrupted = sample(model, request, plan, progress)
            handed_back(refiner, switch, request, result)
            assert sampled is not None  # an interrupt before the first step gives back plan.fallback (init)
            latent = sampled
        images = decode(model, latent, result.notes)
        if regional is not None:  # Prompt mode: the regions it found, shown beside the pictures
            result.detection_previews += region_previews(first_pass.plan, images)
        if keep is not None:
            images = finish(images, [preparation.images[i] for i in picks])
        if control is not None:
            images = control.finish(images)
        return images, [latent], interrupted

    return run_batches(request, result, make_batch, hooks)
