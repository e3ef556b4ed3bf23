"""The one denoising loop every task runs, and what the task set-ups share.

A task (txt2img, img2img, inpaint, the hires pass) only decides how a pass starts: the latent at
the first sigma, which tail of the schedule to walk, and for inpainting the latent to hold where
the mask says "keep" and the inpainting UNet's extra channels. `sample()` then runs the guided
denoiser through the chosen sampler, reporting every step, and `run_batches()` walks the job's
batches with their seeds, turning interrupt and skip into what the user asked for.

The VAE helpers live here too: `encode()` (pixels in [0, 1] -> the latent the UNet sees; the
posterior's mean, so the same image always gives the same latent) and `decode()`.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from PIL import Image

from modules.checkpoints.manager import LoadedModel
from modules.device.unet_pass import unet_for_pass
from modules.device.vae import decode_checked, tiles, vae_tiling
from modules.generation.guidance import EntrySwitch, GuidedDenoiser, StepConditions, UNetEps
from modules.generation.previews import AsyncPreviews, PreviewMethod, to_images
from modules.generation.refiner import RefinerDenoiser, RefinerSwitch, RefinerTurn
from modules.generation.request import GenerationRequest
from modules.hypernetworks.processor import hypernetworks_applied
from modules.regions.attention import regional_attention
from modules.regions.prompt_mode import PromptRegionPlan
from modules.sampling import noise as noise_mod
from modules.sampling.denoiser import DiscreteDenoiser
from modules.sampling.sampler_table import SamplerSpec, parse_sampler_name
from modules.sampling.types import Denoiser, NoiseRange, SamplerContext, StepInfo

if TYPE_CHECKING:
    from modules.controlnet.apply import ControlPlan
    from modules.regions.attention import RegionPlan


class Interrupted(Exception):
    """Raised from the step callback to stop the job; the engine keeps what was done."""


class Skipped(Exception):
    """Raised from the step callback to abandon the current batch and go on with the next."""


@dataclass
class StepEvent:
    """What the engine reports after every step."""

    image_index: int  # first image of the current batch
    image_count: int
    step: int  # 1-based, counted over all passes of the batch (first pass, then hires)
    steps: int
    preview: list[Image.Image] | None
    text: str | None = None  # what the job is doing besides stepping (e.g. fast mode's warm-up)


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
    extra_parameters: dict[str, object] = field(default_factory=dict)  # task keys for the infotext
    notes: list[str] = field(default_factory=list)  # what the job did differently from what was asked
    detected_maps: list[Image.Image] = field(default_factory=list)  # ControlNet control maps, shown after the images, never saved
    detection_previews: list[Image.Image] = field(default_factory=list)  # the detailer's boxes drawn on each picture (the page shows them)
    image_prompts: list[tuple[str, str]] = field(default_factory=list)  # (prompt, negative) per image when they differ (Dynamic Prompts)


@dataclass
class DenoiseInput:
    """What the model is about to be called with; an EngineHooks.before_denoise may change `x`,
    `conds` and `unconds` in place (the call uses what it leaves)."""

    x: torch.Tensor
    sigma: torch.Tensor
    step: int  # steps of this pass done so far
    total_steps: int  # steps of this pass
    conds: StepConditions
    unconds: StepConditions


@dataclass
class EngineHooks:
    """Extension points inside a job; the service fills them from the extensions. Both optional."""

    before_batch: Callable[[int, list[int]], None] | None = None  # (batch index, its seeds)
    before_denoise: Callable[[DenoiseInput], None] | None = None  # before every model evaluation


@dataclass
class Progress:
    """Where a batch is, for step events: its first image, the job's image count, the steps of
    the passes before this one and the steps of all passes of the batch."""

    first_image: int
    image_count: int
    steps_before: int
    steps_total: int
    on_step: Callable[[StepEvent], None] | None
    preview: PreviewMethod | None
    preview_every: int
    hooks: EngineHooks | None = None
    notes: list[str] | None = None  # the job's notes to the user (GenerationResult.notes)


@dataclass
class SamplingPass:
    """One pass of the sampler over one batch."""

    x: torch.Tensor  # the latent at sigmas[0] (noise already added and scaled)
    sigmas: torch.Tensor  # the part of the schedule to walk, in RAM (see sample)
    sampler: SamplerSpec
    conds: StepConditions
    unconds: StepConditions
    seeds: list[int]
    init_latent: torch.Tensor | None = None  # inpainting: the latent held where `keep` is 1
    keep: torch.Tensor | None = None  # (1|B, 1, h, w); 1 = keep the init latent
    image_conditioning: torch.Tensor | None = None  # inpainting UNets: mask + masked-image latent
    time_ids: torch.Tensor | None = None  # SDXL size conditioning
    noise_range: NoiseRange | None = None  # the full schedule's range (SDE samplers' trees)
    fallback: torch.Tensor | None = None  # the result when interrupted before the first step
    control: "ControlPlan | None" = None  # ControlNet units (their step source is bound by `sample`)
    regions: "RegionPlan | None" = None  # regional prompts: the layout; its attention processors are installed for the pass
    entry_switch: "EntrySwitch | None" = None  # regional Latent mode: each part's LoRAs for its model call
    refiner: "RefinerSwitch | None" = None  # the checkpoint that takes the pass's last steps


class MaskedDenoiser:
    """Holds the init latent where the mask keeps it: x0 <- x0·(1 - keep) + init·keep at every
    model call (A1111's CFGDenoiser with mask_before_denoising off)."""

    def __init__(self, inner: "GuidedDenoiser | RefinerDenoiser", init_latent: torch.Tensor, keep: torch.Tensor):
        self.inner, self.init_latent, self.keep = inner, init_latent, keep
        self.sigma_min, self.sigma_max = inner.sigma_min, inner.sigma_max

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return blend(self.inner(x, sigma), self.init_latent, self.keep)

    @property
    def last_uncond_x0(self) -> torch.Tensor | None:
        """The unconditional x0 held like the guided one (DDIM CFG++ then steps as DDIM where `keep` is 1)."""
        x0 = self.inner.last_uncond_x0
        return None if x0 is None else blend(x0, self.init_latent, self.keep)


class HookedDenoiser:
    """Calls `hook` with the model's inputs before every evaluation of `denoiser`; the hook may
    change the latent and the guidance's conditioning."""

    def __init__(self, denoiser, guided: GuidedDenoiser, hook: Callable[[DenoiseInput], None], total_steps: int, done: dict[str, int]):
        self.denoiser, self.guided, self.hook, self.total_steps, self.done = denoiser, guided, hook, total_steps, done
        self.sigma_min, self.sigma_max = denoiser.sigma_min, denoiser.sigma_max

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        call = DenoiseInput(x, sigma, self.done["steps"], self.total_steps, self.guided.conds, self.guided.unconds)
        self.hook(call)
        self.guided.conds, self.guided.unconds = call.conds, call.unconds
        return self.denoiser(call.x, sigma)

    @property
    def last_uncond_x0(self) -> torch.Tensor | None:
        return self.denoiser.last_uncond_x0


def on_device(model: LoadedModel, *modules: torch.nn.Module) -> None:
    """Under model CPU offload, puts `modules` on the compute device (and the others in RAM) before
    they run; otherwise they are there already."""
    if model.placer is not None:
        model.placer.bring(*modules)


def blend(latent: torch.Tensor, init_latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return latent * (1 - keep) + init_latent * keep


def alphas_cumprod(model: LoadedModel) -> torch.Tensor:
    """The training noise schedule from the family's scheduler config (SD's scaled-linear betas)."""
    config = model.spec.scheduler_config
    start, end, count = config.get("beta_start", 0.00085), config.get("beta_end", 0.012), config.get("num_train_timesteps", 1000)
    betas = torch.linspace(start**0.5, end**0.5, count, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


def model_denoiser(model: LoadedModel, time_ids: torch.Tensor | None = None, image_conditioning: torch.Tensor | None = None,
                   unet: torch.nn.Module | None = None, control: "ControlPlan | None" = None,
                   regions: "RegionPlan | None" = None, uncond_time_ids: torch.Tensor | None = None) -> DiscreteDenoiser:
    """The UNet (or `unet`: the pass's optimised view of it) as a k-diffusion denoiser; also the
    model's sigma grid for building schedules."""
    eps = UNetEps(unet if unet is not None else model.unet, time_ids, image_conditioning, control, regions, uncond_time_ids)
    return DiscreteDenoiser(eps, alphas_cumprod(model), model.spec.prediction_type)


def resolve_sampler(sampler_name: str, scheduler: str) -> tuple[SamplerSpec, str]:
    """The sampler row and the schedule to build: a name that carries one ("DPM++ 2M Karras") wins
    when the scheduler is "Automatic", as in A1111."""
    sampler, named = parse_sampler_name(sampler_name)
    return sampler, (named if named and scheduler.lower() == "automatic" else scheduler)


def sampler_eta(request: GenerationRequest, sampler: SamplerSpec) -> float:
    if request.eta is not None:
        return request.eta
    return sampler.eta_default if sampler.eta_default is not None else 1.0


def sample(model: LoadedModel, request: GenerationRequest, plan: SamplingPass, progress: Progress) -> tuple[torch.Tensor | None, bool]:
    """Runs one pass. Returns (latent, interrupted): when the step callback raises Interrupted the
    latent is the last x0 prediction (what the preview showed), or `plan.fallback` before the
    first step. Skipped propagates."""
    announced: set[str] = set()

    def say(text: str) -> None:  # shown as the job's progress text, and kept in its notes
        if progress.on_step is not None:
            progress.on_step(StepEvent(progress.first_image, progress.image_count, progress.steps_before, progress.steps_total, None, text))
        if progress.notes is not None and text not in announced:
            announced.add(text)
            progress.notes.append(text)

    on_device(model, model.unet)
    try:
        # regional attention is Python per layer, and Latent mode changes LoRA weights between calls:
        # such a pass runs the UNet uncompiled
        regional = plan.regions is not None or plan.entry_switch is not None or bool(model.hypernetworks)
        options = replace(model.optimizations, compile=False) if regional and model.optimizations is not None else model.optimizations
        with unet_for_pass(model.unet, options, model.caches, tuple(plan.x.shape), say) as unet:
            return _sample(model, request, plan, progress, unet)
    except Interrupted:  # raised by the step callback while the warm-up was announced
        return plan.fallback, True


def _sample(model: LoadedModel, request: GenerationRequest, plan: SamplingPass, progress: Progress, unet: torch.nn.Module) -> tuple[torch.Tensor | None, bool]:
    # The sigmas stay in RAM (the samplers' `if sigma > 0` tests and step sizes are then host
    # arithmetic) and the denoiser's sigma grid goes to the latent's device (sigma -> timestep is
    # then device arithmetic): so a step never waits for the GPU to report a number back.
    done_steps = {"steps": 0}
    control = replace(plan.control, step=lambda: done_steps["steps"]) if plan.control is not None else None
    inner = model_denoiser(model, plan.time_ids, plan.image_conditioning, unet, control, plan.regions).to(plan.x.device)
    # DDIM CFG++ runs at A1111's CFG scale / 12.5 and steps along the unconditional x0 (see its row).
    cfg_scale = request.cfg_scale * plan.sampler.cfg_scale_multiplier
    guided = GuidedDenoiser(control.ruled(inner) if control is not None else inner, plan.conds, plan.unconds, cfg_scale, inner.sigma_min, inner.sigma_max, keep_uncond=plan.sampler.needs_uncond,
                            row_roles=control is not None, entry_switch=plan.entry_switch)
    held = _held_latent(plan)
    stepping: Any = guided
    if plan.refiner is not None:  # the refiner takes the pass's last steps
        def refined(turn: RefinerTurn, call: int) -> GuidedDenoiser:
            on_device(turn.model, turn.model.unet)
            ref_inner = model_denoiser(turn.model, turn.time_ids, uncond_time_ids=turn.uncond_time_ids).to(plan.x.device)
            ref = GuidedDenoiser(ref_inner, turn.conds, turn.unconds, cfg_scale, ref_inner.sigma_min, ref_inner.sigma_max,
                                 keep_uncond=plan.sampler.needs_uncond, row_roles=turn.uncond_time_ids is not None)
            ref.step = call
            return ref
        stepping = RefinerDenoiser(guided, plan.refiner, inner.sigmas, refined)
    denoiser: Denoiser = stepping if held is None else MaskedDenoiser(stepping, *held)
    if progress.hooks is not None and progress.hooks.before_denoise is not None:
        denoiser = HookedDenoiser(denoiser, guided, progress.hooks.before_denoise, len(plan.sigmas) - 1, done_steps)
    last: dict[str, torch.Tensor] = {}
    previews = AsyncPreviews(progress.preview) if progress.preview is not None and progress.preview_every else None

    def callback(info: StepInfo) -> None:
        last["denoised"] = info.denoised
        done = info.index + 1
        done_steps["steps"] = done
        shown = None
        if previews is not None:
            if done % progress.preview_every == 0 or done == info.total:
                shown = previews.submit(info.denoised)
            if shown is None:  # CUDA: an earlier step's picture whose copy is done, never a wait but at the end
                shown = previews.poll(wait=done == info.total)
        if progress.on_step is not None:
            progress.on_step(StepEvent(progress.first_image, progress.image_count, progress.steps_before + done, progress.steps_total, shown))

    context = SamplerContext(
        callback=callback,
        noise=noise_mod.AncestralNoise(plan.seeds, request.eta_noise_seed_delta, request.rng_source, plan.x.device),
        eta=sampler_eta(request, plan.sampler),
        s_noise=request.s_noise,
        seeds=plan.seeds,
        noise_range=plan.noise_range,
    )
    try:
        regional = regional_attention(model.unet, plan.regions) if plan.regions is not None else nullcontext()
        # hypernetworks first, so the regions' processors wrap theirs
        with torch.no_grad(), hypernetworks_applied(model.unet, model.hypernetworks), regional:
            if isinstance(plan.regions, PromptRegionPlan):
                plan.regions.start()  # Prompt mode: the regions found again for this batch
            latent = plan.sampler.run(denoiser, plan.x, plan.sigmas, context)
    except Interrupted:
        return last.get("denoised", plan.fallback), True
    finally:
        if plan.entry_switch is not None:
            plan.entry_switch.close()
    if held is not None:
        latent = blend(latent, *held)
    return latent, False


def _held_latent(plan: SamplingPass) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(init latent, keep) when the pass holds part of the init latent (inpainting), else None."""
    if plan.keep is None:
        return None
    assert plan.init_latent is not None  # img2img sets init_latent whenever it sets keep
    return plan.init_latent, plan.keep


def encode(model: LoadedModel, pixels: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] -> latents as the UNet sees them (scaled; the posterior mean,
    one image at a time as A1111 does, so batch size never changes a latent)."""
    vae = model.vae_module
    on_device(model, vae)
    param = next(vae.parameters())
    latents = []
    with torch.no_grad(), vae_tiling(vae, tiles(model.optimizations, pixels.shape[-1], pixels.shape[-2])):
        for image in pixels:
            x = (image[None] * 2 - 1).to(param.device, param.dtype)
            latents.append(vae.encode(x).latent_dist.mean.float() * vae.config["scaling_factor"])
    return torch.cat(latents).to(model.device)


def decode(model: LoadedModel, latent: torch.Tensor, notes: list[str] | None = None) -> list[Image.Image]:
    """Latents -> pictures. A half-precision decode that gives NaN is redone in float32 and `notes`
    says so; large pictures decode tiled when the model's memory plan asks for it."""
    on_device(model, model.vae_module)
    return to_images(decode_checked(model.vae_module, latent, model.optimizations, notes))


def decode_pixels(model: LoadedModel, latent: torch.Tensor, notes: list[str] | None = None) -> torch.Tensor:
    """Latents -> images (B, 3, H, W) in [0, 1], not rounded to 8 bits."""
    on_device(model, model.vae_module)
    out = decode_checked(model.vae_module, latent, model.optimizations, notes)
    return ((out + 1) / 2).clamp(0, 1)


BatchFn = Callable[[int, list[int], list[int]], tuple[list[Image.Image], list[torch.Tensor], bool]]


def run_batches(request: GenerationRequest, result: GenerationResult, make_batch: BatchFn, hooks: EngineHooks | None = None) -> GenerationResult:
    """Resolves the job's seeds, then makes each batch with `make_batch(first, seeds, subseeds)`
    -> (images, latents, interrupted), after `hooks.before_batch`. Interrupted keeps the batch's
    images and stops; Skipped drops the batch and goes on."""
    started = time.perf_counter()
    total = request.batch_size * request.n_iter
    result.seeds, result.subseeds = noise_mod.batch_seeds(
        noise_mod.resolve_seed(request.seed), noise_mod.resolve_seed(request.subseed), request.subseed_strength, total
    )
    for batch_index in range(request.n_iter):
        first = batch_index * request.batch_size
        seeds = result.seeds[first : first + request.batch_size]
        subseeds = result.subseeds[first : first + request.batch_size]
        if hooks is not None and hooks.before_batch is not None:
            hooks.before_batch(batch_index, list(seeds))
        try:
            images, latents, interrupted = make_batch(first, seeds, subseeds)
        except Skipped:
            continue
        result.images += images
        result.latents += latents
        result.image_seeds += seeds[: len(images)]
        if interrupted:
            result.interrupted = True
            break
    result.timings["total"] = time.perf_counter() - started + result.timings.get("text", 0.0)
    return result


def tail_steps(steps: int, strength: float, fix_steps: bool) -> tuple[int, int]:
    """A1111's `setup_img2img_steps`: (schedule length, t_enc). The pass walks the last t_enc + 1
    sigmas of a `schedule length`-step schedule, i.e. t_enc + 1 steps. With fix_steps (the hires
    pass, or the img2img_fix_steps setting) exactly `steps` run."""
    strength = min(strength, 0.999)
    if fix_steps:
        return (int(steps / strength) if strength > 0 else 0), steps - 1
    return steps, int(strength * steps)
