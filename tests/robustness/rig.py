"""The fault tests' rig: a real tiny model on the CPU behind the real job queue and generation
service, with an outputs folder and a history database in a temporary folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.config import Settings
from modules.generation.request import GenerationRequest
from modules.app import Submitter, in_process_generation
from modules.history import HistoryStore
from modules.jobs import JobQueue
from modules.outputs import OutputWriter
from tools.make_test_models import write_test_checkpoint


@dataclass
class Rig:
    root: Path
    models: Path
    service: Submitter
    queue: JobQueue
    history: HistoryStore
    outputs: Path


def make_rig(root: Path, tokenizer_cache: Path, outputs: Path | None = None) -> Rig:
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name, seed in (("alpha", 1), ("beta", 2)):
        if not (models / f"{name}.safetensors").exists():
            write_test_checkpoint(models / f"{name}.safetensors", seed=seed)
    registry = ModelRegistry([models], [], HashCache(root / "cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions())
    manager.switch_checkpoint("alpha")
    queue = JobQueue(max_pending=8)
    queue.start()
    outputs = outputs if outputs is not None else root / "outputs"
    history = HistoryStore(root / "history.sqlite3", outputs_root=outputs)
    settings = Settings(grid_save=False)
    service = in_process_generation(manager, queue, preview_cache=root / "factors.json", settings=settings, outputs=OutputWriter(outputs),
                                    history=history)
    return Rig(root, models, service, queue, history, outputs)


def request(**changes) -> GenerationRequest:
    values = dict(prompt="a red circle", steps=4, width=64, height=64, seed=11, sampler_name="Euler", preview_every=0)
    return GenerationRequest(**{**values, **changes})


def pixels(image) -> bytes:
    return image.convert("RGB").tobytes()
