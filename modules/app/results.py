"""What happens to a job's images after the engine made them: infotext, files, history.

`ResultRecorder.describe` gives each image its A1111 infotext (after the extensions' after_image,
which may change the image and add keys); `save` writes each image with it to the outputs folder
when the settings say so and records one history row per image, written only once its file is in
place. An image that cannot be saved (full disk, read-only folder) is still returned, recorded
without a file, and a note on the result says why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from modules.errors import UserError
from modules.extensions.job_hooks import JobHooks
from modules.generation.engine import GenerationResult
from modules.generation.grid import image_grid
from modules.generation.request import GenerationRequest
from modules.history import HistoryEntry
from modules.infotext.create import create_infotext
from modules.outputs import OutputWriter, write_text_atomically
from modules.sampling.sampler_table import find_sampler

if TYPE_CHECKING:
    from modules.checkpoints.manager import LoadedModel
    from modules.checkpoints.registry import ModelFile, ModelRegistry
    from modules.config import Settings

log = logging.getLogger(__name__)


class History(Protocol):
    def record(self, entry: HistoryEntry) -> int: ...


class NoHistory:
    """A history that keeps nothing (a Ray replica, a benchmark): `record` is a no-op."""

    def record(self, entry: HistoryEntry) -> int:
        return 0


class ResultRecorder:
    """Infotext, saving and history for finished jobs."""

    def __init__(self, registry: "ModelRegistry", settings: "Settings", outputs: OutputWriter | None = None,
                 history: History | None = None):
        self.registry = registry
        self.settings = settings  # the live settings object (format, patterns, what to save)
        self.outputs = outputs  # None: nothing is written (a Ray replica writes nothing; the UI node does)
        self.history: History = history if history is not None else NoHistory()

    def describe(self, model: "LoadedModel", request: GenerationRequest, result: GenerationResult, hooks: JobHooks) -> None:
        """Each image's infotext. A result that already has them (a script's) is left as it is."""
        if len(result.infotexts) == len(result.images):
            return
        checkpoint = model.checkpoint
        model_hash = self.registry.shorthash(checkpoint, compute=True)
        vae_hash = self.registry.shorthash(model.vae, compute=True) if model.vae is not None else None
        seeds = dict(zip(result.seeds, result.subseeds))
        extra = {**result.extra_parameters, **eta_parameters(request)}
        result.infotexts = []
        for index, seed in enumerate(result.image_seeds):
            result.images[index], added = hooks.after_image(request, result.images[index], seed, index)
            own = request
            if index < len(result.image_prompts):  # Dynamic Prompts: each picture's own resolved prompt
                own = replace(request, prompt=result.image_prompts[index][0], negative_prompt=result.image_prompts[index][1])
            result.infotexts.append(create_infotext(
                own, seed, seeds.get(seed, seed), model_name=checkpoint.model_name, model_hash=model_hash,
                vae_name=model.vae.name if model.vae is not None else None, vae_hash=vae_hash, extra={**extra, **added},
            ))

    def save(self, checkpoint: "ModelFile", request: GenerationRequest, result: GenerationResult, outputs: str, hooks: JobHooks) -> None:
        """With `samples_save` (and the request's `save_samples`) each image written with its
        infotext to the outputs folder of `outputs`; one history row each (task `hooks.task`)."""
        model_hash = self.registry.shorthash(checkpoint, compute=True)
        saving = self.outputs is not None and self.settings.samples_save and request.save_samples
        unsaved: dict[str, int] = {}  # why -> how many images; a full disk must not lose the images made
        for image, seed, text in zip(result.images, result.image_seeds, result.infotexts):
            path = self._save_image(image, seed, text, request, checkpoint, model_hash, outputs, result, hooks, unsaved) if saving else None
            result.paths.append(path)
            self._record(request, result, text, seed, model_hash, checkpoint.model_name, path, hooks.task, image.size)
        for reason, count in unsaved.items():
            if len(result.images) == 1:
                result.notes.append(f"The image was not saved to the outputs folder: {reason}. It is shown here: download it from "
                                    "the gallery, then free some disk space or make the outputs folder writable.")
            else:
                result.notes.append(f"{count} of {len(result.images)} images were not saved to the outputs folder: {reason}. They are shown "
                                    "here: download them from the gallery, then free some disk space or make the outputs folder writable.")
        if len(result.images) > 1 and self.settings.grid_save:
            self._save_grid(checkpoint, request, result, outputs, saving, bool(unsaved))

    def _save_image(self, image, seed: int, text: str, request: GenerationRequest, checkpoint: "ModelFile", model_hash: str | None,
                    outputs: str, result: GenerationResult, hooks: JobHooks, unsaved: dict[str, int]) -> Path | None:
        assert self.outputs is not None
        try:
            path = self.outputs.save(
                image, text, task=outputs, fmt=self.settings.samples_format, pattern=self.settings.samples_filename_pattern,
                seed=seed, prompt=request.prompt, model_name=checkpoint.model_name, request=request, model_hash=model_hash,
            )
        except (OSError, UserError) as error:  # the image is still returned (and recorded without a file)
            log.error("Could not save an image: %s", error)
            reason = save_failure_reason(error)
            unsaved[reason] = unsaved.get(reason, 0) + 1
            return None
        hooks.saved(path, text)
        if self.settings.save_txt:
            try:
                write_text_atomically(path.with_suffix(".txt"), text)
            except OSError as error:
                log.error("Could not write %s: %s", path.with_suffix(".txt"), error)
                result.notes.append(f"The parameters file {path.with_suffix('.txt').name} was not written: {save_failure_reason(error)}.")
        return path

    def _save_grid(self, checkpoint: "ModelFile", request: GenerationRequest, result: GenerationResult, outputs: str,
                   saving: bool, images_unsaved: bool) -> None:
        if result.grid is None:  # a script may have drawn its own
            result.grid = image_grid(result.images)
        if not saving:
            return
        assert self.outputs is not None
        try:
            result.grid_path = self.outputs.save(
                result.grid, result.infotexts[0], task=outputs, kind="grids", fmt=self.settings.samples_format,
                pattern="grid", seed=result.image_seeds[0], prompt=request.prompt, model_name=checkpoint.model_name,
            )
        except (OSError, UserError) as error:
            log.error("Could not save the grid: %s", error)
            if not images_unsaved:  # the images' note already says why
                result.notes.append(f"The grid was not saved to the outputs folder: {save_failure_reason(error)}.")

    def _record(self, request: GenerationRequest, result: GenerationResult, infotext: str, seed: int,
                model_hash: str | None, model_name: str, path: Path | None, task: str, size: tuple[int, int]) -> None:
        """One history row per image, written after the file is in place (never a dangling row)."""
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


def save_failure_reason(error: BaseException) -> str:
    """Why a file could not be written, as a user reads it: the OS's words and the path."""
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error) or type(error).__name__


def eta_parameters(request: GenerationRequest) -> dict[str, float]:
    """A1111 writes eta only when it differs from the sampler's default: "Eta DDIM" for the DDIM
    family (default 0), "Eta" for the ancestral and SDE samplers (default 1)."""
    sampler = find_sampler(request.sampler_name)
    if request.eta is None or sampler.eta_default is None or request.eta == sampler.eta_default:
        return {}
    key = "Eta DDIM" if sampler.label.startswith("DDIM") else "Eta"
    return {key: request.eta}
