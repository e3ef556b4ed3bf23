"""Extras (upscaling finished pictures) as queued jobs: they wait their turn behind generations,
report each tile as progress, and stop between tiles when interrupted, like any other job.

A result keeps its source's `parameters` (how the picture was made) and gets A1111's `postprocessing`
and `extras` text chunks saying what Extras did; with `samples_save` it is written to
`outputs/extras-images/<date>/`, or to the output folder a folder batch names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PIL import Image

from modules.errors import UserError
from modules.files import write_atomically
from modules.infotext.create import format_parameters
from modules.infotext.embed import image_bytes_with_infotext, infotext_from_image, well_formed
from modules.job_events import ProgressEvent
from modules.jobs import Job, JobContext, JobInterrupted, JobQueue
from modules.upscalers.extras import ExtrasOptions, check, run_extras
from modules.upscalers.progress import TileProgress, describe_tiles
from modules.upscalers.service import Upscalers

if TYPE_CHECKING:
    from modules.config import Settings
    from modules.outputs import OutputWriter

log = logging.getLogger(__name__)

EXTRAS_TASK = "extras"  # outputs/extras-images, as A1111
FOLDER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class ExtrasInput:
    """One picture to work on: the image itself (None: read `path` when its turn comes) and its name."""

    image: Image.Image | None
    name: str = ""
    path: Path | None = None

    def open(self) -> Image.Image:
        if self.image is not None:
            return self.image
        assert self.path is not None
        try:
            with Image.open(self.path) as opened:
                opened.load()
                return opened.copy()
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise UserError(f"Could not read {self.path.name}: it is not a picture or it is damaged ({error}).") from error


@dataclass
class ExtrasResult:
    images: list[Image.Image] = field(default_factory=list)
    sources: list[Image.Image] = field(default_factory=list)  # what each result was made from (its metadata is kept)
    infos: list[dict[str, Any]] = field(default_factory=list)  # each picture's `postprocessing` parameters
    paths: list[Path | None] = field(default_factory=list)  # where each was saved, if it was
    skipped: list[str] = field(default_factory=list)  # "name: why" for pictures of a batch that could not be read
    interrupted: bool = False


def postprocessing_chunks(source: Image.Image, info: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(the source's infotext, the other text chunks to write): its own text chunks, then
    `postprocessing` and `extras` with what was done (A1111's)."""
    parameters = infotext_from_image(source) or ""
    chunks = {k: well_formed(v) for k, v in (source.info or {}).items() if isinstance(k, str) and isinstance(v, str) and k != "parameters"}
    text = format_parameters(info)
    if text:
        chunks["postprocessing"] = text
        chunks["extras"] = text
    return parameters, chunks


def folder_inputs(folder: Path) -> list[ExtrasInput]:
    """The pictures of a folder (read one at a time when their turn comes), by name."""
    if not folder.is_dir():
        raise UserError(f"The input folder {folder} does not exist or is not a folder.")
    found = [ExtrasInput(None, path.name, path) for path in sorted(folder.iterdir()) if path.is_file() and path.suffix.lower() in FOLDER_SUFFIXES]
    if not found:
        raise UserError(f"The input folder {folder} has no pictures ({', '.join(FOLDER_SUFFIXES)}).")
    return found


class ExtrasJobs:
    """Queues extras over a list of pictures on the generation queue."""

    def __init__(self, queue: JobQueue, upscalers: Upscalers, settings: Callable[[], "Settings"], outputs: "OutputWriter | None" = None):
        self.queue = queue
        self.upscalers = upscalers
        self.settings = settings  # () -> the live settings (input size limit, saving, format)
        self.outputs = outputs

    def submit(self, inputs: list[ExtrasInput], options: ExtrasOptions, *, save: bool = False, output_dir: Path | None = None,
               description: str = "extras") -> Job[ExtrasResult]:
        """Checks the options now (UserError naming the bad one), then queues the job. `save`: write
        the results (to `output_dir` when given, else outputs/extras-images)."""
        check(options, self.upscalers)
        if not inputs:
            raise UserError("There is no picture to work on: add one first.")
        if output_dir is not None and output_dir.exists() and not output_dir.is_dir():
            raise UserError(f"The output folder {output_dir} is a file, not a folder.")
        return self.queue.submit(lambda ctx: self._run(ctx, inputs, options, save, output_dir), description)

    def _run(self, ctx: JobContext, inputs: list[ExtrasInput], options: ExtrasOptions, save: bool, output_dir: Path | None) -> ExtrasResult:
        result = ExtrasResult()
        settings = self.settings()
        for index, item in enumerate(inputs):
            def on_progress(tiles: TileProgress, index: int = index) -> None:
                ctx.check()
                ctx.report(ProgressEvent(image_index=index, image_count=len(inputs), step=tiles.tile, steps=tiles.tiles,
                                         textinfo=describe_tiles(tiles)))
            try:
                ctx.check()
                source = item.open()
                picture, info = run_extras(source, options, self.upscalers, settings.max_input_megapixels, on_progress)
            except JobInterrupted:
                result.interrupted = True
                break
            except UserError as error:
                if len(inputs) == 1:
                    raise
                result.skipped.append(f"{item.name or index + 1}: {error}")  # one bad file does not stop a batch
                continue
            result.images.append(picture)
            result.sources.append(source)
            result.infos.append(info)
            result.paths.append(self._save(source, picture, info, item, output_dir, settings) if save else None)
            ctx.report(ProgressEvent(image_index=index + 1, image_count=len(inputs)))
        return result

    def _save(self, source: Image.Image, picture: Image.Image, info: dict[str, Any], item: ExtrasInput, output_dir: Path | None,
              settings: "Settings") -> Path | None:
        parameters, chunks = postprocessing_chunks(source, info)
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            fmt = settings.samples_format
            target = output_dir / f"{Path(item.name).stem or 'image'}.{'jpg' if fmt == 'jpg' else fmt}"
            data = image_bytes_with_infotext(picture, parameters, fmt, chunks=chunks)
            write_atomically(target, data)  # a file of that name is replaced whole, never half-written
            return target
        if self.outputs is None or not settings.samples_save:
            return None
        return self.outputs.save(picture, parameters, task=EXTRAS_TASK, fmt=settings.samples_format, pattern="", seed=0, prompt="",
                                 model_name=None, chunks=chunks)
