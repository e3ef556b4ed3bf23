"""Checkpoint merges as queued jobs: they wait their turn behind generations (one heavy job at a
time on a machine), report each tensor as progress, stop between tensors when interrupted (the
half-written file is removed, the folder left as it was), and the new checkpoint is in the list
the moment the job ends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modules.checkpoints.registry import ModelRegistry
from modules.job_events import ProgressEvent
from modules.jobs import Job, JobContext, JobQueue
from modules.merger.merge import MergeInput, MergeProgress, merge_checkpoints
from modules.merger.recipe import ADD_DIFFERENCE, NO_INTERPOLATION, MergeError, MergeRecipe


@dataclass(frozen=True)
class MergeResult:
    path: Path
    title: str  # the new checkpoint as the list shows it (`name [hash]`)
    seconds: float


class MergeJobs:
    """Queues checkpoint merges on the generation queue; the output goes to the checkpoints folder."""

    def __init__(self, queue: JobQueue, registry: ModelRegistry, output_dir: Path):
        self.queue, self.registry, self.output_dir = queue, registry, Path(output_dir)

    def plan(self, recipe: MergeRecipe) -> tuple[list, Path, Path | None]:
        """(the input entries, the output path, the VAE file): every name checked now, so a bad one
        is a 4xx naming it before anything is queued."""
        recipe.check()
        names = [recipe.primary] + ([] if recipe.method == NO_INTERPOLATION else [recipe.secondary])
        names += [recipe.tertiary] if recipe.method == ADD_DIFFERENCE else []
        entries = [self.registry.find_checkpoint(name) for name in names]
        if any(entry.is_folder for entry in entries):
            folder = next(entry.name for entry in entries if entry.is_folder)
            raise MergeError(f"{folder} is a diffusers folder; the merger reads single-file checkpoints (.safetensors or .ckpt).")
        vae = self.registry.find_vae(recipe.bake_in_vae).path if recipe.bake_in_vae.strip() else None
        output = self.output_dir / f"{recipe.output_stem([entry.stem for entry in entries])}.safetensors"
        if output.exists():
            taken, folder = output.name, self.output_dir.name
            raise MergeError(f"{taken} already exists in {folder}/: choose another name (nothing was overwritten).")
        return entries, output, vae

    def submit(self, recipe: MergeRecipe) -> Job[MergeResult]:
        entries, output, vae = self.plan(recipe)
        return self.queue.submit(lambda ctx: self._run(ctx, recipe, entries, output, vae), f"merge into {output.name}")

    def _run(self, ctx: JobContext, recipe: MergeRecipe, entries: list, output: Path, vae: Path | None) -> MergeResult:
        import time

        started = time.perf_counter()
        inputs = []
        for index, entry in enumerate(entries):
            ctx.check()
            ctx.report(ProgressEvent(step=index, steps=len(entries), textinfo=f"Hashing {entry.name}"))
            inputs.append(MergeInput(entry.path, self.registry.title(entry), self.registry.sha256(entry), self.registry.legacy_hash(entry)))

        def on_progress(progress: MergeProgress) -> None:
            ctx.check()  # raises JobInterrupted: the output is never given its name
            ctx.report(ProgressEvent(step=progress.done, steps=progress.total, textinfo=f"Merging {progress.done}/{progress.total}: {progress.key}"))

        merge_checkpoints(recipe, inputs, output, vae, on_progress)
        self.registry.refresh()
        entry = self.registry.entry_for_path(output)
        title = self.registry.title(entry) if entry is not None else output.stem
        return MergeResult(output, title, time.perf_counter() - started)
