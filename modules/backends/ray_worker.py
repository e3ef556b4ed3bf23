"""The replica side of `--backend ray`: a Ray Serve deployment of generation workers.

Each replica is one GPU (or one CPU slot). It finds checkpoints by sha256 in its own models/
folder and keeps the most recently used ones loaded, through Ray Serve model multiplexing keyed
by that hash: the router sends a request to a replica that already holds its checkpoint. Each held
checkpoint is a :class:`HeldCheckpoint`: its own `ModelManager` (that checkpoint loaded) and a
one-slot `JobQueue` running the same `InProcessRunner` job body as the in-process backend, so
the pixels are the same. `generate` streams the job's progress events (with previews), then one
:class:`Outcome`. Interrupt and Skip come through :class:`JobSignals`, a small Ray actor the UI
node writes and each replica watches for the jobs it runs.

Nothing is saved here: outputs and history stay on the UI node. This module imports Ray; only
`modules.backends` imports it, and only for `--backend ray`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import ray
import torch
from ray import serve

from modules.app import Submitter, in_process_generation
from modules.app.runner import InProcessRunner, JobSpec
from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelFile, ModelRegistry
from modules.config import Settings
from modules.controlnet.service import ControlNets
from modules.detailer.catalog import DetectorCatalog
from modules.device.hardware import choose_device, choose_dtype
from modules.errors import ModelNotFoundError, UserError
from modules.jobs import JobQueue, ProgressEvent
from modules.lora.files import LoraLibrary
from modules.prompts.embeddings import EmbeddingLibrary
from modules.upscalers.catalog import FOLDERS, UpscalerCatalog
from modules.upscalers.service import TileSettings, Upscalers, tile_settings

log = logging.getLogger(__name__)

SIGNAL_WAIT_S = 0.5  # how long one JobSignals.wait call waits for a signal before asking again


@dataclass(frozen=True)
class WorkerConfig:
    """What a replica needs to know; the same folders must exist on every node (see docs/scale-out.md)."""

    models_dir: Path  # Stable-diffusion/, VAE/, Lora/, embeddings/ of this node
    cache_dir: Path  # the node's hash cache and tokenizers (never outputs: those stay on the UI node)
    device: str = "auto"  # "auto": cuda when Ray reserved a GPU for the replica, else cpu (resolved at deploy)
    dtype: str = "auto"
    threads: int = 0  # torch CPU threads per replica; 0: torch's default
    models_per_replica: int = 2  # checkpoints a replica keeps loaded (LRU)


@dataclass(frozen=True)
class ReplicaInfo:
    """Which replica ran a job: reported back with every result."""

    replica_id: str
    node_id: str
    pid: int


@dataclass(frozen=True)
class RemoteCall:
    """One job as the UI node sends it: its JobSpec (the request and the task's run), the job id,
    and the UI node's settings."""

    job_id: str
    description: str
    spec: JobSpec
    settings: Settings


@dataclass
class Outcome:
    """The last item of a stream: the result, or the error as text (`user_error`: a UserError's
    sentence, shown as it is)."""

    replica: ReplicaInfo
    result: Any = None
    error: str | None = None
    user_error: bool = False
    loaded_checkpoint: bool = False  # the replica loaded the checkpoint for this job (it did not hold it)
    timings: dict[str, float] = field(default_factory=dict)


class JobSignals:
    """Interrupt and Skip requests per job id, kept in a Ray actor (async: many waits at once).
    The UI node `send`s; the replica running the job `wait`s for signals past the ones it has seen."""

    def __init__(self) -> None:
        self._signals: dict[str, list[str]] = {}

    async def send(self, job_id: str, kind: str) -> None:
        if kind not in ("interrupt", "skip"):
            raise ValueError(f"unknown signal {kind!r}")
        self._signals.setdefault(job_id, []).append(kind)

    async def wait(self, job_id: str, seen: int, timeout: float) -> list[str]:
        """The signals after the first `seen`, as soon as there are any (or [] after `timeout`)."""
        deadline = time.monotonic() + timeout
        while len(self._signals.get(job_id, ())) <= seen and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self._signals.get(job_id, [])[seen:]

    async def forget(self, job_id: str) -> None:
        self._signals.pop(job_id, None)


class HeldCheckpoint:
    """One checkpoint loaded on a replica, with the queue and service that run jobs on it."""

    def __init__(self, sha256: str, entry: ModelFile, manager: ModelManager, generation: Submitter) -> None:
        self.sha256 = sha256
        self.entry = entry
        self.manager = manager
        self.generation = generation
        self._closed = False

    def close(self) -> None:
        """Stops its queue and frees the weights (Ray Serve calls `__del__` on LRU eviction)."""
        if self._closed:
            return
        self._closed = True
        self.generation.queue.close()
        self.manager.unload()
        log.info("Unloaded %s (%s)", self.entry.name, self.sha256[:10])

    def __del__(self) -> None:
        self.close()


class GenerationWorker:
    """The deployment class (wrapped by `serve.deployment` in `modules.backends.ray_serve`)."""

    def __init__(self, config: WorkerConfig, signals: Any) -> None:
        self.config = config
        self.signals = signals
        if config.threads:
            torch.set_num_threads(config.threads)
        config.cache_dir.mkdir(parents=True, exist_ok=True)
        self.registry = ModelRegistry(
            [config.models_dir / "Stable-diffusion"], [config.models_dir / "VAE"], HashCache(config.cache_dir / "cache.json"))
        self.device = choose_device(config.device)
        self.dtype = choose_dtype(self.device, config.dtype)
        context = serve.get_replica_context()
        self.info = ReplicaInfo(context.replica_id.unique_id, ray.get_runtime_context().get_node_id(), os.getpid())
        # Multiplexing set up per instance so that the LRU size comes from the config (Ray Serve
        # detects a `serve.multiplexed` function kept on the instance).
        async def load(sha256: str) -> HeldCheckpoint:
            return await asyncio.get_running_loop().run_in_executor(None, self._load_blocking, sha256)

        self.loads = 0  # checkpoints loaded so far (a job that found its checkpoint held adds none)
        self._get_checkpoint = serve.multiplexed(max_num_models_per_replica=config.models_per_replica)(load)
        log.info("Replica %s on %s: %s, %s", self.info.replica_id, self.device, self.dtype, config.models_dir)

    def find_by_hash(self, sha256: str) -> ModelFile:
        """The checkpoint of this node whose sha256 is `sha256` (hashes cached in cache.json)."""
        for refresh in (False, True):
            if refresh:
                self.registry.refresh()  # a file copied in since the replica started
            for entry in self.registry.checkpoints:
                if self.registry.sha256(entry) == sha256:
                    return entry
        raise ModelNotFoundError(
            f"No checkpoint with sha256 {sha256[:10]}... in {self.config.models_dir / 'Stable-diffusion'} on Ray node "
            f"{self.info.node_id[:12]} (replica {self.info.replica_id}): copy the file into every node's models folder "
            "(or share one folder), then try again.")

    def _load_blocking(self, sha256: str) -> HeldCheckpoint:
        entry = self.find_by_hash(sha256)
        cache = self.config.cache_dir
        embeddings = EmbeddingLibrary(self.config.models_dir / "embeddings")
        embeddings.refresh()
        manager = ModelManager(self.registry, self.device, self.dtype, cache / "tokenizers", ManagerOptions(checkpoint_cache_size=1),
                               embeddings=embeddings)
        manager.switch_checkpoint(entry)
        loras = LoraLibrary(self.config.models_dir / "Lora")
        loras.refresh()
        queue = JobQueue(max_pending=0, devices=(self.info.replica_id,))
        # No outputs and no history: the replica describes its pictures; the UI node saves them.
        def tiles() -> TileSettings:  # from the settings the UI node sent with the job
            runner = generation.runner
            assert isinstance(runner, InProcessRunner)
            return tile_settings(runner.settings)

        upscalers = Upscalers(UpscalerCatalog({name: self.config.models_dir / name for name, _ in FOLDERS}), manager.device, tiles)
        generation = in_process_generation(manager, queue, preview_cache=cache / "preview_factors.json",
                                           vae_approx_dir=self.config.models_dir / "VAE-approx", loras=loras, upscalers=upscalers,
                                           controlnets=ControlNets([self.config.models_dir / "ControlNet"]),
                                           detectors=DetectorCatalog([self.config.models_dir / "adetailer"]))
        queue.start()
        self.loads += 1
        return HeldCheckpoint(sha256, entry, manager, generation)

    async def generate(self, call: RemoteCall) -> AsyncIterator[ProgressEvent | Outcome]:
        """Streams the job's progress events, then its Outcome. The checkpoint is the request's
        multiplexed model id (its sha256)."""
        sha256 = serve.get_multiplexed_model_id()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        loads_before = self.loads
        try:
            # Looked up before the LRU: a checkpoint this node lacks must not unload one it holds.
            await loop.run_in_executor(None, self.find_by_hash, sha256)
            held = await self._get_checkpoint(sha256)
        except Exception as error:  # noqa: BLE001 - sent back; the UI node raises it for the job
            yield self._failure(error)
            return
        out: asyncio.Queue = asyncio.Queue()
        threading.Thread(target=self._run_job, args=(held, call, loop, out), name=f"easel-job-{call.job_id[:8]}", daemon=True).start()
        try:
            while True:
                item = await out.get()
                if isinstance(item, Outcome):
                    item.loaded_checkpoint = self.loads != loads_before
                    item.timings["checkpoint"] = time.perf_counter() - started
                    yield item
                    return
                yield item
        except asyncio.CancelledError:  # the UI node went away: stop the job instead of finishing it for no one
            held.generation.queue.interrupt(call.job_id)
            raise

    def _run_job(self, held: HeldCheckpoint, call: RemoteCall, loop: asyncio.AbstractEventLoop, out: asyncio.Queue) -> None:
        """Runs the job on the held checkpoint's queue (in this thread's company); forwards events."""
        generation, queue = held.generation, held.generation.queue

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(out.put_nowait, item)

        try:
            runner = generation.runner
            assert isinstance(runner, InProcessRunner)
            runner.use_settings(call.settings)  # one job at a time per replica (max_ongoing_requests=1)
            with held.manager.lock:  # the job waits for the model until we are subscribed: no event lost
                job = queue.submit(lambda ctx: runner.run(ctx, call.spec), call.description, job_id=call.job_id)
                subscription = queue.subscribe(job.id, maxsize=256)
        except Exception as error:  # noqa: BLE001 - reported to the UI node, which raises it there
            put(self._failure(error))
            return
        watcher = threading.Thread(target=self._watch_signals, args=(job, queue), name="easel-signals", daemon=True)
        watcher.start()
        for event in subscription:
            if not event.final:
                put(event)
        try:
            result = job.result()
            if result is not None:
                result.latents = []  # not used by the UI node; not worth the transfer
            put(Outcome(self.info, result=result))
        except Exception as error:  # noqa: BLE001 - the job's own failure, sent back as text
            put(self._failure(error))

    def _failure(self, error: Exception) -> Outcome:
        """An error as the UI node shows it: a UserError's sentence, else its type and text."""
        if isinstance(error, UserError):
            return Outcome(self.info, error=str(error), user_error=True)
        log.error("Job failed on replica %s: %s", self.info.replica_id, error, exc_info=error)
        return Outcome(self.info, error=f"{type(error).__name__}: {error}")

    def _watch_signals(self, job: Any, queue: JobQueue) -> None:
        """Applies the UI node's Interrupt/Skip for `job` to this replica's queue until it ends."""
        seen = 0
        while not job.done:
            try:
                signals = ray.get(self.signals.wait.remote(job.id, seen, SIGNAL_WAIT_S), timeout=SIGNAL_WAIT_S + 10)
            except (ray.exceptions.RayError, TimeoutError) as error:
                log.warning("Could not read the signals of job %s: %s", job.id, error)
                time.sleep(SIGNAL_WAIT_S)
                continue
            for kind in signals:
                (queue.interrupt if kind == "interrupt" else queue.skip)(job.id)
            seen += len(signals)
