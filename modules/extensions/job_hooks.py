"""The extension hooks of one generation job, as the service calls them.

Without a registry (or with no extension using a hook) every method is a no-op and the engine gets
no hooks at all, so a job without extensions runs exactly the code it ran before.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from modules.extensions.api import BatchStart, DenoiseStep, ImageDone, ImageSaved, JobDone, JobStart
from modules.extensions.registry import ExtensionRegistry
from modules.generation.engine import DenoiseInput, EngineHooks


class JobHooks:
    def __init__(self, registry: ExtensionRegistry | None, task: str):
        self.registry = registry
        self.task = task
        self.request: Any = None

    def start(self, request: Any) -> Any:
        """before_job: returns the request the job runs (an extension may have changed the copy)."""
        self.request = request
        if self.registry is None or not self.registry.has("before_job"):
            return request
        start = JobStart(self.task, replace(request), dict(getattr(request, "script_values", {}) or {}))
        self.registry.fire("before_job", start)
        self.request = start.request
        return start.request

    def engine(self) -> EngineHooks | None:
        """before_batch and on_step for the engine, or None when no extension uses them."""
        registry = self.registry
        if registry is None or not (registry.has("before_batch") or registry.has("on_step")):
            return None

        def before_batch(index: int, seeds: list[int]) -> None:
            registry.fire("before_batch", BatchStart(self.task, self.request, index, seeds))

        def before_denoise(call: DenoiseInput) -> None:
            step = DenoiseStep(call.x, call.sigma, call.step, call.total_steps, call.conds, call.unconds, self.request)
            registry.fire("on_step", step)
            call.x, call.conds, call.unconds = step.x, step.conds, step.unconds

        return EngineHooks(
            before_batch=before_batch if registry.has("before_batch") else None,
            before_denoise=before_denoise if registry.has("on_step") else None,
        )

    def after_image(self, request: Any, image: Any, seed: int, index: int) -> tuple[Any, dict[str, Any]]:
        """after_image: the image to keep and the infotext keys extensions added."""
        if self.registry is None or not self.registry.has("after_image"):
            return image, {}
        done = ImageDone(self.task, request, image, seed, index)
        self.registry.fire("after_image", done)
        return done.image, done.infotext_extra

    def after_job(self, request: Any, result: Any) -> None:
        if self.registry is not None and self.registry.has("after_job"):
            self.registry.fire("after_job", JobDone(self.task, request, result))

    def saved(self, path: Path, infotext: str) -> None:
        if self.registry is not None and self.registry.has("on_image_saved"):
            self.registry.fire("on_image_saved", ImageSaved(path, infotext))

    def notices(self) -> list[str]:
        return self.registry.take_notices() if self.registry is not None else []
