"""Submitting generations: what the UI and the API call. No gradio, no HTTP here.

Every submit does the same four steps, so bad input never reaches the queue:

1. validate the request (sizes, ranges, the sampler's name);
2. check what `validate` cannot see: the task's pictures (readable, not too large), LoRA tags;
3. apply the request's styles (A1111's styles.csv);
4. queue a `JobSpec` for the runner (in this process, or on Ray Serve replicas).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from modules.app.dynamic_jobs import expansion
from modules.app.runner import JobRunner, JobSpec
from modules.app.script_jobs import ScriptCall
from modules.detailer.stage import check_tabs
from modules.errors import UserError
from modules.generation.controls import needs_controlnets
from modules.generation.loras import request_loras
from modules.generation.outpaint import OutpaintRequest
from modules.generation.request import HIRES_UPSCALERS, IMAGE_UPSCALERS, LATENT_UPSCALE_MODES, GenerationRequest, Img2ImgRequest
from modules.generation.tasks import RUNS, TASKS, outpaint_run
from modules.jobs import Job, JobQueue
from modules.regions.setup import prepare_regions
from modules.sampling.sampler_table import find_sampler
from modules.upscalers.catalog import UnknownUpscalerError

if TYPE_CHECKING:
    from modules.checkpoints.registry import ModelRegistry
    from modules.config import Settings
    from modules.controlnet.service import ControlNets
    from modules.detailer.catalog import DetectorCatalog
    from modules.extensions.api import Script
    from modules.lora.files import LoraLibrary
    from modules.prompts.dynamic import WildcardLibrary
    from modules.prompts.styles import StyleStore
    from modules.upscalers.service import Upscalers

Request = TypeVar("Request", bound=GenerationRequest)  # a task's request comes back as the same class


class Submitter:
    """Validates, styles and queues generation jobs for a runner."""

    def __init__(self, queue: JobQueue, runner: JobRunner, settings: "Settings", styles: "StyleStore | None" = None,
                 loras: "LoraLibrary | None" = None, upscalers: "Upscalers | None" = None, controlnets: "ControlNets | None" = None,
                 detectors: "DetectorCatalog | None" = None, wildcards: "WildcardLibrary | None" = None,
                 registry: "ModelRegistry | None" = None):
        self.registry = registry  # the checkpoints a refiner may name
        self.queue = queue
        self.upscalers = upscalers  # the installed model upscalers hires fix may name
        self.controlnets = controlnets  # the ControlNet models units may name
        self.detectors = detectors  # the detailer's detectors tabs may name
        self.wildcards = wildcards  # the wildcard files a Dynamic Prompts template may name
        self.runner = runner
        self.settings = settings  # the live settings object (input size limit)
        self.styles = styles
        self.loras = loras

    def submit_txt2img(self, request: GenerationRequest, job_id: str | None = None) -> Job:
        """Validates the request now (UserError on bad input), applies its styles, then queues it."""
        request = self._checked("txt2img", request, request)
        return self._queue(JobSpec(request, RUNS["txt2img"], "txt2img", "txt2img", f"txt2img: {request.prompt[:60]}"), job_id)

    def submit_img2img(self, request: Img2ImgRequest, job_id: str | None = None) -> Job:
        """img2img / inpaint: validated now (images checked for size and readability), then queued."""
        request = self._checked("img2img", request, request)
        task = "inpaint" if request.mask is not None else "img2img"
        return self._queue(JobSpec(request, RUNS["img2img"], "img2img", "img2img", f"{task}: {request.prompt[:60]}"), job_id)

    def submit_outpaint(self, request: OutpaintRequest, job_id: str | None = None) -> Job:
        """Outpainting: validated now (the picture, and the enlarged picture's size), then queued.
        Saved with img2img's pictures (as A1111's outpainting scripts are); history says "outpaint"."""
        request.validate()
        base = self._checked("outpaint", request.base, request)
        request = replace(request, base=base)
        summary = f"outpaint {'+'.join(request.chosen_directions)}: {base.prompt[:60]}"
        return self._queue(JobSpec(base, outpaint_run(request), "img2img", "outpaint", summary), job_id)

    def submit_script(self, request: GenerationRequest, script: "Script", values: dict[str, Any], job_id: str | None = None) -> Job:
        """A selectable script's job (X/Y/Z plot...): the request validated now, then `script.run`
        makes the images through ScriptRun.generate on the held model. A checkpoint or VAE the
        script switched to is put back afterwards."""
        task = "img2img" if isinstance(request, Img2ImgRequest) else "txt2img"
        request = self._checked(task, request, request)
        spec = JobSpec(request, None, task, task, f"{script.title}: {request.prompt[:60]}", script=ScriptCall(script, values, task))
        return self._queue(spec, job_id)

    def _checked(self, task: str, request: Request, inputs: Any) -> Request:
        """Steps 1-3 for `request`; `inputs` is what the task's picture check reads (for outpainting,
        the OutpaintRequest around `request`)."""
        request.validate()
        find_sampler(request.sampler_name)
        if request.enable_hr:
            request = replace(request, hr_upscaler=self.hires_upscaler(request.hr_upscaler))
        TASKS[task].check(inputs, self.settings.max_input_megapixels)
        if request.control_units:
            img2img = isinstance(request, Img2ImgRequest)
            needs_controlnets(self.controlnets).check(request.control_units, has_init_image=img2img,
                                                      has_init_mask=getattr(request, "mask", None) is not None)
        if request.detailer is not None and request.detailer.runs:
            if self.detectors is None:
                raise UserError("This request has ADetailer tabs, and the detailer is not available here.")
            check_tabs(request.detailer, self.detectors)
        request_loras(self.loras, request)  # a malformed <lora:...> tag is refused now
        refiner = (request.refiner_checkpoint or "").strip()
        if refiner and refiner != "None" and self.registry is not None:
            self.registry.find_checkpoint(refiner)  # a refiner that is not there is refused now, by name
        if request.styles and self.styles is not None:
            prompt, negative = self.styles.apply_styles(request.prompt, request.negative_prompt, request.styles)
            request = replace(request, prompt=prompt, negative_prompt=negative)
        if request.dynamic is not None and request.dynamic.enabled:
            request.dynamic.check()
            expansion(request, self.wildcards)  # a missing wildcard, a loop or a bad template is refused now
        if request.regional is not None:
            prepare_regions(request.regional, request.prompt, request.negative_prompt)  # a layout that does not fit is refused now
        return request

    def hires_upscaler(self, name: str) -> str:
        """The hires upscaler's name as listed (a latent mode, a built-in, an installed model; case
        as A1111 lists it). UnknownUpscalerError names the installed ones."""
        if name in LATENT_UPSCALE_MODES or name in IMAGE_UPSCALERS:
            return name
        if self.upscalers is None:
            raise UnknownUpscalerError(f"No upscaler named {name!r}: only {', '.join(HIRES_UPSCALERS)} are available here.")
        return self.upscalers.catalog.find(name).name  # "None" too: a plain Lanczos resize, as in A1111

    def _queue(self, spec: JobSpec, job_id: str | None) -> Job:
        self.runner.check(spec)
        return self.queue.submit(lambda ctx: self.runner.run(ctx, spec), spec.summary, job_id=job_id)
