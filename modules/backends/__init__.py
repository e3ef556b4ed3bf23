"""Where generation runs: in this process (the default) or on Ray Serve replicas (`--backend ray`).

`open_backend(args)` returns an object with the JobQueue's worker slots and a factory for the
`JobRunner` (modules/app/runner.py) that runs each queued job; build_services uses both, so the UI
and the API see the same services and the same Job objects whichever backend runs the jobs. Ray is
imported only for `--backend ray`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from modules.app.results import ResultRecorder
from modules.app.runner import InProcessRunner, JobRunner
from modules.errors import UserError
from modules.generation.previews import PreviewChooser

if TYPE_CHECKING:
    from modules.checkpoints.manager import ModelManager
    from modules.config import Settings
    from modules.controlnet.service import ControlNets
    from modules.detailer.catalog import DetectorCatalog
    from modules.extensions.registry import ExtensionRegistry
    from modules.hypernetworks.files import HypernetworkLibrary
    from modules.lora.files import LoraLibrary
    from modules.prompts.dynamic import WildcardLibrary
    from modules.upscalers.service import Upscalers

BACKENDS = ("inprocess", "ray")
RAY_INSTALL_HINT = "pip install -r requirements-ray.txt"


@dataclass(frozen=True)
class RunnerParts:
    """What a runner is built from (by build_services, once the model controls exist)."""

    manager: "ModelManager"
    recorder: ResultRecorder
    settings: "Settings"
    previews: PreviewChooser
    extensions: "ExtensionRegistry | None"
    loras: "LoraLibrary | None"
    ensure_model: Callable[[], object]  # loads the start-up checkpoint when none is loaded
    default_checkpoint: Callable[[], str | None]  # the checkpoint a request without one uses
    upscalers: "Upscalers | None" = None  # hires fix's model upscalers
    controlnets: "ControlNets | None" = None  # ControlNet models
    detectors: "DetectorCatalog | None" = None  # the detailer's detectors
    wildcards: "WildcardLibrary | None" = None  # Dynamic Prompts' wildcard files
    hypernetworks: "HypernetworkLibrary | None" = None  # models/hypernetworks


class InProcessBackend:
    """Jobs run in this process on one worker thread, on the local ModelManager."""

    slots = ("default",)

    def runner(self, parts: RunnerParts) -> JobRunner:
        return InProcessRunner(parts.manager, parts.recorder, parts.settings, parts.previews, parts.extensions, parts.loras,
                               parts.ensure_model, parts.upscalers, controlnets=parts.controlnets, detectors=parts.detectors,
                               wildcards=parts.wildcards, hypernetworks=parts.hypernetworks)


class RayBackend:
    """Jobs run on Ray Serve replicas (modules/backends/ray_serve.py); see docs/scale-out.md."""

    def __init__(self, serve_backend: Any) -> None:
        self.serve_backend = serve_backend
        self.slots = serve_backend.slots

    def runner(self, parts: RunnerParts) -> JobRunner:
        from modules.backends.ray_serve import RayRunner

        return RayRunner(self.serve_backend, parts.manager.registry, parts.recorder, parts.settings, parts.extensions,
                         parts.default_checkpoint)


def open_backend(args: Any) -> InProcessBackend | RayBackend:
    """The backend `args.backend` names; for "ray" connects to Ray and deploys the workers.
    UserError (with how to install it) when Ray is missing."""
    backend = args.backend
    if backend == "inprocess":
        return InProcessBackend()
    if backend != "ray":
        raise UserError(f"Unknown backend {backend!r}: use {' or '.join(BACKENDS)}.")
    try:
        from modules.backends.ray_serve import RayBackendConfig, RayServeBackend
        from modules.backends.ray_worker import WorkerConfig
    except ImportError as error:
        raise UserError(f"--backend ray needs Ray Serve, which is not installed ({error}). Install it with: {RAY_INSTALL_HINT}") from error
    # Replicas use the GPU Ray gives each of them (else the CPU), whatever --device the UI node has.
    worker = WorkerConfig(
        models_dir=Path(args.models_dir), cache_dir=Path(args.data_dir) / "caches" / "ray-worker", device="auto",
        dtype=args.dtype or "auto", threads=args.threads or 0, models_per_replica=args.ray_models_per_replica,
    )
    config = RayBackendConfig(worker, address=args.ray_address, replicas=args.ray_replicas)
    return RayBackend(RayServeBackend.start(config))
