"""Extras (upscaling finished pictures) as queued jobs: they wait their turn behind generations,
report each tile as progress, and stop between tiles when interrupted, like any other job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from modules.job_events import ProgressEvent
from modules.jobs import Job, JobContext, JobInterrupted, JobQueue
from modules.upscalers.extras import ExtrasOptions, check, run_extras
from modules.upscalers.progress import TileProgress, describe_tiles
from modules.upscalers.service import Upscalers


@dataclass
class ExtrasResult:
    images: list[Image.Image] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)  # each picture's `postprocessing` parameters
    interrupted: bool = False


class ExtrasJobs:
    """Queues extras over a list of pictures on the generation queue."""

    def __init__(self, queue: JobQueue, upscalers: Upscalers, max_megapixels: Any):
        self.queue = queue
        self.upscalers = upscalers
        self.max_megapixels = max_megapixels  # () -> the current setting

    def submit(self, images: list[Image.Image], options: ExtrasOptions, description: str = "extras") -> Job[ExtrasResult]:
        """Checks the options now (UserError naming the bad one), then queues the job."""
        check(options, self.upscalers)
        return self.queue.submit(lambda ctx: self._run(ctx, images, options), description)

    def _run(self, ctx: JobContext, images: list[Image.Image], options: ExtrasOptions) -> ExtrasResult:
        result = ExtrasResult()
        for index, image in enumerate(images):
            def on_progress(tiles: TileProgress, index: int = index) -> None:
                ctx.check()
                ctx.report(ProgressEvent(image_index=index, image_count=len(images), step=tiles.tile, steps=tiles.tiles,
                                         textinfo=describe_tiles(tiles)))
            try:
                ctx.check()
                picture, info = run_extras(image, options, self.upscalers, self.max_megapixels(), on_progress)
            except JobInterrupted:
                result.interrupted = True
                break
            result.images.append(picture)
            result.infos.append(info)
            ctx.report(ProgressEvent(image_index=index + 1, image_count=len(images)))
        return result
