"""The detailer stage, after a picture is made (ADetailer's `postprocess_image`): for every picture
and every active tab, in order, detect -> filter and shape the masks (modules/detailer/masks.py) ->
repaint each region with img2img inpainting ("only masked" with its padding, or the whole picture)
at the region's own prompt, seed and settings -> the next tab works on the result.

Each region is an ordinary img2img job of the engine, so it has the engine's previews, progress
(reported as "ADetailer tab 1: region 2 of 3"), interrupt and skip. Region j of a tab gets seed + j
(ADetailer's rule) unless the same-seed setting is on; a region whose prompt is [SKIP] is left, and
its index still counts. A tab that finds nothing leaves the picture as it was and says so in the
job's notes; the infotext gets ADetailer's keys and Easel's `ADetailer regions` count.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from PIL import Image, ImageDraw

from modules.detailer.args import DetailerArgsError, DetailerRequest, DetailerTab, is_skip, prompts_for, region_seeds
from modules.detailer.detection import DetectorError
from modules.detailer.infotext import detailer_params
from modules.detailer.masks import region_masks, to_pil, touching
from modules.errors import UserError
from modules.generation.engine import GenerationResult, StepEvent
from modules.generation.request import GenerationRequest, Img2ImgRequest, MaskedContent

if TYPE_CHECKING:
    from modules.checkpoints.manager import LoadedModel
    from modules.detailer.catalog import DetectorCatalog
    from modules.generation.tasks import TaskContext, TaskRun

MAX_REGIONS = 32  # per tab and picture; more are cut with a notice
SEED_LIMIT = 2**32
SAME_SAMPLER = ("Use same sampler", "")
SAME_SCHEDULER = ("Use same scheduler", "")
SAME_MODEL = (None, "", "None", "Use same checkpoint", "Use same VAE")

RunImg2Img = Callable[[Img2ImgRequest, Callable[[StepEvent], None] | None], GenerationResult]


@dataclass
class DetailerOptions:
    """ADetailer's global options (its Settings section)."""

    sort_order: str = "None"  # ad_bbox_sortby
    same_seed: bool = False  # ad_same_seed_for_each_tab
    max_regions: int = MAX_REGIONS


@dataclass
class PictureReport:
    regions: list[int] = field(default_factory=list)  # per active tab
    preview: Image.Image | None = None  # the boxes the tabs found, drawn on the picture


def check_tabs(detailer: DetailerRequest, detectors: "DetectorCatalog") -> None:
    """What can be refused before the job is queued: the detectors and the settings Easel lacks."""
    for position, tab in detailer.active_tabs:
        where = f"ADetailer tab {position + 1}"
        detectors.path(tab.ad_model, f"{where}: ad_model")
        if tab.ad_use_checkpoint and tab.ad_checkpoint not in SAME_MODEL:
            raise DetailerArgsError(f"{where}: ad_checkpoint {tab.ad_checkpoint!r}: a separate checkpoint per tab is not supported yet; "
                                    "send ad_use_checkpoint false.")
        if tab.ad_use_vae and tab.ad_vae not in SAME_MODEL:
            raise DetailerArgsError(f"{where}: ad_vae {tab.ad_vae!r}: a separate VAE per tab is not supported yet; send ad_use_vae false.")
        if tab.ad_restore_face:
            raise DetailerArgsError(f"{where}: ad_restore_face: Easel has no face restoration model yet; send false.")
        if tab.ad_mask_min_ratio > tab.ad_mask_max_ratio:
            raise DetailerArgsError(f"{where}: ad_mask_min_ratio {tab.ad_mask_min_ratio:g} is above ad_mask_max_ratio {tab.ad_mask_max_ratio:g}, "
                                    "so no region could be kept; make the minimum the smaller.")
        if tab.ad_use_inpaint_width_height:
            try:
                GenerationRequest(width=tab.ad_inpaint_width, height=tab.ad_inpaint_height).validate()
            except UserError as error:
                raise DetailerArgsError(f"{where}: ad_inpaint_width/ad_inpaint_height: {error}") from error


def region_request(request: GenerationRequest, tab: DetailerTab, image: Image.Image, mask: Image.Image, prompt: str, negative: str,
                   seed: int, subseed: int, control_units: list) -> Img2ImgRequest:
    """The img2img inpainting of one region, from the picture's own request and the tab's settings."""
    width, height = (tab.ad_inpaint_width, tab.ad_inpaint_height) if tab.ad_use_inpaint_width_height else image.size
    width, height = max(8, width - width % 8), max(8, height - height % 8)  # the engine's sizes; the result is fitted back
    sampler = tab.ad_sampler if tab.ad_use_sampler and tab.ad_sampler not in SAME_SAMPLER else request.sampler_name
    scheduler = tab.ad_scheduler if tab.ad_use_sampler and tab.ad_scheduler not in SAME_SCHEDULER else request.scheduler
    return Img2ImgRequest(
        prompt=prompt, negative_prompt=negative, sampler_name=sampler, scheduler=scheduler,
        steps=tab.ad_steps if tab.ad_use_steps else request.steps, cfg_scale=tab.ad_cfg_scale if tab.ad_use_cfg_scale else request.cfg_scale,
        width=width, height=height, seed=seed % SEED_LIMIT, subseed=subseed % SEED_LIMIT if subseed >= 0 else -1,
        subseed_strength=request.subseed_strength, clip_skip=tab.ad_clip_skip if tab.ad_use_clip_skip else request.clip_skip,
        tiling=request.tiling, eta=request.eta, s_noise=request.s_noise, eta_noise_seed_delta=request.eta_noise_seed_delta,
        rng_source=request.rng_source, preview_every=request.preview_every, save_samples=False,
        init_images=[image], mask=mask, mask_blur=tab.ad_mask_blur, inpainting_fill=MaskedContent.ORIGINAL,
        inpaint_full_res=tab.ad_inpaint_only_masked, inpaint_full_res_padding=tab.ad_inpaint_only_masked_padding,
        denoising_strength=tab.ad_denoising_strength,
        initial_noise_multiplier=tab.ad_noise_multiplier if tab.ad_use_noise_multiplier else 1.0,
        control_units=control_units,
    )


def tab_control_units(tab: DetailerTab) -> list:
    """A ControlNet unit for the tab's ad_controlnet_model (its picture: the one being repainted)."""
    if tab.ad_controlnet_model in ("None", "", None):
        return []
    from modules.controlnet.units import ControlUnit

    module = tab.ad_controlnet_module if tab.ad_controlnet_module not in ("None", "", None) else "none"
    return [ControlUnit(module=module, model=tab.ad_controlnet_model, weight=tab.ad_controlnet_weight,
                        guidance_start=tab.ad_controlnet_guidance_start, guidance_end=tab.ad_controlnet_guidance_end, save_detected_map=False)]


def draw_boxes(image: Image.Image, boxes: list[tuple[float, float, float, float]], labels: list[str]) -> Image.Image:
    preview = image.convert("RGB").copy()
    pen = ImageDraw.Draw(preview)
    for (x1, y1, x2, y2), label in zip(boxes, labels):
        pen.rectangle((x1, y1, x2, y2), outline=(255, 0, 255), width=max(1, min(preview.size) // 128))
        pen.text((x1 + 2, y1 + 1), label, fill=(255, 0, 255))
    return preview


def detail_picture(image: Image.Image, request: GenerationRequest, detailer: DetailerRequest, seed: int, subseed: int,
                   detectors: "DetectorCatalog", run: RunImg2Img, on_step: Callable[[StepEvent], None] | None,
                   options: DetailerOptions, notes: list[str]) -> tuple[Image.Image, PictureReport, bool]:
    """(the picture after every active tab, what was found, interrupted). Each tab detects on the
    picture the previous tab left."""
    report = PictureReport()
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[str] = []
    inpaint_mask = request.mask if isinstance(request, Img2ImgRequest) and not request.inpaint_full_res else None
    for position, tab in detailer.active_tabs:
        where = f"ADetailer tab {position + 1}"
        classes = [name.strip() for name in tab.ad_model_classes.split(",") if name.strip()] or None
        found = detectors.detector(tab.ad_model, f"{where}: ad_model").detect(image, tab.ad_confidence, classes)
        masks = region_masks(found, tab, options.sort_order)
        if inpaint_mask is not None:
            masks = touching(masks, inpaint_mask.convert("L"))
        if len(masks) > options.max_regions:
            notes.append(f"{where}: {len(masks)} regions found; only the first {options.max_regions} were repainted.")
            masks = masks[: options.max_regions]
        report.regions.append(len(masks))
        boxes += [tuple(float(v) for v in box) for box in found.boxes]  # type: ignore[misc]
        labels += found.labels or [tab.ad_model] * len(found)
        if not masks:
            notes.append(f"{where} ({tab.ad_model}): nothing found; the picture is unchanged.")
            continue
        prompts = prompts_for(tab.ad_prompt, request.prompt, len(masks))
        negatives = prompts_for(tab.ad_negative_prompt, request.negative_prompt, len(masks))
        for index, mask in enumerate(masks):
            if is_skip(prompts[index]):
                continue
            region_seed, region_subseed = region_seeds(seed, subseed, index, options.same_seed)
            text = f"{where}: region {index + 1} of {len(masks)}"

            def step(event: StepEvent, text: str = text) -> None:
                if on_step is not None:
                    on_step(replace(event, text=text))

            sub = run(region_request(request, tab, image, to_pil(mask), prompts[index], negatives[index], region_seed, region_subseed,
                                     tab_control_units(tab)), step)
            if sub.images:
                image = sub.images[0] if sub.images[0].size == image.size else sub.images[0].resize(image.size, Image.Resampling.LANCZOS)
            notes += [note for note in sub.notes if note not in notes]
            if sub.interrupted:
                return image, report, True
    report.preview = draw_boxes(image, boxes, labels) if boxes else None
    return image, report, False


def detail(result: GenerationResult, request: GenerationRequest, detailer: DetailerRequest, detectors: "DetectorCatalog", run: RunImg2Img,
           on_step: Callable[[StepEvent], None] | None = None, options: DetailerOptions | None = None) -> None:
    """Runs the detailer over every picture of `result`, in place (pictures, infotext keys, notes,
    the box previews)."""
    options = options or DetailerOptions()
    counts: list[str] = []
    for index, image in enumerate(list(result.images)):
        seed = result.image_seeds[index] if index < len(result.image_seeds) else int(request.seed)
        at = result.seeds.index(seed) if seed in result.seeds else index
        subseed = result.subseeds[at] if at < len(result.subseeds) else -1
        picture, report, interrupted = detail_picture(image, request, detailer, seed, subseed, detectors, run, on_step, options, result.notes)
        result.images[index] = picture
        counts.append("+".join(str(n) for n in report.regions))
        if report.preview is not None:
            result.detection_previews.append(report.preview)
        if interrupted:
            result.interrupted = True
            break
    result.extra_parameters.update(detailer_params(detailer.tabs))
    if counts:
        result.extra_parameters["ADetailer regions"] = ", ".join(counts)


def with_detailer(run: "TaskRun", detectors: "DetectorCatalog | None", options: DetailerOptions) -> "TaskRun":
    """A task run (txt2img, img2img) followed by the request's detailer tabs; with ADetailer's
    skip_img2img an img2img request's pictures go to the detailer as they are."""
    def detailed(model: "LoadedModel", request: GenerationRequest, ctx: "TaskContext") -> GenerationResult:
        detailer = request.detailer
        if detailer is None or not detailer.runs:
            return run(model, request, ctx)
        if detectors is None:
            raise DetectorError("This request has ADetailer tabs, and the detailer is not available here.")
        if isinstance(request, Img2ImgRequest) and detailer.skip_img2img:
            result = unchanged_pictures(request)
        else:
            result = run(model, request, ctx)
        if result.interrupted or not result.images:
            return result

        def region(sub: Img2ImgRequest, on_step: Callable[[StepEvent], None] | None) -> GenerationResult:
            from modules.generation.img2img import img2img

            return img2img(model, sub, on_step=on_step, preview=ctx.preview, fix_steps=ctx.fix_steps, controlnets=ctx.controlnets)

        detail(result, request, detailer, detectors, region, ctx.on_step, options)
        return result
    return detailed


def unchanged_pictures(request: Img2ImgRequest) -> GenerationResult:
    """ADetailer's "skip img2img": the init pictures (at the request's size, by its resize mode), one
    per picture the job would make, with the seeds the job would use, for the detailer to work on."""
    from modules.generation.image_ops import resize_image
    from modules.sampling import noise

    result = GenerationResult()
    total = request.batch_size * request.n_iter
    result.seeds, result.subseeds = noise.batch_seeds(noise.resolve_seed(request.seed), noise.resolve_seed(request.subseed),
                                                      request.subseed_strength, total)
    mode = request.resize_mode if request.resize_mode in (0, 1, 2) else 0
    for index in range(total):
        source = request.init_images[index % len(request.init_images)].convert("RGB")
        result.images.append(source if source.size == (request.width, request.height) else resize_image(mode, source, request.width, request.height))
    result.image_seeds = list(result.seeds)
    return result
