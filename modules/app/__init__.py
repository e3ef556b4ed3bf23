"""The application layer above the engine: generations as jobs, their results, and the services the
UI and the API share.

- `submit`: validate, style and queue a generation (`Submitter`);
- `runner`: run a queued job in this process (`InProcessRunner`, the `JobRunner` seam the Ray
  backend implements too);
- `script_jobs`: a selectable script's job (X/Y/Z plot...);
- `results`: infotext, saving and history of finished jobs (`ResultRecorder`).

`modules/generation` (the engine and its tasks) imports nothing from here, nor from jobs, history,
outputs or extensions: tests/unit/test_house_rules.py checks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from modules.app.results import History, ResultRecorder
from modules.app.runner import InProcessRunner
from modules.app.submit import Submitter
from modules.config import Settings
from modules.generation.previews import PreviewChooser

if TYPE_CHECKING:
    from modules.checkpoints.manager import ModelManager
    from modules.controlnet.service import ControlNets
    from modules.detailer.catalog import DetectorCatalog
    from modules.extensions.registry import ExtensionRegistry
    from modules.jobs import JobQueue
    from modules.lora.files import LoraLibrary
    from modules.outputs import OutputWriter
    from modules.prompts.dynamic import WildcardLibrary
    from modules.prompts.styles import StyleStore
    from modules.upscalers.service import Upscalers


def in_process_generation(
    manager: "ModelManager", queue: "JobQueue", *, settings: Settings | None = None, styles: "StyleStore | None" = None,
    outputs: "OutputWriter | None" = None, history: History | None = None, extensions: "ExtensionRegistry | None" = None,
    loras: "LoraLibrary | None" = None, preview_cache: Path | None = None, vae_approx_dir: Path | None = None,
    ensure_model: Callable[[], object] | None = None, upscalers: "Upscalers | None" = None, controlnets: "ControlNets | None" = None,
    detectors: "DetectorCatalog | None" = None, wildcards: "WildcardLibrary | None" = None,
) -> Submitter:
    """A Submitter whose jobs run on `manager` in this process (what build_services makes for the
    in-process backend; tests and benchmarks build one directly)."""
    settings = settings if settings is not None else Settings()
    recorder = ResultRecorder(manager.registry, settings, outputs, history)
    previews = PreviewChooser(vae_approx_dir, preview_cache)  # no folder: TAESD falls back to Approx cheap
    runner = InProcessRunner(manager, recorder, settings, previews, extensions, loras, ensure_model, upscalers, controlnets=controlnets,
                             detectors=detectors, wildcards=wildcards)
    return Submitter(queue, runner, settings, styles, loras, upscalers, controlnets, detectors, wildcards)


__all__ = ["InProcessRunner", "ResultRecorder", "Submitter", "in_process_generation"]
