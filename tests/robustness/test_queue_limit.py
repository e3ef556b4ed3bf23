"""A bounded queue: past the `max_queued_jobs` setting a new job is refused at once (the API answers
503 with A1111's error JSON and Retry-After), while every job already accepted still completes with
its own seed; 0 lifts the bound. The setting applies live through /sdapi/v1/options."""

from __future__ import annotations

import threading
import time

import pytest

from modules.jobs import JobQueue, QueueFullError
from tests.api.api_helpers import decode, make_client
from tests.robustness.rig import pixels, request
from tools.make_test_models import write_test_checkpoint

TXT2IMG = {"prompt": "refused?", "seed": 99, "steps": 3, "width": 64, "height": 64, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("queue-limit")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    write_test_checkpoint(root / "models" / "Stable-diffusion" / "alpha.safetensors", seed=1)
    client, services = make_client(root / "models", root / "data")
    with client:
        yield client, services
    services.close()


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_full_queue_refuses_with_503_and_the_accepted_jobs_complete(api):
    client, services = api
    assert services.queue.max_pending == 64  # the default
    assert client.post("/sdapi/v1/options", json={"max_queued_jobs": 2}).status_code == 200
    assert services.queue.max_pending == 2 and client.get("/sdapi/v1/options").json()["max_queued_jobs"] == 2
    try:
        with services.manager.lock:  # the worker takes a job and waits for the model: the rest queue up
            accepted = [services.generation.submit_txt2img(request(seed=seed, prompt=f"job {seed}")) for seed in (1, 2)]
            wait_until(lambda: services.queue.running())
            accepted.append(services.generation.submit_txt2img(request(seed=3, prompt="job 3")))
            assert len(services.queue.pending()) == 2

            answer: dict = {}  # in a thread, so that a server that queues instead of refusing fails fast, not hangs
            poster = threading.Thread(target=lambda: answer.update(r=client.post("/sdapi/v1/txt2img", json=TXT2IMG)))
            poster.start()
            poster.join(timeout=30)
            answered_at_once = not poster.is_alive()
            with pytest.raises(QueueFullError, match=r"^the queue is full \(2 waiting\)"):
                services.generation.submit_txt2img(request(seed=4))

        poster.join(timeout=120)
        assert answered_at_once, "the API waited for room instead of refusing the job"
        refused = answer["r"]
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        body = refused.json()
        assert set(body) == {"error", "detail", "body", "errors"} and body["error"] == "QueueFullError"
        assert body["detail"].startswith("the queue is full (2 waiting); try again later") and "max_queued_jobs" in body["detail"]

        results = [job.result(timeout=120) for job in accepted]
        assert [r.image_seeds for r in results] == [[1], [2], [3]]
        reference = services.generation.submit_txt2img(request(seed=3, prompt="job 3", save_samples=False)).result(timeout=120)
        assert pixels(results[2].images[0]) == pixels(reference.images[0])

        again = client.post("/sdapi/v1/txt2img", json=TXT2IMG)  # room again
        assert again.status_code == 200 and "Seed: 99" in decode(again.json()["images"][0]).info["parameters"]
    finally:
        client.post("/sdapi/v1/options", json={"max_queued_jobs": 64})
    assert services.queue.max_pending == 64


def test_the_setting_is_checked(api):
    client, services = api
    response = client.post("/sdapi/v1/options", json={"max_queued_jobs": -1})
    assert response.status_code == 400 and "max_queued_jobs must be between 0 and 100000" in response.json()["detail"]
    assert services.queue.max_pending == 64


def test_zero_means_no_bound_and_a_lower_bound_keeps_waiting_jobs():
    gate = __import__("threading").Event()
    queue = JobQueue(max_pending=0)
    queue.start()
    try:
        jobs = [queue.submit(lambda ctx, n=n: gate.wait(30) and n) for n in range(200)]
        queue.set_limit(5)  # lowered below what waits: those stay, new ones are refused
        with pytest.raises(QueueFullError):
            queue.submit(lambda ctx: None)
        gate.set()
        assert [job.result(timeout=30) for job in jobs] == list(range(200))
        assert queue.submit(lambda ctx: "fits again").result(timeout=30) == "fits again"
    finally:
        queue.close()
