"""Generation as jobs: what the UI and the API call. No gradio, no HTTP here.

`GenerationService.submit_txt2img(request)` validates at once (bad input never reaches the queue),
applies the request's styles (A1111's styles.csv), then queues a job that holds the model for its
whole run, loads the start-up checkpoint if none is loaded yet, switches to the request's
checkpoint/VAE override and back afterwards, maps the job's interrupt/skip to the engine's, and
reports a `ProgressEvent` (with a preview image when due) after every step. Each image gets its
A1111 infotext, and is saved to the outputs folder when the settings say so.

Faults: a job that runs out of memory fails with `OutOfMemoryError` (its size, batch and what to
try), raised only once its tensors are unreachable and the memory given back, so the worker goes on
with the next job. An image that cannot be saved (full disk, read-only folder) is still returned,
recorded in the history without a file, and a note on the result says why it was not saved.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

from modules.checkpoints.manager import VAE_AUTOMATIC, VAE_NONE, LoadedModel, ModelManager
from modules.config import Settings
from modules.errors import UserError
from modules.extensions.api import Script, ScriptRun
from modules.extensions.job_hooks import JobHooks
from modules.extensions.registry import ExtensionRegistry
from modules.generation.grid import image_grid
from modules.generation.hires import hires_target
from modules.history import HistoryEntry, HistoryStore
from modules.generation.previews import PreviewChooser, PreviewMethod
from modules.generation.request import GenerationRequest, Img2ImgRequest
from modules.generation.engine import EngineHooks, GenerationResult, Interrupted, Skipped, StepEvent
from modules.generation.img2img import check_inputs, img2img
from modules.generation.loras import RequestLoras, request_loras
from modules.generation.outpaint import OutpaintRequest, outpaint
from modules.generation.outpaint import check_inputs as check_outpaint_inputs
from modules.generation.txt2img import txt2img
from modules.infotext.create import create_infotext
from modules.jobs import Job, JobContext, JobQueue, ProgressEvent
from modules.lora.files import LoraLibrary
from modules.lora.patch import LoraPatcher
from modules.memory import OutOfMemoryError, free_memory, is_out_of_memory
from modules.outputs import OutputWriter, write_text_atomically
from modules.prompts.styles import StyleStore
from modules.sampling.sampler_table import find_sampler, parse_sampler_name
from modules.sampling.schedules import find_schedule

log = logging.getLogger(__name__)

# A task: (model, request, on_step, preview, engine hooks) -> result; txt2img and img2img are two.
TaskFn = Callable[[LoadedModel, GenerationRequest, Callable[[StepEvent], None], "PreviewMethod | None", "EngineHooks | None"], GenerationResult]


class GenerationService:
    """Queues generations against the model manager and reports their progress."""

    def __init__(
        self, manager: ModelManager, queue: JobQueue, preview_cache: Path | None = None, styles: StyleStore | None = None,
        settings: Settings | None = None, outputs: OutputWriter | None = None,
        ensure_model: Callable[[], object] | None = None, vae_approx_dir: Path | None = None,
        history: HistoryStore | None = None, extensions: ExtensionRegistry | None = None, loras: LoraLibrary | None = None,
    ):
        self.manager = manager
        self.queue = queue
        self.previews = PreviewChooser(vae_approx_dir, preview_cache)  # no folder: TAESD falls back to Approx cheap
        self.styles = styles
        self.settings = settings if settings is not None else Settings()
        self.outputs = outputs
        self.ensure_model = ensure_model  # loads the start-up checkpoint when none is loaded
        self.history = history
        self.extensions = extensions
        self.loras = loras  # models/Lora; None: LoRA tags are noted and left out
        self.lora_patcher = LoraPatcher()  # applies a job's LoRAs in place, restores them bitwise after

    def submit_txt2img(self, request: GenerationRequest, job_id: str | None = None) -> Job:
        """Validates the request now (UserError on bad input), applies its styles, then queues it."""
        request.validate()
        find_sampler(request.sampler_name)
        request_loras(self.loras, request)  # a malformed <lora:...> tag is refused now
        request = self._styled(request)

        def run(model: LoadedModel, job_request, on_step, preview, hooks) -> GenerationResult:
            return txt2img(model, job_request, on_step=on_step, preview=preview, hooks=hooks)

        return self.queue.submit(lambda ctx: self._run(ctx, request, run, "txt2img"), f"txt2img: {request.prompt[:60]}", job_id=job_id)

    def submit_img2img(self, request: Img2ImgRequest, job_id: str | None = None) -> Job:
        """img2img / inpaint: validated now (images checked for size and readability), then queued."""
        request.validate()
        find_sampler(request.sampler_name)
        check_inputs(request, self.settings.max_input_megapixels)
        request = self._styled(request)
        fix_steps = self.settings.img2img_fix_steps

        def run(model: LoadedModel, job_request, on_step, preview, hooks) -> GenerationResult:
            return img2img(model, job_request, on_step=on_step, preview=preview, fix_steps=fix_steps, hooks=hooks)

        task = "inpaint" if request.mask is not None else "img2img"
        return self.queue.submit(lambda ctx: self._run(ctx, request, run, "img2img"), f"{task}: {request.prompt[:60]}", job_id=job_id)

    def submit_outpaint(self, request: OutpaintRequest, job_id: str | None = None) -> Job:
        """Outpainting: validated now (the picture, and the enlarged picture's size), then queued.
        Saved with img2img's pictures (as A1111's outpainting scripts are); history says "outpaint"."""
        request.validate()
        find_sampler(request.base.sampler_name)
        check_outpaint_inputs(request, self.settings.max_input_megapixels)
        request = replace(request, base=self._styled(request.base))
        fix_steps = self.settings.img2img_fix_steps

        def run(model: LoadedModel, job_base, on_step, preview, hooks) -> GenerationResult:
            return outpaint(model, replace(request, base=job_base), on_step=on_step, preview=preview, fix_steps=fix_steps, hooks=hooks)

        summary = f"outpaint {'+'.join(request.chosen_directions)}: {request.base.prompt[:60]}"
        return self.queue.submit(lambda ctx: self._run(ctx, request.base, run, "img2img", "outpaint"), summary, job_id=job_id)

    def submit_script(self, request: GenerationRequest, script: Script, values: dict[str, Any], job_id: str | None = None) -> Job:
        """A selectable script's job (X/Y/Z plot...): the request validated now, then `script.run`
        makes the images through ScriptRun.generate on the held model. A checkpoint or VAE the
        script switched to is put back afterwards."""
        request.validate()
        find_sampler(request.sampler_name)
        task = "img2img" if isinstance(request, Img2ImgRequest) else "txt2img"
        if task == "img2img":
            check_inputs(request, self.settings.max_input_megapixels)
        request = self._styled(request)

        def run(ctx: JobContext, model: LoadedModel, job_request, on_step, preview, hooks) -> GenerationResult:
            return self._run_script(ctx, script, values, task, job_request, on_step, preview)

        return self.queue.submit(lambda ctx: self._run(ctx, request, partial(run, ctx), task), f"{script.title}: {request.prompt[:60]}", job_id=job_id)

    def _run_script(self, ctx: JobContext, script: Script, values: dict[str, Any], task: str, request: GenerationRequest,
                    on_step, preview) -> GenerationResult:
        original, original_vae = self.manager.loaded.checkpoint if self.manager.loaded else None, self.manager.vae_choice
        stopped = {"interrupted": False}
        fix_steps = self.settings.img2img_fix_steps

        loras = request_loras(self.loras, request)  # applied by _run; again after a model switch

        def generate(cell: GenerationRequest) -> GenerationResult:
            cell.validate()
            switch_checkpoint = cell.checkpoint and (
                self.manager.loaded is None or self.manager.loaded.checkpoint != self.manager.registry.find_checkpoint(cell.checkpoint))
            switch_vae = cell.vae and cell.vae != self.manager.vae_choice
            if switch_checkpoint or switch_vae:
                self.lora_patcher.restore()  # never swap weights under a patch
                if switch_checkpoint:
                    self.manager.switch_checkpoint(cell.checkpoint)  # the model stays for the next cell; put back at the end
                if switch_vae:
                    self.manager.switch_vae(cell.vae)
                self._apply_loras(self.manager.loaded, RequestLoras(loras.uses))
            model = self.manager.loaded
            hooks = JobHooks(self.extensions, task)
            hooks.request = cell
            engine = hooks.engine()
            if task == "img2img":
                result = img2img(model, cell, on_step=on_step, preview=preview, fix_steps=fix_steps, hooks=engine)
            else:
                result = txt2img(model, cell, on_step=on_step, preview=preview, hooks=engine)
            result.extra_parameters.update(loras.infotext(self.loras) if self.loras is not None else {})
            self._describe(model, cell, result, hooks)
            stopped["interrupted"] |= result.interrupted
            return result

        def show(images: list, text: str, fraction: float = 1.0) -> None:
            done = round(1000 * min(max(fraction, 0.0), 1.0))
            ctx.report(ProgressEvent(textinfo=text, step=max(done, 1), steps=1000, preview=images[-1] if images else None))

        run = ScriptRun(task, request, values, generate, self.manager.switch_checkpoint, self.manager.switch_vae, show,
                        lambda: stopped["interrupted"] or ctx.interrupt_requested, self._canonical)
        try:
            result = script.run(run)  # type: ignore[misc]
        except (Interrupted, Skipped, UserError):
            raise
        except Exception as error:
            if is_out_of_memory(error):  # not the script's bug: reported as out of memory by _run
                raise
            if isinstance(error, ValueError):  # the API's way for a script to refuse its input: shown as it is
                raise UserError(f"{script.title}: {error}") from error
            log.exception("Script %r of extension %r failed", script.title, script.extension)
            raise UserError(f"The script {script.title!r} (extension {script.extension!r}) failed: {type(error).__name__}: {error}") from error
        finally:
            self.lora_patcher.restore()
            try:
                if original is not None and (self.manager.loaded is None or self.manager.loaded.checkpoint != original):
                    self.manager.switch_checkpoint(original)
                if self.manager.vae_choice != original_vae:
                    self.manager.switch_vae(original_vae)
            except Exception:
                log.exception("Could not put the model back after the script %r", script.title)
        if not isinstance(result, GenerationResult):
            raise UserError(f"The script {script.title!r} (extension {script.extension!r}) returned no images.")
        return result

    def _canonical(self, kind: str, text: str) -> str:
        """The name Easel uses for a sampler, schedule, checkpoint or VAE given as `text` (a script's
        axis value); UserError naming it when there is none."""
        if kind == "sampler":
            return parse_sampler_name(text)[0].label
        if kind == "schedule":
            return find_schedule(text).label
        if kind == "checkpoint":
            return self.manager.registry.find_checkpoint(text).name
        if kind == "vae":
            if text.strip().lower() in (VAE_AUTOMATIC.lower(), VAE_NONE.lower()):
                return VAE_AUTOMATIC if text.strip().lower() == VAE_AUTOMATIC.lower() else VAE_NONE
            return self.manager.registry.find_vae(text).name
        raise ValueError(f"unknown kind {kind!r}")

    def _styled(self, request):
        if request.styles and self.styles is not None:
            prompt, negative = self.styles.apply_styles(request.prompt, request.negative_prompt, request.styles)
            return replace(request, prompt=prompt, negative_prompt=negative)
        return request

    def _preview(self, model: LoadedModel) -> PreviewMethod | None:
        return self.previews.choose(self.settings.show_progress_type, model.vae_module, sdxl=model.spec.family.name.startswith("sdxl"))

    def _run(self, ctx: JobContext, request: GenerationRequest, task: TaskFn, task_name: str, history_task: str | None = None) -> GenerationResult:
        """Runs one job on the held model. Out of memory anywhere in it becomes OutOfMemoryError
        with a sentence, raised only after the failed job's tensors are freed."""
        phase = {"loading": True}
        try:
            return self._run_held(ctx, request, task, task_name, history_task, phase)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            log.warning("Job %s ran out of memory: %s", ctx.job_id, str(error).splitlines()[0] if str(error) else type(error).__name__)
            message = out_of_memory_message(request, phase["loading"], error, self.manager.device.type)
        # Outside the except block the error's traceback, and with it every frame of the failed job
        # and the tensors they held, is unreachable: only now can the memory be given back.
        free_memory(self.manager.device.type)
        raise OutOfMemoryError(message)

    def _run_held(self, ctx: JobContext, request: GenerationRequest, task: TaskFn, task_name: str, history_task: str | None,
                  phase: dict[str, bool]) -> GenerationResult:
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
                    phase["loading"] = False
                    preview = self._preview(model) if request.preview_every else None

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

                    hooks = JobHooks(self.extensions, history_task or task_name)
                    job_request = hooks.start(replace(request))
                    loras = request_loras(self.loras, job_request)
                    self._apply_loras(model, loras)
                    try:
                        result = task(model, job_request, on_step, preview, hooks.engine())
                    finally:  # for this job only: the weights are the checkpoint's again, bit for bit
                        self.lora_patcher.restore()
                    result.extra_parameters.update(loras.infotext(self.loras) if self.loras is not None else {})
                    result.notes += loras.notes
                    active = self.manager.loaded or model  # a script may have switched and put back the model
                    self._describe(active, job_request, result, hooks)
                    self._save(active, job_request, result, task_name, hooks)
                    hooks.after_job(job_request, result)
                    result.notes += hooks.notices()
            finally:
                self._restore(request, previous, previous_vae)
        if result.interrupted:
            log.info("Job %s interrupted; returning %d image(s)", ctx.job_id, len(result.images))
        return result

    def _apply_loras(self, model: LoadedModel, loras: RequestLoras) -> None:
        if not loras.uses:
            return
        report = self.lora_patcher.apply(model, loras.uses)
        for name, skipped in report.unmatched.items():
            loras.notes.append(f"LoRA {name!r}: {len(skipped)} of its layers do not fit {model.checkpoint.model_name} and were left out.")

    def _describe(self, model: LoadedModel, request: GenerationRequest, result: GenerationResult, hooks: JobHooks) -> None:
        """Each image's infotext (after the extensions' after_image, which may change the image and
        add keys). A result that already has them (a script's) is left as it is."""
        if len(result.infotexts) == len(result.images):
            return
        registry = self.manager.registry
        checkpoint = model.checkpoint
        model_hash = registry.shorthash(checkpoint, compute=True)
        vae_hash = registry.shorthash(model.vae, compute=True) if model.vae is not None else None
        seeds = dict(zip(result.seeds, result.subseeds))
        extra = {**result.extra_parameters, **eta_parameters(request)}
        result.infotexts = []
        for index, seed in enumerate(result.image_seeds):
            result.images[index], added = hooks.after_image(request, result.images[index], seed, index)
            result.infotexts.append(create_infotext(
                request, seed, seeds.get(seed, seed), model_name=checkpoint.model_name, model_hash=model_hash,
                vae_name=model.vae.name if model.vae is not None else None, vae_hash=vae_hash, extra={**extra, **added},
            ))

    def _save(self, model: LoadedModel, request: GenerationRequest, result: GenerationResult, task: str, hooks: JobHooks) -> None:
        """With `samples_save` (and the request's `save_samples`) each image written with its
        infotext to the outputs folder of `task`; one history row each (task `hooks.task`)."""
        checkpoint = model.checkpoint
        model_hash = self.manager.registry.shorthash(checkpoint, compute=True)
        saving = self.outputs is not None and self.settings.samples_save and request.save_samples
        unsaved: dict[str, int] = {}  # why -> how many images; a full disk must not lose the images made
        for image, seed, text in zip(result.images, result.image_seeds, result.infotexts):
            path = None
            if saving:
                try:
                    path = self.outputs.save(
                        image, text, task=task, fmt=self.settings.samples_format, pattern=self.settings.samples_filename_pattern,
                        seed=seed, prompt=request.prompt, model_name=checkpoint.model_name, request=request, model_hash=model_hash,
                    )
                except (OSError, UserError) as error:  # the image is still returned (and recorded without a file)
                    log.error("Could not save an image: %s", error)
                    reason = save_failure_reason(error)
                    unsaved[reason] = unsaved.get(reason, 0) + 1
                if path is not None:
                    hooks.saved(path, text)
                if path is not None and self.settings.save_txt:
                    try:
                        write_text_atomically(path.with_suffix(".txt"), text)
                    except OSError as error:
                        log.error("Could not write %s: %s", path.with_suffix(".txt"), error)
                        result.notes.append(f"The parameters file {path.with_suffix('.txt').name} was not written: {save_failure_reason(error)}.")
            result.paths.append(path)
            self._record(request, result, text, seed, model_hash, checkpoint.model_name, path, hooks.task, image.size)
        for reason, count in unsaved.items():
            what = "The image was" if len(result.images) == 1 else f"{count} of {len(result.images)} images were"
            result.notes.append(f"{what} not saved to the outputs folder: {reason}. It is shown here: download it from "
                                "the gallery, then free some disk space or make the outputs folder writable.")
        if len(result.images) > 1 and self.settings.grid_save:
            if result.grid is None:  # a script may have drawn its own
                result.grid = image_grid(result.images)
            if saving:
                try:
                    result.grid_path = self.outputs.save(
                        result.grid, result.infotexts[0], task=task, kind="grids", fmt=self.settings.samples_format,
                        pattern="grid", seed=result.image_seeds[0], prompt=request.prompt, model_name=checkpoint.model_name,
                    )
                except (OSError, UserError) as error:
                    log.error("Could not save the grid: %s", error)
                    if not unsaved:  # the images' note already says why
                        result.notes.append(f"The grid was not saved to the outputs folder: {save_failure_reason(error)}.")

    def _record(self, request: GenerationRequest, result: GenerationResult, infotext: str, seed: int,
                model_hash: str | None, model_name: str, path: Path | None, task: str, size: tuple[int, int]) -> None:
        """One history row per image, written after the file is in place (never a dangling row)."""
        if self.history is None:
            return
        entry = HistoryEntry(
            task=task, created_at=time.time(), duration_s=result.timings.get("total", 0.0),
            prompt=request.prompt, negative_prompt=request.negative_prompt, params=infotext, seed=seed,
            model_name=model_name, model_hash=model_hash, path=str(path) if path is not None else None,
            width=size[0], height=size[1], sampler=request.sampler_name,
        )
        try:
            self.history.record(entry)
        except Exception:  # the image is made and saved; a history failure must not lose it
            log.exception("Could not record the image in the history")

    def _restore(self, request: GenerationRequest, previous, previous_vae: str) -> None:
        """Puts back the checkpoint/VAE a per-request override replaced."""
        try:
            if request.checkpoint and previous is not None:
                self.manager.switch_checkpoint(previous)
            if request.vae and self.manager.loaded is not None:
                self.manager.switch_vae(previous_vae)
        except Exception:  # the generation's own outcome matters more; the log has the cause
            log.exception("Could not restore the model after a per-request override")



def save_failure_reason(error: BaseException) -> str:
    """Why a file could not be written, as a user reads it: the OS's words and the path."""
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error) or type(error).__name__


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


def eta_parameters(request: GenerationRequest) -> dict[str, float]:
    """A1111 writes eta only when it differs from the sampler's default: "Eta DDIM" for the DDIM
    family (default 0), "Eta" for the ancestral and SDE samplers (default 1)."""
    sampler = find_sampler(request.sampler_name)
    if request.eta is None or sampler.eta_default is None or request.eta == sampler.eta_default:
        return {}
    key = "Eta DDIM" if sampler.label.startswith("DDIM") else "Eta"
    return {key: request.eta}
