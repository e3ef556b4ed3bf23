"""Outpainting as a task: extend a picture past its edges with one of OUTPAINT_METHODS.

1. validate the request; take the first init image (upright RGB); fill in the method's defaults
   and fix how far each chosen side grows (A1111's scripts round the enlarged size up to a
   multiple of 64, Easel fill to a multiple of 8), saying so in the notes when it differs.
2. per output image (batch size x batch count, seeds as img2img lays them out): the method paints
   it with inpaint passes run by img2img; step events count across the passes.
3. the infotext keys that restore the outpaint settings, and the enlarged size as "Size".
"""

from __future__ import annotations

from typing import Any, Callable

from PIL import Image

from modules.checkpoints.manager import LoadedModel
from modules.generation.engine import EngineHooks, GenerationResult, StepEvent, run_batches
from modules.generation.image_ops import to_rgb
from modules.generation.outpaint.methods import OutpaintImage, Resolved, resolve
from modules.generation.outpaint.passes import PassRunner
from modules.generation.outpaint.request import OutpaintRequest
from modules.generation.previews import PreviewMethod
from modules.generation.request import MASKED_CONTENT


def outpaint(
    model: LoadedModel,
    request: OutpaintRequest,
    on_step: Callable[[StepEvent], None] | None = None,
    preview: PreviewMethod | None = None,
    fix_steps: bool = False,
    hooks: EngineHooks | None = None,
) -> GenerationResult:
    """Makes `batch_size` x `n_iter` enlarged pictures of `request.base.init_images[0]`.
    `fix_steps`: A1111's img2img_fix_steps setting, applied to every pass. Previews show the part
    of the canvas the current pass works on."""
    # 1. inputs and settings
    request.validate()
    base = request.base
    source = to_rgb(base.init_images[0])
    settings = resolve(request, source.size)
    size = settings.expansion.size(source.size)
    result = GenerationResult(notes=describe_adjustments(request, settings, source.size))
    result.extra_parameters.update(outpaint_parameters(request, settings, size))
    passes = settings.method.count_passes(settings, source.size, (base.width, base.height), request.pixels)
    image_count = base.batch_size * base.n_iter

    # 2. one enlarged picture per seed
    def make_batch(first: int, seeds: list[int], subseeds: list[int]) -> tuple[list[Image.Image], list, bool]:
        images: list[Image.Image] = []
        for offset, (seed, subseed) in enumerate(zip(seeds, subseeds)):
            runner = PassRunner(model, base, first + offset, image_count, passes, on_step, preview, fix_steps, hooks)
            images.append(settings.method.paint(OutpaintImage(source, request, settings, seed, subseed, runner)))
            if runner.interrupted:
                return images, [], True
        return images, [], False

    return run_batches(base, result, make_batch, hooks)


def outpaint_parameters(request: OutpaintRequest, settings: Resolved, size: tuple[int, int]) -> dict[str, Any]:
    """The infotext keys of an outpainted picture: enough to set the outpaint tab up again.
    "Size" is the enlarged picture's; "Mask blur" is the outpaint setting (mk2 blurs its passes
    x4, poor man's x2). Method-specific keys only for their method."""
    params: dict[str, Any] = {
        "Size": f"{size[0]}x{size[1]}",
        "Denoising strength": request.base.strength,
        "Mask blur": settings.mask_blur,
        "Outpaint method": settings.method.label,
        "Outpaint directions": " ".join(request.chosen_directions),
        "Outpaint pixels": request.pixels,
    }
    if settings.method.label == "Outpainting mk2":
        params["Outpaint fall-off exponent"] = request.noise_q
        params["Outpaint color variation"] = request.color_variation
    if settings.method.fill_is_choice:
        params["Masked content"] = MASKED_CONTENT[settings.inpainting_fill]
    return params


def describe_adjustments(request: OutpaintRequest, settings: Resolved, source: tuple[int, int]) -> list[str]:
    """Sentences for what the job does differently from what was literally asked."""
    notes = []
    grown = settings.expansion.sides()
    if any(pixels != request.pixels for _, pixels in grown):
        width, height = settings.expansion.size(source)
        sides = ", ".join(f"{side} {pixels}" for side, pixels in grown)
        notes.append(f"{settings.method.label} needs the enlarged size in multiples of {settings.method.size_multiple} pixels: "
                     f"expanded {sides} pixels instead of {request.pixels} ({width}x{height}).")
    if request.base.mask is not None:
        notes.append("Outpainting makes its own masks: the uploaded mask was not used.")
    if len(request.base.init_images) > 1:
        notes.append("Outpainting extends the first picture only; the others were not used.")
    return notes
