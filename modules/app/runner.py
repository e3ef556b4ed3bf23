"""Running one queued job: the `JobRunner` seam, and the runner that runs jobs in this process.

A `JobSpec` is what `Submitter` queues: the request (styled and checked), the task's run and where
its pictures go. A runner turns it into a result:

- `InProcessRunner` holds the model for the whole job, loads the start-up checkpoint if none is
  loaded yet, switches to the request's checkpoint/VAE override and back afterwards, maps the
  job's interrupt/skip to the engine's, applies the request's LoRAs (restored bit for bit after),
  runs the extensions' hooks, reports a `ProgressEvent` after every step, then has the
  `ResultRecorder` write the infotext, save and record.
- `modules/backends/ray_serve.py`'s `RayRunner` runs the same spec on a Ray Serve replica (whose
  own InProcessRunner makes the pictures) and saves here.

Out of memory anywhere in a job becomes `OutOfMemoryError` with a sentence (its size, batch and
what to try), raised only once the failed job's tensors are unreachable and the memory given back,
so the worker goes on with the next job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Protocol

from modules.app.dynamic_jobs import with_dynamic_prompts
from modules.app.results import ResultRecorder
from modules.app.script_jobs import ScriptCall, run_script
from modules.detailer.stage import DetailerOptions, with_detailer
from modules.device.memory import OutOfMemoryError, free_memory, is_out_of_memory
from modules.extensions.job_hooks import JobHooks
from modules.extensions.registry import ExtensionRegistry
from modules.generation.engine import GenerationResult, Interrupted, Skipped, StepEvent
from modules.generation.hires import hires_target
from modules.generation.loras import JobLoras, RequestLoras, request_loras
from modules.generation.previews import PreviewChooser, PreviewMethod
from modules.generation.refiner import RefinerModels
from modules.generation.request import GenerationRequest, Img2ImgRequest
from modules.generation.tasks import TaskContext, TaskRun
from modules.hypernetworks.request import request_hypernetworks
from modules.jobs import JobContext, ProgressEvent
from modules.lora.patch import LoraPatcher

if TYPE_CHECKING:
    from modules.checkpoints.manager import LoadedModel, ModelManager
    from modules.config import Settings
    from modules.controlnet.service import ControlNets
    from modules.detailer.catalog import DetectorCatalog
    from modules.hypernetworks.files import HypernetworkLibrary
    from modules.lora.files import LoraLibrary
    from modules.prompts.dynamic import WildcardLibrary
    from modules.upscalers.service import Upscalers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    """One queued job, as a runner runs it."""

    request: GenerationRequest  # styled and checked; outpainting: its base request
    run: TaskRun | None  # the task's body; None for a script's job
    outputs: str  # the outputs folder ("txt2img" / "img2img"), also the extensions' task name
    history_task: str  # what the history records ("txt2img", "img2img", "outpaint")
    summary: str  # the queue's one-line description
    script: ScriptCall | None = None


class JobRunner(Protocol):
    """Runs a queued job's body (the job queue calls it on its worker thread)."""

    def check(self, spec: JobSpec) -> None:
        """UserError at submit time when this runner cannot run such a job."""

    def run(self, ctx: JobContext, spec: JobSpec) -> GenerationResult:
        """The job's result; raises Interrupted/UserError/OutOfMemoryError as the job fails."""


@dataclass
class _Phase:
    loading: bool = True  # still loading the model (an out-of-memory error then says so)


@dataclass
class InProcessRunner:
    """Runs jobs on this process's model manager."""

    manager: "ModelManager"
    recorder: ResultRecorder
    settings: "Settings"
    previews: PreviewChooser
    extensions: ExtensionRegistry | None = None
    loras: "LoraLibrary | None" = None  # models/Lora; None: LoRA tags are noted and left out
    ensure_model: Callable[[], object] | None = None  # loads the start-up checkpoint when none is loaded
    upscalers: "Upscalers | None" = None  # model upscalers for hires fix (None: latent, Lanczos and Nearest only)
    controlnets: "ControlNets | None" = None  # ControlNet models (None: requests with units are refused)
    detectors: "DetectorCatalog | None" = None  # the detailer's detectors (None: requests with ADetailer tabs are refused)
    wildcards: "WildcardLibrary | None" = None  # Dynamic Prompts' wildcard files (None: templates without wildcards only)
    hypernetworks: "HypernetworkLibrary | None" = None  # models/hypernetworks (None: hypernet tags are noted and left out)
    lora_patcher: LoraPatcher = field(default_factory=LoraPatcher)  # applies a job's LoRAs in place, restores them bitwise after

    def check(self, spec: JobSpec) -> None:
        """Every job runs here."""

    def use_settings(self, settings: "Settings") -> None:
        """Runs the next jobs with `settings` (a Ray replica gets the UI node's with each job)."""
        self.settings = settings
        self.recorder.settings = settings

    def run(self, ctx: JobContext, spec: JobSpec) -> GenerationResult:
        phase = _Phase()
        try:
            return self._run_held(ctx, spec, phase)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            log.warning("Job %s ran out of memory: %s", ctx.job_id, str(error).splitlines()[0] if str(error) else type(error).__name__)
            message = out_of_memory_message(spec.request, phase.loading, error, self.manager.device.type)
        # Outside the except block the error's traceback, and with it every frame of the failed job
        # and the tensors they held, is unreachable: only now can the memory be given back.
        free_memory(self.manager.device.type)
        raise OutOfMemoryError(message)

    def task_context(self, ctx: JobContext, request: GenerationRequest, model: "LoadedModel", hooks: JobHooks) -> TaskContext:
        """The step callback (progress, interrupt, skip), preview and engine hooks of a job."""
        def on_step(event: StepEvent) -> None:
            if ctx.interrupt_requested:
                raise Interrupted()
            if ctx.take_skip():
                raise Skipped()
            ctx.report(ProgressEvent(
                image_index=event.image_index // request.batch_size,
                image_count=request.n_iter,
                step=event.step,
                steps=event.steps,
                preview=event.preview[0] if event.preview else None,
                textinfo=event.text,
            ))

        preview = self.preview(model) if request.preview_every else None
        return TaskContext(on_step, preview, hooks.engine(), self.settings.img2img_fix_steps, self.upscalers, self.controlnets)

    def task_run(self, run: TaskRun) -> TaskRun:
        """`run` followed by the request's detailer tabs (modules/detailer/stage.py)."""
        options = DetailerOptions(sort_order=self.settings.ad_bbox_sortby, same_seed=self.settings.ad_same_seed_for_each_tab)
        return with_dynamic_prompts(with_detailer(run, self.detectors, options), self.wildcards, lambda: self.settings.dp_write_raw_template)

    def preview(self, model: "LoadedModel") -> PreviewMethod | None:
        return self.previews.choose(self.settings.show_progress_type, model.vae_module, sdxl=model.spec.family.latent_space == "sdxl")

    def apply_loras(self, model: "LoadedModel", loras: RequestLoras) -> None:
        if not loras.uses:
            return
        report = self.lora_patcher.apply(model, loras.uses)
        for name, skipped in report.unmatched.items():
            loras.notes.append(f"LoRA {name!r}: {len(skipped)} of its layers do not fit {model.checkpoint.model_name} and were left out.")

    def refiner_models(self, request: GenerationRequest, model: "LoadedModel", loras: RequestLoras) -> RefinerModels | None:
        """How a task makes the request's refiner active and hands the job's model back (None: no
        refiner, or the refiner is the job's own checkpoint, as A1111 then does not switch)."""
        name = (request.refiner_checkpoint or "").strip()
        if not name or name == "None":
            return None
        registry = self.manager.registry
        entry = registry.find_checkpoint(name)
        if entry == model.checkpoint:
            return None

        def activate() -> "LoadedModel":
            self.lora_patcher.restore()  # never swap weights under a patch; the refiner runs without the job's LoRAs
            return self.manager.switch_checkpoint(entry)

        def hand_back() -> None:
            self.manager.take_back(model)
            if loras.uses:
                self.lora_patcher.apply(model, loras.uses)

        return RefinerModels(activate, hand_back, lambda: registry.title(entry), self.settings.refiner_switch_by_sample_steps,
                             self.settings.hires_fix_refiner_pass)

    def lora_infotext(self, loras: RequestLoras) -> dict[str, Any]:
        return loras.infotext(self.loras) if self.loras is not None else {}

    def _run_held(self, ctx: JobContext, spec: JobSpec, phase: _Phase) -> GenerationResult:
        request = spec.request
        with self.manager.lock:
            previous = self.manager.loaded.checkpoint if self.manager.loaded is not None else None
            previous_vae = self.manager.vae_choice
            try:
                if self.manager.loaded is None and self.ensure_model is not None and not request.checkpoint:
                    ctx.report(ProgressEvent(textinfo="Loading the model"))
                    self.ensure_model()
                if request.checkpoint:
                    self.manager.switch_checkpoint(request.checkpoint)
                if request.vae:
                    self.manager.switch_vae(request.vae)
                with self.manager.use() as model:
                    phase.loading = False
                    hooks = JobHooks(self.extensions, spec.history_task)
                    job_request = hooks.start(replace(request))
                    loras = request_loras(self.loras, job_request)
                    self.apply_loras(model, loras)
                    hypernets = request_hypernetworks(self.hypernetworks, job_request)
                    model.hypernetworks = hypernets.networks
                    task_ctx = replace(self.task_context(ctx, job_request, model, hooks),
                                       loras=JobLoras(tuple(loras.uses), loras.files, self.lora_patcher.apply),
                                       refiner=self.refiner_models(job_request, model, loras))
                    try:
                        if spec.script is not None:
                            result = run_script(self, ctx, spec.script, job_request, task_ctx)
                        else:
                            assert spec.run is not None
                            result = self.task_run(spec.run)(model, job_request, task_ctx)
                    finally:  # for this job only: the weights are the checkpoint's again, bit for bit
                        self.lora_patcher.restore()
                        model.hypernetworks = []
                        if self.manager.loaded is not model and job_request.refiner_checkpoint:
                            self.manager.take_back(model)  # the job ended while the refiner was active
                    result.extra_parameters.update(self.lora_infotext(loras))
                    result.notes += loras.notes + hypernets.notes
                    active = self.manager.loaded or model  # a script may have switched and put back the model
                    self.recorder.describe(active, job_request, result, hooks)
                    self.recorder.save(active.checkpoint, job_request, result, spec.outputs, hooks)
                    hooks.after_job(job_request, result)
                    result.notes += hooks.notices()
            finally:
                self._restore(request, previous, previous_vae)
        if result.interrupted:
            log.info("Job %s interrupted; returning %d image(s)", ctx.job_id, len(result.images))
        return result

    def _restore(self, request: GenerationRequest, previous, previous_vae: str) -> None:
        """Puts back the checkpoint/VAE a per-request override replaced."""
        try:
            if request.checkpoint and previous is not None:
                self.manager.switch_checkpoint(previous)
            if request.vae and self.manager.loaded is not None:
                self.manager.switch_vae(previous_vae)
        except Exception:  # the generation's own outcome matters more; the log has the cause
            log.exception("Could not restore the model after a per-request override")


def out_of_memory_message(request: GenerationRequest, loading: bool, error: BaseException, device_type: str) -> str:
    """What the user reads when a job ran out of memory: at what size, and what to try."""
    where = "GPU" if device_type in ("cuda", "mps") else "memory"
    detail = (str(error).splitlines() or [type(error).__name__])[0].strip()[:200] or type(error).__name__
    if loading:
        return (f"Out of memory while loading the model: close other programs using the {where}, or lower "
                f"'Checkpoints kept in RAM' in Settings. ({detail})")
    size = f"{request.width}x{request.height}"
    if request.enable_hr and not isinstance(request, Img2ImgRequest):
        target = hires_target(request)
        size += f" (hires fix to {target.width}x{target.height})"
    return (f"Out of memory at {size}, batch {request.batch_size}: try a smaller size or batch size, or close other "
            f"programs using the {where}. The memory was freed; the next job can run. ({detail})")
