"""Generation through the job queue: progress events with previews, per-job interrupt, per-request
checkpoint override restored, a failing job reported while the next one runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.errors import UserError
from modules.generation.request import GenerationRequest
from modules.app import in_process_generation
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
    yield in_process_generation(manager, queue, preview_cache=tmp_path / "factors.json", styles=styles)
    queue.close()


def _request(**changes):
    return GenerationRequest(**{**dict(prompt="a red circle", steps=20, width=64, height=64, seed=5, sampler_name="Euler a"), **changes})


def test_events_with_previews_then_the_result(service):
    with service.runner.manager.lock:  # the job waits for the model until we are subscribed
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
    with service.runner.manager.lock:
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
    assert service.runner.manager.loaded.checkpoint.stem == "a"


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


def test_each_image_gets_its_infotext_and_is_saved_with_it(service, tmp_path):
    from modules.infotext.embed import read_infotext
    from modules.outputs import OutputWriter

    service.runner.recorder.outputs = OutputWriter(tmp_path / "outputs")
    result = service.submit_txt2img(_request(seed=40, batch_size=2, steps=3, sampler_name="Euler a", eta=0.5)).result(timeout=120)
    sha = service.runner.manager.registry.sha256(service.runner.manager.loaded.checkpoint)
    assert [text.splitlines()[-1] for text in result.infotexts] == [
        f"Steps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: {seed}, Size: 64x64, "
        f"Model hash: {sha[:10]}, Model: a, Eta: 0.5, Version: v1.10.1"
        for seed in (40, 41)
    ]
    assert [p.name for p in result.paths] == ["00000-40.png", "00001-41.png"]
    assert [read_infotext(p) for p in result.paths] == result.infotexts
    assert result.grid.size == (128, 64) and result.grid_path.parent.parent.name == "txt2img-grids"
    assert result.grid_path.name == "00000-grid.png" and read_infotext(result.grid_path) == result.infotexts[0]

    service.settings.save_txt = True
    result = service.submit_txt2img(_request(seed=44, steps=2)).result(timeout=120)
    assert result.paths[0].with_suffix(".txt").read_text(encoding="utf-8") == result.infotexts[0]

    service.settings.samples_save = False
    result = service.submit_txt2img(_request(seed=42, steps=2, sampler_name="DDIM", eta=0.3)).result(timeout=120)
    assert result.paths == [None] and "Eta DDIM: 0.3" in result.infotexts[0]


def test_img2img_and_hires_jobs_write_a1111_infotext_and_save_in_their_folders(service, tmp_path):
    from PIL import Image, ImageDraw

    from modules.generation.request import Img2ImgRequest
    from modules.infotext.embed import read_infotext
    from modules.infotext.parse import parse_infotext
    from modules.infotext.restore import restore_request
    from modules.outputs import OutputWriter

    service.runner.recorder.outputs = OutputWriter(tmp_path / "outputs")
    sha = service.runner.manager.registry.sha256(service.runner.manager.loaded.checkpoint)
    picture = Image.new("RGB", (64, 64), (40, 120, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 40, 40), fill=255)
    job = service.submit_img2img(Img2ImgRequest(
        prompt="a hat", steps=10, width=64, height=64, seed=9, sampler_name="Euler", init_images=[picture], mask=mask,
        denoising_strength=0.5, mask_blur=4, inpainting_fill=0, inpaint_full_res=True, inpaint_full_res_padding=32,
    ))
    result = job.result(timeout=120)
    assert result.infotexts[0].splitlines()[-1] == (
        f"Steps: 10, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 9, Size: 64x64, Model hash: {sha[:10]}, "
        "Model: a, Denoising strength: 0.5, Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, "
        "Masked content: fill, Version: v1.10.1"
    )
    assert result.paths[0].parent.parent.name == "img2img-images" and read_infotext(result.paths[0]) == result.infotexts[0]
    restored = restore_request(parse_infotext(result.infotexts[0]), {"denoising_strength", "inpainting_fill", "inpaint_full_res", "mask_blur",
                                                                       "inpaint_full_res_padding", "prompt", "steps", "seed", "width", "height"})
    assert (restored.fields["denoising_strength"], restored.fields["inpainting_fill"], restored.fields["inpaint_full_res"]) == (0.5, 0, True)

    hires = service.submit_txt2img(_request(seed=3, steps=3, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=2, denoising_strength=0.55)).result(timeout=120)
    assert hires.images[0].size == (96, 96)
    assert hires.infotexts[0].splitlines()[-1] == (
        f"Steps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 3, Size: 64x64, Model hash: {sha[:10]}, "
        "Model: a, Denoising strength: 0.55, Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Latent, Version: v1.10.1"
    )
    every_field = {f.name for f in dataclasses.fields(Img2ImgRequest)}
    for text in (result.infotexts[0], hires.infotexts[0]):  # Easel's own pictures restore in full
        assert restore_request(parse_infotext(text), every_field).not_applied == []

    with pytest.raises(UserError, match="needs an image"):
        service.submit_img2img(Img2ImgRequest(prompt="x", width=64, height=64))
    service.settings.max_input_megapixels = 0.25
    with pytest.raises(UserError, match="megapixels"):
        service.submit_img2img(Img2ImgRequest(prompt="x", width=64, height=64, init_images=[Image.new("RGB", (1000, 1000))]))


def test_outpaint_job_saves_with_img2img_records_outpaint_and_its_infotext_restores_the_settings(service, tmp_path):
    from PIL import Image

    from modules.generation.outpaint import OutpaintRequest
    from modules.generation.request import Img2ImgRequest
    from modules.history import HistoryStore
    from modules.infotext.embed import read_infotext
    from modules.infotext.parse import parse_infotext
    from modules.infotext.restore import restore_outpaint
    from modules.outputs import OutputWriter

    service.runner.recorder.outputs = OutputWriter(tmp_path / "outputs")
    service.runner.recorder.history = HistoryStore(tmp_path / "history.sqlite3")
    picture = Image.new("RGB", (64, 48), (200, 60, 30))
    base = Img2ImgRequest(prompt="a wall", steps=3, width=64, height=64, seed=4, sampler_name="Euler", init_images=[picture],
                          denoising_strength=0.9, styles=["vivid"])
    request = OutpaintRequest(base, method="Outpainting mk2", directions=("right", "up"), pixels=16, noise_q=1.25, color_variation=0.2)
    events = []
    job = service.submit_outpaint(request)
    subscription = service.queue.subscribe(job.id)
    result = job.result(timeout=120)
    while (event := subscription.get(timeout=0.1)) is not None and not event.final:
        events.append(event)
    assert result.images[0].size == (128, 64)  # mk2 rounds each grown dimension up to a multiple of 64
    assert max(e.steps for e in events) == 2 * 3 and events[-1].step == 6  # two sides, steps counted across them
    assert result.paths[0].parent.parent.name == "img2img-images" and read_infotext(result.paths[0]) == result.infotexts[0]
    params = parse_infotext(result.infotexts[0])
    assert params["Prompt"] == "a wall, vivid colours" and params["Negative prompt"] == "dull"  # the style applied
    assert (params["Size-1"], params["Size-2"], params["Seed"]) == ("128", "64", "4")
    restored = restore_outpaint(params).fields
    assert {key: restored[key] for key in ("method", "directions", "pixels", "noise_q", "color_variation", "mask_blur")} == {
        "method": "Outpainting mk2", "directions": ("right", "up"), "pixels": 16, "noise_q": 1.25, "color_variation": 0.2, "mask_blur": 8}
    [entry] = service.runner.recorder.history.search()
    assert entry.task == "outpaint" and (entry.width, entry.height) == (128, 64)

    with pytest.raises(UserError, match="at least one direction"):
        service.submit_outpaint(OutpaintRequest(base, directions=()))
    service.settings.max_input_megapixels = 0.01
    with pytest.raises(UserError, match="Outpainting would make a 192x176 picture"):
        service.submit_outpaint(OutpaintRequest(base, directions=("left", "right", "up", "down"), pixels=64))
