"""txt2img, img2img, progress, interrupt and skip under /sdapi/v1.

Generations go through the same job queue as the UI (they show in its queue and history). A route
builds the typed request in a worker thread (decoding images is not for the event loop), queues it
and waits for the job without holding a thread, so any number of waiting clients never starve the
quick routes such as /progress.

/interrupt and /skip act on the running job only when the API queued it: a browser user's job is
theirs to stop (the design's rule that one user's Interrupt never stops another's).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from modules.api.a1111_options import COMPAT_OPTIONS
from modules.api.answers import SeenModel, generation_answer
from modules.api.images import encode_image
from modules.api.progress import progress_report
from modules.api.request_mapping import ApiJobPlan, img2img_plan, txt2img_plan
from modules.api.schemas import GenerationResponse, Img2ImgRequest, ProgressResponse, Txt2ImgRequest
from modules.jobs import Job, JobState
from modules.services import Services

POLL_SECONDS = 0.03
REMEMBERED_JOBS = 256


class ApiJobs:
    """The ids of the jobs the API queued (the newest few hundred), for /interrupt and /skip."""

    def __init__(self, services: Services):
        self.services = services
        self._ids: deque[str] = deque(maxlen=REMEMBERED_JOBS)
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        with self._lock:
            self._ids.append(job.id)

    def running(self) -> list[Job]:
        with self._lock:
            ours = set(self._ids)
        return [job for job in self.services.queue.running() if job.id in ours]


async def wait_for(job: Job, services: Services) -> SeenModel | None:
    """Waits for the job; returns the model it ran on when seen (a running job holds the model, so
    the active one during its steps is its own, override included)."""
    seen = None
    while not job.done:
        event = job.last_event
        if seen is None and job.state is JobState.RUNNING and event is not None and event.steps > 0:
            seen = SeenModel.of(services, services.manager.loaded)
        await asyncio.sleep(POLL_SECONDS)
    return seen


def _submit(services: Services, plan: ApiJobPlan) -> Job:
    if plan.extension_script is not None:
        return services.generation.submit_script(plan.request, *plan.extension_script, job_id=plan.job_id)
    if plan.script is not None:
        assert plan.script.queue is not None  # find_script only returns runnable scripts
        return plan.script.queue(services, plan.script_request, plan.job_id)
    if plan.kind == "img2img":
        return services.generation.submit_img2img(plan.request, job_id=plan.job_id)  # type: ignore[arg-type]
    return services.generation.submit_txt2img(plan.request, job_id=plan.job_id)


def _finish(services: Services, plan: ApiJobPlan, job: Job, model: SeenModel | None) -> dict[str, Any]:
    result = job.result(timeout=0)  # a failed job raises its error: a UserError is a 4xx, anything else a bug (500)
    if plan.persist:
        _keep_settings(services, plan.persist)
    return generation_answer(services, plan, job, result, model)


def _keep_settings(services: Services, values: dict[str, Any]) -> None:
    """override_settings_restore_afterwards false: the overrides become the settings."""
    services.config.save_extra({k: v for k, v in values.items() if k in COMPAT_OPTIONS})
    rest = {k: v for k, v in values.items() if k not in COMPAT_OPTIONS}
    if rest:
        services.config.apply(rest)


def add_generation_routes(router: APIRouter, services: Services) -> None:
    jobs = ApiJobs(services)

    async def generate(plan_fn, body) -> dict[str, Any]:
        plan = await run_in_threadpool(plan_fn, services, body)
        job = await run_in_threadpool(_submit, services, plan)
        jobs.add(job)
        model = await wait_for(job, services)
        return await run_in_threadpool(_finish, services, plan, job, model)

    @router.post("/txt2img", response_model=GenerationResponse, summary="Text to image")
    async def txt2img(body: Txt2ImgRequest) -> dict[str, Any]:
        """Queues a txt2img job (hires fix with `enable_hr`) and answers when it is done."""
        return await generate(txt2img_plan, body)

    @router.post("/img2img", response_model=GenerationResponse, summary="Image to image, inpainting, outpainting")
    async def img2img(body: Img2ImgRequest) -> dict[str, Any]:
        """img2img; with `mask` inpainting; with `script_name` an outpainting script."""
        return await generate(img2img_plan, body)

    @router.get("/progress", response_model=ProgressResponse)
    def progress(skip_current_image: bool = Query(False, description="Leave current_image out (cheaper).")) -> dict[str, Any]:
        """The running job's progress (any job: UI or API) with its latest live preview."""
        report = progress_report(services.queue)
        image = None
        if report.preview is not None and not skip_current_image:
            image = encode_image(report.preview, None, "png")
        return {"progress": report.progress, "eta_relative": report.eta_relative, "state": report.state,
                "current_image": image, "textinfo": report.textinfo, "current_task": report.current_task}

    @router.post("/interrupt")
    def interrupt() -> dict[str, Any]:
        """Stops the running API job; the images made so far are returned to its client."""
        for job in jobs.running():
            services.queue.interrupt(job.id)
        return {}

    @router.post("/skip")
    def skip() -> None:
        """Moves the running API job on to its next batch."""
        for job in jobs.running():
            services.queue.skip(job.id)
        return None
