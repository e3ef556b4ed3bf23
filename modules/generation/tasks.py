"""The generation tasks as a table: what each checks before it is queued and how it runs.

A task is one set-up of the denoising loop (txt2img, img2img/inpaint, outpaint). Each takes the held
model, its request and a `TaskContext` (what the job around it gives every task: the step callback,
the preview method, the extensions' engine hooks, A1111's img2img "fix steps" setting), so adding a
task is one row here. The job layer (`modules/app/`) validates, queues and records; this package
knows nothing of jobs, history or saving.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from modules.generation.engine import EngineHooks, GenerationResult, StepEvent
from modules.generation.img2img import check_inputs as check_img2img_inputs
from modules.generation.img2img import img2img
from modules.generation.outpaint import OutpaintRequest, outpaint
from modules.generation.outpaint import check_inputs as check_outpaint_inputs
from modules.generation.previews import PreviewMethod
from modules.generation.request import GenerationRequest, Img2ImgRequest
from modules.generation.txt2img import txt2img

if TYPE_CHECKING:
    from modules.checkpoints.manager import LoadedModel
    from modules.controlnet.service import ControlNets
    from modules.generation.loras import JobLoras
    from modules.generation.refiner import RefinerModels
    from modules.upscalers.service import Upscalers


@dataclass(frozen=True)
class TaskContext:
    """What the job running a task gives it."""

    on_step: Callable[[StepEvent], None] | None = None  # may raise Interrupted / Skipped
    preview: PreviewMethod | None = None
    hooks: EngineHooks | None = None
    fix_steps: bool = False  # A1111's img2img_fix_steps: run exactly `steps` steps at any strength
    upscalers: "Upscalers | None" = None  # hires fix's model upscalers (None: latent modes, Lanczos and Nearest only)
    controlnets: "ControlNets | None" = None  # the ControlNet models (None: a request with units is refused)
    loras: "JobLoras | None" = None  # the job's LoRAs, for a task that switches them per model call (regional Latent mode)
    refiner: "RefinerModels | None" = None  # the refiner the request names (None: none)


# (model, the job's request, context) -> result. For outpainting the request is the base img2img
# request (what styles, overrides and extensions see); the outpaint settings are bound at submit.
TaskRun = Callable[["LoadedModel", GenerationRequest, TaskContext], GenerationResult]


@dataclass(frozen=True)
class Task:
    """One kind of generation."""

    name: str  # "txt2img" | "img2img" | "outpaint": what the history records
    outputs: str  # the outputs folder it saves to ("txt2img-images" / "img2img-images") and the extensions' task name
    check: Callable[[Any, float], None]  # (request, max input megapixels): UserError for inputs `validate` cannot see


def _run_txt2img(model: "LoadedModel", request: GenerationRequest, ctx: TaskContext) -> GenerationResult:
    return txt2img(model, request, on_step=ctx.on_step, preview=ctx.preview, hooks=ctx.hooks, upscalers=ctx.upscalers, controlnets=ctx.controlnets,
                   loras=ctx.loras, refiner=ctx.refiner)


def _run_img2img(model: "LoadedModel", request: GenerationRequest, ctx: TaskContext) -> GenerationResult:
    assert isinstance(request, Img2ImgRequest)
    return img2img(model, request, on_step=ctx.on_step, preview=ctx.preview, fix_steps=ctx.fix_steps, hooks=ctx.hooks, controlnets=ctx.controlnets,
                   loras=ctx.loras, refiner=ctx.refiner)


def outpaint_run(request: OutpaintRequest) -> TaskRun:
    """The run of one outpainting: the job's (possibly extension-changed) base request with the
    outpaint settings of `request`."""
    def run(model: "LoadedModel", base: GenerationRequest, ctx: TaskContext) -> GenerationResult:
        assert isinstance(base, Img2ImgRequest)
        return outpaint(model, replace(request, base=base), on_step=ctx.on_step, preview=ctx.preview, fix_steps=ctx.fix_steps, hooks=ctx.hooks)
    return run


def _no_inputs(request: Any, max_megapixels: float) -> None:
    """txt2img has no pictures to check."""


TASKS: dict[str, Task] = {
    "txt2img": Task("txt2img", "txt2img", _no_inputs),
    "img2img": Task("img2img", "img2img", check_img2img_inputs),
    "outpaint": Task("outpaint", "img2img", check_outpaint_inputs),  # saved with img2img's, as A1111's outpainting scripts
}
RUNS: dict[str, TaskRun] = {"txt2img": _run_txt2img, "img2img": _run_img2img}


def run_task(name: str, model: "LoadedModel", request: GenerationRequest, ctx: TaskContext) -> GenerationResult:
    """Runs txt2img or img2img (a script's cell, a job's body)."""
    return RUNS[name](model, request, ctx)
