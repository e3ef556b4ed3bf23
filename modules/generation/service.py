"""Generation as jobs: what the UI and the API call. No gradio, no HTTP here.

`GenerationService.submit_txt2img(request)` validates at once (bad input never reaches the queue),
applies the request's styles (A1111's styles.csv), then queues a job that holds the model for its whole run, switches to the request's checkpoint/VAE
override and back afterwards, maps the job's interrupt/skip to the engine's, and reports a
`ProgressEvent` (with a preview image when due) after every step.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from modules.checkpoints.manager import ModelManager
from modules.generation.previews import LinearFactorCache, PreviewMethod
from modules.generation.request import GenerationRequest
from modules.generation.txt2img import GenerationResult, Interrupted, Skipped, StepEvent, txt2img
from modules.jobs import Job, JobContext, JobQueue, ProgressEvent
from modules.prompts.styles import StyleStore
from modules.sampling.sampler_table import find_sampler

log = logging.getLogger(__name__)


class GenerationService:
    """Queues generations against the model manager and reports their progress."""

    def __init__(self, manager: ModelManager, queue: JobQueue, preview_cache: Path | None = None, styles: StyleStore | None = None):
        self.manager = manager
        self.queue = queue
        self.factors = LinearFactorCache(preview_cache)
        self.styles = styles

    def submit_txt2img(self, request: GenerationRequest, job_id: str | None = None) -> Job:
        """Validates the request now (UserError on bad input), applies its styles, then queues it."""
        request.validate()
        find_sampler(request.sampler_name)
        if request.styles and self.styles is not None:
            prompt, negative = self.styles.apply_styles(request.prompt, request.negative_prompt, request.styles)
            request = replace(request, prompt=prompt, negative_prompt=negative)
        return self.queue.submit(lambda ctx: self._run(ctx, request), f"txt2img: {request.prompt[:60]}", job_id=job_id)

    def _preview(self, model) -> PreviewMethod:
        return self.factors.get(model.vae_module)

    def _run(self, ctx: JobContext, request: GenerationRequest) -> GenerationResult:
        with self.manager.lock:
            previous = self.manager.loaded.checkpoint if self.manager.loaded is not None else None
            previous_vae = self.manager.vae_choice
            try:
                if request.checkpoint:
                    self.manager.switch_checkpoint(request.checkpoint)
                if request.vae:
                    self.manager.switch_vae(request.vae)
                with self.manager.use() as model:
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
                        ))

                    result = txt2img(model, replace(request), on_step=on_step, preview=preview)
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

