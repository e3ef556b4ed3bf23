"""`--backend ray`: a real local Ray instance (CPU, loopback only) with two Ray Serve replicas and
two tiny real checkpoints. Concurrent clients get the same pixels and seeds as an in-process run,
each checkpoint's jobs go to the replica holding it (multiplexed by sha256), previews and progress
stream back to the UI node's Job objects, Interrupt and Skip reach the replica running the job, a
checkpoint no replica has (in a --ckpt-dir of the UI node only) fails with its sentence, the API in
front answers with the replica's pixels and shows its progress, and without Ray the flag says how to
install it. Built from the command line (build_services), as webui.py does.

Skipped when Ray Serve is not installed (requirements-ray.txt; requirements-dev.txt has it)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("ray.serve")

from fastapi.testclient import TestClient  # noqa: E402

from modules.services import build_services  # noqa: E402
from modules.backends.ray_serve import RayRunner, ServedResult  # noqa: E402
from modules.checkpoints.manager import ManagerOptions, ModelManager  # noqa: E402
from modules.cmd_args import parse_args  # noqa: E402
from modules.errors import UserError  # noqa: E402
from modules.generation.request import GenerationRequest  # noqa: E402
from modules.app import in_process_generation  # noqa: E402
from modules.jobs import JobQueue  # noqa: E402
from modules.api.progress import progress_report  # noqa: E402
from tests.api.api_helpers import API, decode  # noqa: E402
from tools.make_test_models import write_test_checkpoint  # noqa: E402
from webui import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(480)  # Ray start alone took 30-95 s on a loaded 2-core machine; 240 s was not enough at load 9-14


def _request(**changes) -> GenerationRequest:
    return GenerationRequest(**{**dict(prompt="a red circle", steps=6, width=64, height=64, seed=5, sampler_name="Euler a"), **changes})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Easel built from its command line with --backend ray (2 replicas, 1 checkpoint each, 1 torch
    thread) and its API. Checkpoints a and b are in the models folder (the replicas' too); c is in
    a --ckpt-dir of the UI node only, so no replica can find it."""
    root = tmp_path_factory.mktemp("ray")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    (root / "ui-only").mkdir()
    for folder, name, seed in (("models/Stable-diffusion", "a", 1), ("models/Stable-diffusion", "b", 2), ("ui-only", "c", 3)):
        write_test_checkpoint(root / folder / f"{name}.safetensors", "sd1", "tiny", seed=seed)
    args = parse_args(["--nowebui", "--models-dir", str(root / "models"), "--data-dir", str(root / "data"), "--ckpt-dir", str(root / "ui-only"),
                       "--device", "cpu", "--dtype", "fp32", "--threads", "1", "--skip-load", "--no-demo-model", "--disable-extensions",
                       "--backend", "ray", "--ray-replicas", "2", "--ray-models-per-replica", "1"])
    started = time.perf_counter()
    services = build_services(args)
    print(f"Ray + 2 replicas up in {time.perf_counter() - started:.1f}s")
    assert isinstance(services.generation.runner, RayRunner) and len(services.queue._devices) == 2
    client = TestClient(create_app(services, args), raise_server_exceptions=False)
    yield SimpleNamespace(services=services, service=services.generation, client=client, registry=services.registry,
                          tokenizers=services.paths.tokenizer_cache)
    services.close()
    services.generation.runner.backend.close()


def _reference(registry, tokenizers, checkpoint: str, request: GenerationRequest):
    """The same request in-process (one torch thread, as the replicas run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, tokenizers, ManagerOptions())
    manager.switch_checkpoint(checkpoint)
    queue = JobQueue(max_pending=0)
    queue.start()
    try:
        return in_process_generation(manager, queue).submit_txt2img(request).result(timeout=120)
    finally:
        queue.close()
        torch.set_num_threads(threads)


def test_concurrent_clients_get_their_pixels_and_seeds_from_the_replica_holding_their_checkpoint(cluster):
    service, registry, tokenizers = cluster.service, cluster.registry, cluster.tokenizers
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
        assert str(cluster.services.paths.outputs_dir) in str(result.paths[0])
    assert cluster.services.history.count() >= 8  # 2 warm-up + 6 jobs, recorded here
    for name, seed in (("a", 12), ("b", 21)):  # pixels equal an in-process run with the same seed
        reference = _reference(registry, tokenizers, name, _request(seed=seed))
        assert np.array_equal(np.asarray(results[(name, seed)].images[0]), np.asarray(reference.images[0]))
    assert not np.array_equal(np.asarray(results[("a", 12)].images[0]), np.asarray(results[("b", 21)].images[0]))


def test_previews_and_progress_stream_to_the_local_job(cluster):
    service = cluster.service
    job = service.submit_txt2img(_request(checkpoint="a", steps=8, seed=3))
    subscription = service.queue.subscribe(job.id, maxsize=1000)
    events, reports = [], []
    for event in subscription:
        events.append(event)
        if not event.final and event.step > 0:
            reports.append(progress_report(service.queue))
    result = job.result(timeout=120)
    steps = [e for e in events if not e.final and e.step > 0]
    assert [e.step for e in steps][-1] == 8 and steps[0].step <= 2
    previews = [e.preview for e in steps if e.preview is not None]
    assert previews and previews[0].size == (8, 8)  # Approx cheap: one pixel per latent
    assert events[-1].final and events[-1].state == "done" and len(result.images) == 1
    assert any(r.current_task == job.id and r.state["sampling_step"] > 0 and r.progress > 0 for r in reports)


def test_interrupt_and_skip_reach_the_replica_running_the_job(cluster):
    service = cluster.service
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
    service = cluster.service
    job = service.submit_txt2img(_request(checkpoint="c"))
    with pytest.raises(UserError, match="No checkpoint with sha256 .* copy the file into every node"):
        job.result(timeout=120)
    # The replicas still work, and still hold their checkpoints: the missing one evicted nothing.
    for name in ("a", "b"):
        ok = service.submit_txt2img(_request(checkpoint=name, steps=2)).result(timeout=120)
        assert len(ok.images) == 1 and not ok.checkpoint_loaded


def test_the_api_in_front_answers_with_the_replica_s_image_and_reports_progress(cluster):
    client, registry = cluster.client, cluster.registry
    body = {"prompt": "a red circle", "steps": 40, "width": 64, "height": 64, "seed": 77, "sampler_name": "Euler a",
            "override_settings": {"sd_model_checkpoint": "b"}}
    answer: dict = {}
    poster = threading.Thread(target=lambda: answer.update(response=client.post(f"{API}/txt2img", json=body)))
    poster.start()
    reports = []
    while poster.is_alive():
        report = client.get(f"{API}/progress").json()
        if report["state"]["sampling_step"] > 0:
            reports.append(report)
        time.sleep(0.02)
    response = answer["response"]
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["seed"] == 77 and info["sd_model_hash"] == registry.shorthash(registry.find_checkpoint("b"), compute=True)
    reference = _reference(registry, cluster.tokenizers, "b", _request(seed=77, steps=40))
    assert np.array_equal(np.asarray(decode(response.json()["images"][0]).convert("RGB")), np.asarray(reference.images[0]))
    assert reports and reports[-1]["state"]["sampling_steps"] == 40 and 0 < reports[-1]["progress"] <= 1
    assert any(report["current_image"] for report in reports)  # the replica's preview, as /progress shows it


def test_without_ray_the_flag_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; import webui; "
            f"sys.exit(webui.main(['--backend', 'ray', '--data-dir', {str(tmp_path)!r}, '--no-demo-model', '--skip-load']))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1, run.stderr[-2000:]
    assert "--backend ray needs Ray Serve" in run.stderr and "pip install -r requirements-ray.txt" in run.stderr
