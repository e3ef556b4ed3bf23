"""Generation through the job queue: progress events with previews, per-job interrupt, per-request
checkpoint override restored, a failing job reported while the next one runs."""

from __future__ import annotations

import pytest
import torch

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.errors import UserError
from modules.generation.request import GenerationRequest
from modules.generation.service import GenerationService
from modules.jobs import JobQueue
from modules.prompts.styles import StyleStore
from tools.make_test_models import write_test_checkpoint


@pytest.fixture
def service(tmp_path, tokenizer_cache):
    write_test_checkpoint(tmp_path / "a.safetensors", "sd1", "tiny", seed=1)
    write_test_checkpoint(tmp_path / "b.safetensors", "sd1", "tiny", seed=2)
    registry = ModelRegistry([tmp_path], [], HashCache(tmp_path / "cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions())
    manager.switch_checkpoint("a")
    queue = JobQueue(max_pending=4)
    queue.start()
    (tmp_path / "styles.csv").write_text("name,prompt,negative_prompt\nvivid,\"{prompt}, vivid colours\",dull\n")
    styles = StyleStore(tmp_path / "styles.csv")
    styles.load()
    yield GenerationService(manager, queue, tmp_path / "factors.json", styles)
    queue.close()


def _request(**changes):
    return GenerationRequest(**{**dict(prompt="a red circle", steps=20, width=64, height=64, seed=5, sampler_name="Euler a"), **changes})


def test_events_with_previews_then_the_result(service):
    with service.manager.lock:  # the job waits for the model until we are subscribed
        job = service.submit_txt2img(_request())
        subscription = service.queue.subscribe(job.id)
    events = list(subscription)
    steps = [e.step for e in events if not e.final]
    assert steps == list(range(1, 21))
    assert all(e.preview is not None and e.preview.size == (8, 8) for e in events if not e.final)
    assert events[-1].final and events[-1].state == "done"
    result = job.result(timeout=60)
    assert len(result.images) == 1 and not result.interrupted


def test_interrupt_stops_within_a_step(service):
    with service.manager.lock:
        job = service.submit_txt2img(_request(n_iter=3))
        subscription = service.queue.subscribe(job.id)
    seen = []
    for event in subscription:
        if event.final:
            break
        seen.append(event.step)
        if event.step == 5:
            service.queue.interrupt(job.id)
    result = job.result(timeout=60)
    assert result.interrupted and len(result.images) == 1
    assert max(seen) <= 6


def test_checkpoint_override_is_restored(service):
    job = service.submit_txt2img(_request(checkpoint="b", steps=2))
    job.result(timeout=60)
    assert service.manager.loaded.checkpoint.stem == "a"


def test_bad_request_fails_before_queueing_and_a_failing_job_does_not_stop_the_next(service):
    with pytest.raises(UserError, match="multiple of 8"):
        service.submit_txt2img(_request(width=70))
    failing = service.submit_txt2img(_request(checkpoint="missing-model", steps=2))
    ok = service.submit_txt2img(_request(steps=2))
    with pytest.raises(UserError, match="missing-model"):
        failing.result(timeout=60)
    assert len(ok.result(timeout=60).images) == 1


def test_styles_change_the_prompt_and_the_picture(service):
    plain = service.submit_txt2img(_request(steps=3)).result(timeout=60)
    styled_job = service.submit_txt2img(_request(steps=3, styles=["vivid"]))
    styled = styled_job.result(timeout=60)
    assert styled_job.description == "txt2img: a red circle, vivid colours"
    assert not torch.equal(plain.latents[0], styled.latents[0])
