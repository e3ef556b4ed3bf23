"""The UI node side of `--backend ray`: deploys the generation workers on Ray Serve and runs jobs there.

`RayServeBackend.start` connects to a Ray cluster (or starts a local one), starts Serve without an
HTTP proxy (the UI node calls the deployment through its handle) and deploys
`modules.backends.ray_worker.GenerationWorker` with one replica per GPU (or per CPU slot).

`RayRunner` is the `JobRunner` (modules/app/runner.py) whose job body runs remotely: the local
`JobQueue` still owns the job (one worker slot per replica), so the UI, `/sdapi/v1/progress`,
Interrupt and Skip work on the same `Job` objects as in-process. The body resolves the request's
checkpoint to its sha256, calls the deployment with `multiplexed_model_id=<sha256>` as a streaming
request, reports each streamed `ProgressEvent` to the job, forwards Interrupt/Skip to the replica
through `JobSignals`, then saves the images and history rows here, on the UI node.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, TypedDict, cast

import ray
from ray import serve

from modules.app.results import ResultRecorder
from modules.app.runner import JobSpec
from modules.backends.ray_worker import GenerationWorker, JobSignals, Outcome, RemoteCall, WorkerConfig
from modules.checkpoints.registry import ModelFile, ModelRegistry
from modules.config import Settings
from modules.errors import UserError
from modules.extensions.job_hooks import JobHooks
from modules.extensions.registry import ExtensionRegistry
from modules.generation.engine import GenerationResult
from modules.generation.request import GenerationRequest
from modules.jobs import JobContext, ProgressEvent

log = logging.getLogger(__name__)

APP_NAME = "easel"
NAMESPACE = "easel"
SIGNAL_POLL_S = 0.05  # how often the UI node looks for an Interrupt/Skip of a running remote job


class RemoteJobError(RuntimeError):
    """A job failed on a replica with an error that is not a UserError (its type and text)."""


@dataclass
class ServedResult(GenerationResult):
    """A GenerationResult made on a Ray Serve replica, with the replica that made it."""

    replica_id: str = ""
    node_id: str = ""
    checkpoint_loaded: bool = False  # the replica had to load the checkpoint (no replica held it)


class _Where(TypedDict):
    """ServedResult's own fields: where the result was made."""

    replica_id: str
    node_id: str
    checkpoint_loaded: bool


@dataclass(frozen=True)
class RayBackendConfig:
    """How to reach Ray and how to deploy the workers (from the command line, see modules/cmd_args.py)."""

    worker: WorkerConfig
    address: str | None = None  # None: start a local Ray instance; "auto": join the cluster this node is part of
    replicas: int = 0  # 0: one per GPU of the cluster, else 1
    cpus_per_replica: float = 1.0
    gpus_per_replica: float | None = None  # None: 1 when the cluster has GPUs and the device is not "cpu"
    local_cpus: int | None = None  # CPUs of a local instance (None: all)
    local_ip: str = "127.0.0.1"  # a local instance listens on loopback only
    code_root: Path = Path(__file__).resolve().parents[2]  # Easel's folder; the same path on every node


class RayServeBackend:
    """The deployment's handle, the signals actor, and how to run one job through them."""

    def __init__(self, config: RayBackendConfig, handle: Any, signals: Any, replicas: int, started_ray: bool) -> None:
        self.config = config
        self.handle = handle
        self.signals = signals
        self.replicas = replicas
        self._started_ray = started_ray

    @property
    def slots(self) -> tuple[str, ...]:
        """Worker slots of the UI node's JobQueue: one per replica (each runs one job at a time)."""
        return tuple(f"ray-{index}" for index in range(self.replicas))

    @classmethod
    def start(cls, config: RayBackendConfig) -> RayServeBackend:
        """Connects to (or starts) Ray, starts Serve and deploys the workers; waits until they are up."""
        env = {"PYTHONPATH": str(config.code_root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        started_ray = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"namespace": NAMESPACE, "runtime_env": {"env_vars": env}, "logging_level": logging.WARNING}
            if config.address is None:
                options |= {"num_cpus": config.local_cpus, "include_dashboard": False, "_node_ip_address": config.local_ip}
            else:
                options["address"] = config.address
            ray.init(**options)
            started_ray = True
        gpus = int(ray.cluster_resources().get("GPU", 0))
        replicas = config.replicas or max(gpus, 1)
        per_gpu = config.gpus_per_replica
        if per_gpu is None:
            per_gpu = 1.0 if gpus and config.worker.device != "cpu" else 0.0
        worker = config.worker
        if worker.device == "auto":  # the GPU Ray reserved for the replica, else its CPU slot
            worker = replace(worker, device="cuda" if per_gpu > 0 else "cpu")
        serve.start(proxy_location="Disabled")
        signals = ray.remote(num_cpus=0)(JobSignals).options(name=f"{APP_NAME}-signals", get_if_exists=True).remote()
        # Given the class, serve.deployment returns the Deployment; ray declares only its decorator form.
        deployment = cast(serve.Deployment, serve.deployment(GenerationWorker)).options(
            name="GenerationWorker", num_replicas=replicas, max_ongoing_requests=1,
            ray_actor_options={"num_cpus": config.cpus_per_replica, "num_gpus": per_gpu, "runtime_env": {"env_vars": env}},
        )
        handle = serve.run(deployment.bind(worker, signals), name=APP_NAME, route_prefix=None)
        log.info("Ray Serve: %d generation replica(s) (%s CPU, %s GPU each)", replicas, config.cpus_per_replica, per_gpu)
        return cls(config, handle, signals, replicas, started_ray)

    def close(self) -> None:
        """Removes the deployment; shuts Ray down if this process started it."""
        try:
            serve.delete(APP_NAME)
        finally:
            if self._started_ray:
                serve.shutdown()
                ray.shutdown()

    def run(self, ctx: JobContext, sha256: str, call: RemoteCall) -> Outcome:
        """Runs `call` on a replica holding `sha256` (or one that loads it); reports its events to
        `ctx` and forwards the job's Interrupt/Skip while it runs. Raises the replica's error."""
        stream = self.handle.options(stream=True, multiplexed_model_id=sha256).generate.remote(call)
        done = threading.Event()
        forwarder = threading.Thread(target=self._forward_signals, args=(ctx, done), name=f"easel-fwd-{ctx.job_id[:8]}", daemon=True)
        forwarder.start()
        outcome: Outcome | None = None
        try:
            for item in stream:
                if isinstance(item, Outcome):
                    outcome = item
                elif isinstance(item, ProgressEvent):
                    ctx.report(replace(item, job_id="", eta_seconds=None))  # the local job's id and ETA
        finally:
            done.set()
            forwarder.join(timeout=1)
            self.signals.forget.remote(ctx.job_id)
        if outcome is None:
            raise RemoteJobError("the Ray Serve replica ended the job without a result")
        if outcome.error is not None:
            raise (UserError if outcome.user_error else RemoteJobError)(outcome.error)
        return outcome

    def _forward_signals(self, ctx: JobContext, done: threading.Event) -> None:
        interrupted = False
        while not done.wait(SIGNAL_POLL_S):
            if ctx.interrupt_requested and not interrupted:
                interrupted = True
                self.signals.send.remote(ctx.job_id, "interrupt")
            if ctx.take_skip():
                self.signals.send.remote(ctx.job_id, "skip")


class RayRunner:
    """A JobRunner whose jobs run on Ray Serve replicas: the local JobQueue still owns each job (one
    worker slot per replica); the replica's own InProcessRunner makes the pictures, and the
    infotexts it wrote come back; saving and history happen here, on the UI node."""

    def __init__(self, backend: RayServeBackend, registry: ModelRegistry, recorder: ResultRecorder, settings: Settings,
                 extensions: ExtensionRegistry | None, default_checkpoint: Callable[[], str | None]) -> None:
        self.backend = backend
        self.registry = registry
        self.recorder = recorder
        self.settings = settings
        self.extensions = extensions
        self.default_checkpoint = default_checkpoint  # the checkpoint a request without one uses (the UI's selection)

    def check(self, spec: JobSpec) -> None:
        if spec.script is not None:
            raise UserError(f"The script {spec.script.script.title!r} switches models inside one job, which the Ray backend "
                            "does not do yet: start Easel without --backend ray to use it.")

    def checkpoint_for(self, request: GenerationRequest) -> ModelFile:
        """The request's checkpoint, else the selected one; UserError when there is none."""
        query = request.checkpoint or self.default_checkpoint()
        if not query:
            raise UserError("No checkpoint is selected: put a .safetensors file in models/Stable-diffusion and select it.")
        return self.registry.find_checkpoint(query)

    def run(self, ctx: JobContext, spec: JobSpec) -> GenerationResult:
        """The job body: generate on a replica (by the checkpoint's sha256), then save here."""
        entry = self.checkpoint_for(spec.request)
        ctx.report(ProgressEvent(textinfo=f"Waiting for a Ray Serve replica with {entry.name}"))
        sha256 = self.registry.sha256(entry)
        call = RemoteCall(ctx.job_id, spec.summary, replace(spec, request=replace(spec.request, checkpoint=None)), self.settings)
        outcome = self.backend.run(ctx, sha256, call)
        where = _Where(replica_id=outcome.replica.replica_id, node_id=outcome.replica.node_id, checkpoint_loaded=outcome.loaded_checkpoint)
        if outcome.result is None:  # interrupted before it began
            return ServedResult(interrupted=True, **where)
        served = ServedResult(**{f.name: getattr(outcome.result, f.name) for f in fields(GenerationResult)}, **where)
        served.paths, served.grid_path = [], None  # the replica saved nothing; the files are written here
        self.recorder.save(entry, spec.request, served, spec.outputs, JobHooks(self.extensions, spec.history_task))
        return served
