"""`--backend ray`: a real local Ray instance (CPU, loopback only) with two Ray Serve replicas and
two tiny real checkpoints. Concurrent clients get the same pixels and seeds as an in-process run,
each checkpoint's jobs go to the replica holding it (multiplexed by sha256), previews and progress
stream back to the UI node's Job objects, Interrupt and Skip reach the replica running the job, a
checkpoint no replica has fails with its sentence, and without Ray the flag says how to install it.

Skipped when Ray Serve is not installed (requirements-ray.txt; requirements-dev.txt has it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ray.serve")

from modules.backends.ray_serve import RayBackendConfig, RayGenerationService, RayServeBackend, ServedResult  # noqa: E402
from modules.backends.ray_worker import WorkerConfig  # noqa: E402
from modules.checkpoints.hashing import HashCache  # noqa: E402
from modules.checkpoints.manager import ManagerOptions, ModelManager  # noqa: E402
from modules.checkpoints.registry import ModelRegistry  # noqa: E402
from modules.config import Settings  # noqa: E402
from modules.errors import UserError  # noqa: E402
from modules.generation.request import GenerationRequest  # noqa: E402
from modules.generation.service import GenerationService  # noqa: E402
from modules.history import HistoryStore  # noqa: E402
from modules.jobs import JobQueue  # noqa: E402
from modules.outputs import OutputWriter  # noqa: E402
from tools.make_test_models import write_test_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


def _request(**changes) -> GenerationRequest:
    return GenerationRequest(**{**dict(prompt="a red circle", steps=6, width=64, height=64, seed=5, sampler_name="Euler a"), **changes})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """UI node: models a, b, c (c exists only here). Ray node: its own folder with copies of a and b."""
    root = tmp_path_factory.mktemp("ray")
    ui_models = root / "ui-models" / "Stable-diffusion"
    node_models = root / "node-models"
    ui_models.mkdir(parents=True)
    (node_models / "Stable-diffusion").mkdir(parents=True)
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        write_test_checkpoint(ui_models / f"{name}.safetensors", "sd1", "tiny", seed=seed)
    for name in ("a", "b"):
        shutil.copy(ui_models / f"{name}.safetensors", node_models / "Stable-diffusion" / f"{name}.safetensors")
    worker = WorkerConfig(node_models, root / "node-cache", device="cpu", dtype="fp32", threads=1, models_per_replica=1)
    started = time.perf_counter()
    backend = RayServeBackend.start(RayBackendConfig(worker, replicas=2, local_cpus=2))
    print(f"Ray + 2 replicas up in {time.perf_counter() - started:.1f}s")
    registry = ModelRegistry([ui_models], [], HashCache(root / "ui-cache.json"))
    tokenizers = root / "tokenizers"
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, tokenizers, ManagerOptions())  # never loads here
    queue = JobQueue(max_pending=0, devices=backend.slots)
    history = HistoryStore(root / "history.sqlite3", outputs_root=root / "outputs")
    service = RayGenerationService(manager, queue, root / "factors.json", settings=Settings(), outputs=OutputWriter(root / "outputs"),
                                   history=history, backend=backend)
    service.default_checkpoint = lambda: "a"
    queue.start()
    yield service, registry, root, tokenizers
    queue.close()
    history.close()
    backend.close()


def _reference(registry, tokenizers, checkpoint: str, request: GenerationRequest):
    """The same request in-process (one torch thread, as the replicas run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, tokenizers, ManagerOptions())
    manager.switch_checkpoint(checkpoint)
    queue = JobQueue(max_pending=0)
    queue.start()
    try:
        return GenerationService(manager, queue).submit_txt2img(request).result(timeout=120)
    finally:
        queue.close()
        torch.set_num_threads(threads)


def test_concurrent_clients_get_their_pixels_and_seeds_from_the_replica_holding_their_checkpoint(cluster):
    service, registry, root, tokenizers = cluster
    # Warm-up, both at once: a replica runs one job at a time, so each checkpoint is loaded on its
    # own replica; then Serve learns who holds what (replicas push it every 0.1 s).
    warm = {name: service.submit_txt2img(_request(checkpoint=name, seed=1)) for name in ("a", "b")}
    first = {name: job.result(timeout=120) for name, job in warm.items()}
    time.sleep(1.5)
    assert first["a"].replica_id != first["b"].replica_id
    assert first["a"].checkpoint_loaded and first["b"].checkpoint_loaded

    results: dict[tuple[str, int], ServedResult] = {}
    errors: list[BaseException] = []

    def client(name: str, seeds: list[int]) -> None:  # one user: a job, its answer, the next job
        try:
            for seed in seeds:
                results[(name, seed)] = service.submit_txt2img(_request(checkpoint=name, seed=seed)).result(timeout=120)
        except BaseException as error:  # noqa: BLE001 - re-raised below in the test thread
            errors.append(error)

    clients = [threading.Thread(target=client, args=("a", [11, 12, 13])), threading.Thread(target=client, args=("b", [21, 22, 23]))]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=180)
    assert not errors, errors
    assert len(results) == 6

    for (name, seed), result in results.items():
        assert result.replica_id == first[name].replica_id, f"{name} seed {seed} ran on {result.replica_id}"
        assert not result.checkpoint_loaded  # the replica held it: no load, no eviction
        assert result.image_seeds == [seed] and len(result.images) == 1 and not result.interrupted
        short = registry.shorthash(registry.find_checkpoint(name), compute=True)
        assert f"Seed: {seed}," in result.infotexts[0] and f"Model hash: {short}" in result.infotexts[0]
        assert result.paths and result.paths[0] is not None and result.paths[0].is_file()  # saved on the UI node
    assert service.history.count() >= 8  # 2 warm-up + 6 jobs, recorded here
    for name, seed in (("a", 12), ("b", 21)):  # pixels equal an in-process run with the same seed
        reference = _reference(registry, tokenizers, name, _request(seed=seed))
        assert np.array_equal(np.asarray(results[(name, seed)].images[0]), np.asarray(reference.images[0]))
    assert not np.array_equal(np.asarray(results[("a", 12)].images[0]), np.asarray(results[("b", 21)].images[0]))


def test_previews_and_progress_stream_to_the_local_job(cluster):
    service = cluster[0]
    job = service.submit_txt2img(_request(checkpoint="a", steps=8, seed=3))
    subscription = service.queue.subscribe(job.id, maxsize=1000)
    events, reports = [], []
    for event in subscription:
        events.append(event)
        if not event.final and event.step > 0:
            reports.append(service.queue.progress())
    result = job.result(timeout=120)
    steps = [e for e in events if not e.final and e.step > 0]
    assert [e.step for e in steps][-1] == 8 and steps[0].step <= 2
    previews = [e.preview for e in steps if e.preview is not None]
    assert previews and previews[0].size == (8, 8)  # Approx cheap: one pixel per latent
    assert events[-1].final and events[-1].state == "done" and len(result.images) == 1
    assert any(r.current_task == job.id and r.state["sampling_step"] > 0 and r.progress > 0 for r in reports)


def test_interrupt_and_skip_reach_the_replica_running_the_job(cluster):
    service = cluster[0]
    long_job = service.submit_txt2img(_request(checkpoint="a", steps=60, n_iter=2, seed=40))
    skip_job = service.submit_txt2img(_request(checkpoint="b", steps=12, n_iter=2, seed=50))
    skipped = interrupted = False
    long_steps: list[int] = []
    sub_long, sub_skip = service.queue.subscribe(long_job.id, maxsize=1000), service.queue.subscribe(skip_job.id, maxsize=1000)

    def follow_skip() -> None:
        nonlocal skipped
        for event in sub_skip:
            if not skipped and event.image_index == 0 and event.step >= 2:
                skipped = service.queue.skip(skip_job.id)

    follower = threading.Thread(target=follow_skip)
    follower.start()
    for event in sub_long:
        if event.step > 0 and not event.final:
            long_steps.append(event.step)
        if not interrupted and event.step >= 3:
            interrupted = service.queue.interrupt(long_job.id)
    follower.join(timeout=120)
    long_result, skip_result = long_job.result(timeout=120), skip_job.result(timeout=120)
    assert interrupted and long_result.interrupted and max(long_steps) < 30  # stopped within a few steps, not 60 x 2
    assert len(long_result.images) <= 1
    assert skipped and not skip_result.interrupted
    assert skip_result.image_seeds == [51] and len(skip_result.images) == 1  # the first image skipped, the second made
    assert long_result.replica_id != skip_result.replica_id


def test_a_checkpoint_no_replica_has_fails_with_a_sentence(cluster):
    service = cluster[0]
    job = service.submit_txt2img(_request(checkpoint="c"))
    with pytest.raises(UserError, match="No checkpoint with sha256 .* copy the file into every node"):
        job.result(timeout=120)
    # The replicas still work, and still hold their checkpoints: the missing one evicted nothing.
    for name in ("a", "b"):
        ok = service.submit_txt2img(_request(checkpoint=name, steps=2)).result(timeout=120)
        assert len(ok.images) == 1 and not ok.checkpoint_loaded


def test_without_ray_the_flag_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; import webui; "
            f"sys.exit(webui.main(['--backend', 'ray', '--data-dir', {str(tmp_path)!r}, '--no-demo-model', '--skip-load']))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1, run.stderr[-2000:]
    assert "--backend ray needs Ray Serve" in run.stderr and "pip install -r requirements-ray.txt" in run.stderr
