"""A1111's `/sdapi/v1/progress` numbers, computed from the job queue's running job.

Idle: progress 0, eta_relative 0, job_count 0 (webuiapi waits for exactly that). Running:
``0.01 + job_no / job_count + step / steps / job_count`` (at most 1) and
``eta_relative = elapsed / progress - elapsed``, as A1111's `progressapi` computes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from modules.jobs import JobQueue

# A1111's `shared.state.dict()` layout, as it reads when idle.
IDLE_STATE: dict[str, Any] = {
    "skipped": False, "interrupted": False, "stopping_generation": False, "job": "", "job_count": 0,
    "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0,
}


@dataclass(frozen=True)
class ProgressReport:
    """A1111's `/sdapi/v1/progress` answer; `preview` is the image for `current_image`, not yet encoded."""

    progress: float
    eta_relative: float
    state: dict[str, Any]
    textinfo: str | None = None
    current_task: str | None = None
    preview: Any = None


def progress_report(queue: JobQueue) -> ProgressReport:
    """A1111's `/progress` numbers for the running job; all zeros when idle."""
    current = queue.current()
    if current is None:
        return ProgressReport(0.0, 0.0, dict(IDLE_STATE))
    job, event = current
    elapsed = job.elapsed()
    job_count = max(event.image_count, 1) if event else 1
    job_no = event.image_index if event else 0
    step, steps = (event.step, event.steps) if event else (0, 0)
    # 0.01 keeps A1111's division safe; its eta uses the value before clamping to 1.
    fraction = 0.01 + job_no / job_count + (step / steps / job_count if steps > 0 else 0.0)
    eta_relative = elapsed / fraction - elapsed
    started = job.started_at if job.started_at is not None else time.time()
    state = IDLE_STATE | {
        "skipped": job.skip_requested, "interrupted": job.interrupt_requested, "job": job.description,
        "job_count": job_count, "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(started)),
        "job_no": job_no, "sampling_step": step, "sampling_steps": steps,
    }
    return ProgressReport(
        min(fraction, 1.0), eta_relative, state, event.textinfo if event else None, job.id,
        event.preview if event else None,
    )
