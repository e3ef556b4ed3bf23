"""A selectable script's job (X/Y/Z plot, Prompt matrix...): the script makes its images through
`ScriptRun.generate` on the model the job holds.

Each cell is validated, may switch the checkpoint or VAE (a LoRA patch is taken off before any
weight swap and put back after), runs txt2img or img2img with the job's step callback and preview,
and gets its infotext. Whatever the script switched to is put back when it ends, success or not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from modules.checkpoints.manager import VAE_AUTOMATIC, VAE_NONE
from modules.device.memory import is_out_of_memory
from modules.errors import UserError
from modules.extensions.api import Script, ScriptRun
from modules.extensions.job_hooks import JobHooks
from modules.generation.engine import GenerationResult, Interrupted, Skipped
from modules.generation.loras import RequestLoras, request_loras
from modules.generation.request import GenerationRequest
from modules.generation.tasks import RUNS, TaskContext
from modules.jobs import JobContext, ProgressEvent
from modules.sampling.sampler_table import parse_sampler_name
from modules.sampling.schedules import find_schedule
from modules.upscalers.progress import TileProgress, describe_tiles

if TYPE_CHECKING:
    from modules.app.runner import InProcessRunner
    from modules.checkpoints.manager import LoadedModel, ModelManager
    from modules.upscalers.service import Upscalers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScriptCall:
    """A selectable script's job: the script, its values and the task its cells run."""

    script: Script
    values: dict[str, Any]
    task: str  # "txt2img" | "img2img"


@dataclass
class _Stopped:
    interrupted: bool = False  # a cell came back interrupted: the script stops making more


def run_script(runner: "InProcessRunner", ctx: JobContext, call: ScriptCall, request: GenerationRequest, task_ctx: TaskContext) -> GenerationResult:
    """Runs `call.script` on `runner`'s held model; puts the model back afterwards."""
    manager = runner.manager
    original, original_vae = manager.loaded.checkpoint if manager.loaded else None, manager.vae_choice
    stopped = _Stopped()
    loras = request_loras(runner.loras, request)  # applied by the runner; again after a model switch

    def generate(cell: GenerationRequest, infotext_extra: dict[str, Any] | None = None) -> GenerationResult:
        cell.validate()
        checkpoint = cell.checkpoint if cell.checkpoint and (
            manager.loaded is None or manager.loaded.checkpoint != manager.registry.find_checkpoint(cell.checkpoint)) else None
        vae = cell.vae if cell.vae and cell.vae != manager.vae_choice else None
        if checkpoint or vae:
            runner.lora_patcher.restore()  # never swap weights under a patch
            if checkpoint:
                manager.switch_checkpoint(checkpoint)  # the model stays for the next cell; put back at the end
            if vae:
                manager.switch_vae(vae)
            runner.apply_loras(_held_model(manager), RequestLoras(loras.uses))
        model = _held_model(manager)
        hooks = JobHooks(runner.extensions, call.task)
        hooks.request = cell
        cell_ctx = replace(task_ctx, hooks=hooks.engine())
        result = runner.task_run(RUNS[call.task])(model, cell, cell_ctx)
        result.extra_parameters.update(runner.lora_infotext(loras))
        result.extra_parameters.update(infotext_extra or {})
        runner.recorder.describe(model, cell, result, hooks)
        stopped.interrupted |= result.interrupted
        return result

    def show(images: list, text: str, fraction: float = 1.0) -> None:
        done = round(1000 * min(max(fraction, 0.0), 1.0))
        ctx.report(ProgressEvent(textinfo=text, step=max(done, 1), steps=1000, preview=images[-1] if images else None))

    def upscale(image: Any, name: str, scale: float) -> Any:
        if runner.upscalers is None:
            raise UserError("Model upscalers are not available here.")

        def on_tiles(tiles: TileProgress) -> None:
            if ctx.interrupt_requested:
                raise Interrupted()
            ctx.report(ProgressEvent(textinfo=describe_tiles(tiles), step=max(tiles.tile, 1), steps=max(tiles.tiles, 1)))
        return runner.upscalers.upscale(image, name, scale, on_tiles)

    def canonical(kind: str, text: str) -> str:
        if kind == "upscaler":
            return upscaler_name(runner.upscalers, text)
        return canonical_name(manager, kind, text)

    script = call.script
    run = ScriptRun(call.task, request, call.values, generate, manager.switch_checkpoint, manager.switch_vae, show,
                    lambda: stopped.interrupted or ctx.interrupt_requested, canonical, upscale)
    try:
        result = script.run(run)  # type: ignore[misc]
    except (Interrupted, Skipped, UserError):
        raise
    except Exception as error:
        if is_out_of_memory(error):  # not the script's bug: reported as out of memory by the runner
            raise
        if isinstance(error, ValueError):  # the API's way for a script to refuse its input: shown as it is
            raise UserError(f"{script.title}: {error}") from error
        log.exception("Script %r of extension %r failed", script.title, script.extension)
        raise UserError(f"The script {script.title!r} (extension {script.extension!r}) failed: {type(error).__name__}: {error}") from error
    finally:
        runner.lora_patcher.restore()
        try:
            if original is not None and (manager.loaded is None or manager.loaded.checkpoint != original):
                manager.switch_checkpoint(original)
            if manager.vae_choice != original_vae:
                manager.switch_vae(original_vae)
        except Exception:
            log.exception("Could not put the model back after the script %r", script.title)
    if not isinstance(result, GenerationResult):
        raise UserError(f"The script {script.title!r} (extension {script.extension!r}) returned no images.")
    return result


def _held_model(manager: "ModelManager") -> "LoadedModel":
    """The model during a script job: the runner holds one (`ModelManager.use`) for the whole job,
    and a checkpoint switch replaces it, never clears it."""
    assert manager.loaded is not None
    return manager.loaded


def upscaler_name(upscalers: "Upscalers | None", text: str) -> str:
    """An installed upscaler's name from its name (any case) or A1111's index into the list."""
    if upscalers is None:
        if text.strip().lower() in ("none", "lanczos", "nearest"):
            return text.strip().capitalize()
        raise UserError(f"No upscaler named {text!r}: model upscalers are not available here.")
    names = upscalers.names()
    if text.strip().isdigit() and text.strip() not in names:
        index = int(text.strip())
        if index >= len(names):
            raise UserError(f"There is no upscaler number {index}: {len(names)} are installed ({', '.join(names)}).")
        return names[index]
    return upscalers.catalog.find(text.strip()).name


def canonical_name(manager: "ModelManager", kind: str, text: str) -> str:
    """The name Easel uses for a sampler, schedule, checkpoint or VAE given as `text` (a script's
    axis value); UserError naming it when there is none."""
    if kind == "sampler":
        return parse_sampler_name(text)[0].label
    if kind == "schedule":
        return find_schedule(text).label
    if kind == "checkpoint":
        return manager.registry.find_checkpoint(text).name
    if kind == "vae":
        if text.strip().lower() in (VAE_AUTOMATIC.lower(), VAE_NONE.lower()):
            return VAE_AUTOMATIC if text.strip().lower() == VAE_AUTOMATIC.lower() else VAE_NONE
        return manager.registry.find_vae(text).name
    raise ValueError(f"unknown kind {kind!r}")
