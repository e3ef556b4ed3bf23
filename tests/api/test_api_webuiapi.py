"""The PyPI client webuiapi (written for A1111), unchanged, against a real `python webui.py --api`:
models through options, txt2img with seed and batch, img2img, inpainting, PNG info, progress with
a preview while a job runs, interrupt, the sampler and scheduler lists."""

from __future__ import annotations

import base64
import io
import threading
import time

import numpy as np
import pytest
import webuiapi
from PIL import Image, ImageDraw

from tests.api.api_helpers import infotext_params

SIZE = {"width": 64, "height": 64}


@pytest.fixture(scope="module")
def client(live_server) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(host="127.0.0.1", port=live_server.port, sampler="Euler a", steps=3)


def test_list_and_switch_models_through_options(client):
    titles = client.util_get_model_names()
    assert [t.split(" [")[0] for t in titles] == ["alpha.safetensors", "beta.safetensors", "inpaint.safetensors"]
    assert client.util_get_current_model().startswith("alpha.safetensors [")
    client.util_set_model("beta.safetensors")
    try:
        assert client.util_get_current_model().startswith("beta.safetensors [")
        result = client.txt2img(prompt="a tree", seed=3, **SIZE)
        assert result.info["sd_model_name"] == "beta"
    finally:
        client.util_set_model("alpha.safetensors")
    assert client.util_get_current_model().startswith("alpha.safetensors [")


def test_txt2img_with_seed_and_batch(client):
    result = client.txt2img(prompt="a lamp", negative_prompt="dark", seed=500, batch_size=2, **SIZE)
    assert len(result.images) == 2 and all(image.size == (64, 64) for image in result.images)
    assert result.info["all_seeds"] == [500, 501] and result.info["sampler_name"] == "Euler a"
    for image, seed in zip(result.images, (500, 501)):
        params = infotext_params(image.info["parameters"])
        assert params["Seed"] == str(seed) and params["Prompt"] == "a lamp" and params["Steps"] == "3"
    assert result.parameters["seed"] == 500


def test_img2img_and_inpainting_with_a_mask(client):
    source = Image.new("RGB", (80, 80), (20, 120, 60))
    ImageDraw.Draw(source).rectangle((20, 20, 60, 60), fill=(250, 250, 250))
    plain = client.img2img(images=[source], prompt="a box", seed=9, denoising_strength=0.5, **SIZE)
    assert plain.image.size == (64, 64)
    assert infotext_params(plain.info["infotexts"][0])["Denoising strength"] == "0.5"
    mask = Image.new("RGB", (80, 80), "black")
    ImageDraw.Draw(mask).rectangle((30, 30, 50, 50), fill="white")
    inpainted = client.img2img(images=[source], mask_image=mask, prompt="a hole", seed=9, inpainting_fill=1, **SIZE)
    params = infotext_params(inpainted.info["infotexts"][0])
    assert inpainted.image.size == (80, 80)  # "only masked" pastes the result back into the picture, as A1111
    assert params["Masked content"] == "original" and params["Inpaint area"] == "Only masked" and params["Mask blur"] == "4"


def test_png_info_round_trip(client):
    made = client.txt2img(prompt="a comet, night", seed=77, **SIZE)
    read = client.png_info(made.image)
    assert read.info == made.info["infotexts"][0]  # webuiapi hands back the infotext itself
    assert read.json["parameters"]["Prompt"] == "a comet, night" and read.json["parameters"]["Seed"] == "77"


def test_samplers_and_schedulers(client):
    assert {"Euler a", "DPM++ 2M", "DDIM"} <= set(client.util_get_sampler_names())
    assert {"automatic", "karras", "exponential"} <= set(client.util_get_scheduler_names())
    assert client.get_upscalers()[1]["name"] == "Lanczos"


def test_progress_shows_a_preview_while_a_job_runs_and_interrupt_stops_it(client):
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", client.txt2img(prompt="slow", seed=1, steps=400, **SIZE)))
    runner.start()
    seen = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = client.get_progress()
        if progress["state"]["sampling_step"] >= 2 and progress["current_image"]:
            seen = progress
            break
        time.sleep(0.05)
    assert seen is not None, "no progress with a preview was seen"
    assert 0 < seen["progress"] < 1 and seen["eta_relative"] > 0
    assert seen["state"]["job_count"] == 1 and seen["state"]["sampling_steps"] == 400
    preview = Image.open(io.BytesIO(base64.b64decode(seen["current_image"])))
    assert preview.size[0] > 0
    stopped_at = time.monotonic()
    assert client.interrupt() == {}
    runner.join(timeout=60)
    assert not runner.is_alive() and time.monotonic() - stopped_at < 30
    result = outcome["result"]
    assert len(result.images) <= 1 and result.info["all_seeds"] == [1]
    client.util_wait_for_ready(check_interval=0.1)
    idle = client.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0


def test_unknown_api_paths_answer_a1111_json_beside_the_ui(live_server):
    import httpx

    missing = httpx.get(live_server.url + "/sdapi/v1/no-such-route")
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail", "body", "errors"}
    wrong = httpx.get(live_server.url + "/sdapi/v1/txt2img")
    assert wrong.status_code == 405 and wrong.json()["error"] == "HTTPException"
    assert httpx.get(live_server.url + "/").status_code == 200  # the UI is still served at /


def test_extras_with_a_model_upscaler_through_the_client(client, api_models):
    """webuiapi's extra_single_image / extra_batch_images, unchanged, with a model file dropped into
    models/ESRGAN while the server runs (listed at once, no restart)."""
    from tests import upscaler_models

    path = upscaler_models.write(api_models / "ESRGAN" / "4x-Client.safetensors", upscaler_models.compact(4, seed=5))
    try:
        assert "4x-Client" in [u["name"] for u in client.get_upscalers()]
        picture = Image.new("RGB", (40, 24), (200, 40, 40))
        ImageDraw.Draw(picture).ellipse((8, 4, 30, 20), fill=(20, 20, 220))
        single = client.extra_single_image(image=picture, upscaler_1="4x-Client", upscaling_resize=2)
        assert single.image.size == (80, 48) and "Postprocess upscaler: 4x-Client" in single.info
        batch = client.extra_batch_images(images=[picture, picture.resize((16, 16))], upscaler_1="4x-Client", upscaling_resize=4)
        assert [image.size for image in batch.images] == [(160, 96), (64, 64)]
    finally:
        path.unlink()


def test_controlnet_through_the_client(client, api, api_models):
    """webuiapi's ControlNetUnit and controlnet_* calls, unchanged, with a tiny ControlNet made for
    the test checkpoint dropped into models/ControlNet."""
    from tests.controlnet_models import tiny_controlnet, write_controlnet

    _, services = api
    unet = services.manager.loaded.unet
    path = write_controlnet(api_models / "ControlNet" / "client-cn.safetensors", tiny_controlnet(unet, seed=9, scale=0.5), dict(unet.config))
    try:
        assert client.controlnet_version() == 3
        assert [m.split(" [")[0] for m in client.controlnet_model_list()] == ["client-cn"]
        assert "canny" in client.controlnet_module_list()
        picture = Image.new("RGB", (64, 64), "black")
        ImageDraw.Draw(picture).ellipse((16, 16, 48, 48), fill="white")
        detected = client.controlnet_detect(images=[picture], module="canny", processor_res=64, threshold_a=100, threshold_b=200)
        assert detected.info == "Success" and len(detected.images) == 1 and detected.images[0].size == (64, 64)
        plain = client.txt2img(prompt="a shape", seed=21, **SIZE)
        units = [webuiapi.ControlNetUnit(image=picture, module="none", model="client-cn", control_mode=0)]  # an int mode, as old clients send
        controlled = client.txt2img(prompt="a shape", seed=21, controlnet_units=units, **SIZE)
        assert 'ControlNet 0: "Module: none, Model: client-cn [' in controlled.info["infotexts"][0]
        difference = abs(np.asarray(plain.image).astype(int) - np.asarray(controlled.image).astype(int)).mean()
        assert difference > 1
        img2img = client.img2img(images=[picture], prompt="a shape", seed=21, denoising_strength=0.5,
                                 controlnet_units=[webuiapi.ControlNetUnit(module="canny", model="client-cn")], **SIZE)
        assert 'ControlNet 0: "Module: canny' in img2img.info["infotexts"][0]
    finally:
        path.unlink()


def test_adetailer_through_the_client(client, api_models):
    """webuiapi's ADetailer (it still sends ad_mask_k_largest), unchanged: the tab runs with the shipped
    face detector dropped into models/adetailer and the infotext carries ADetailer's keys. (The tiny
    test model's img2img pass blurs the face away, so the region count is not asserted here;
    tests/api/test_api_adetailer.py repaints a found face.)"""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (api_models / "adetailer").mkdir(exist_ok=True)
    path = Path(shutil.copy(root / "models" / "adetailer" / "easel-face-mtcnn.safetensors", api_models / "adetailer"))
    try:
        astronaut = Image.open(root / "tests" / "fixtures" / "astronaut.jpg").convert("RGB")
        # a fresh alwayson_scripts: webuiapi fills its mutable default one, so an earlier call's ControlNet units would ride along
        answer = client.img2img(images=[astronaut], prompt="an astronaut", seed=4, denoising_strength=0.2, width=256, height=256, steps=3,
                                alwayson_scripts={}, adetailer=[webuiapi.ADetailer(ad_model="easel-face-mtcnn.safetensors", ad_prompt="a smiling face")])
        text = answer.info["infotexts"][0]
        assert "ADetailer model: easel-face-mtcnn.safetensors" in text and "ADetailer prompt: a smiling face" in text
        assert "ADetailer regions: " in text and "ADetailer version: 25.3.0" in text
    finally:
        path.unlink()
