"""The listing, options, png-info and extras routes, and the A1111 routes Easel answers with empty
lists: each asserted on what it says, not only on its status."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from modules.generation.request import LATENT_UPSCALE_MODES
from modules.sampling.sampler_table import sampler_labels
from modules.sampling.schedules import SCHEDULES
from tests.api.api_helpers import API, TINY, b64_png, decode


def test_samplers_and_schedulers_list_what_requests_accept(api):
    client, _ = api
    samplers = client.get(f"{API}/samplers").json()
    assert [s["name"] for s in samplers] == sampler_labels()
    by_name = {s["name"]: s for s in samplers}
    assert by_name["Euler a"]["aliases"] == ["k_euler_a", "k_euler_ancestral"]
    assert by_name["DPM++ 2M"]["options"] == {"scheduler": "karras"}
    assert by_name["DPM2"]["options"]["discard_next_to_last_sigma"] == "True"
    schedulers = client.get(f"{API}/schedulers").json()
    assert [s["name"] for s in schedulers] == [s.id for s in SCHEDULES]
    karras = next(s for s in schedulers if s["name"] == "karras")
    assert karras == {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0, "need_inner_model": False}
    assert next(s for s in schedulers if s["name"] == "sgm_uniform")["aliases"] == ["SGMUniform"]


def test_upscalers_and_latent_modes(api):
    client, _ = api
    upscalers = client.get(f"{API}/upscalers").json()
    assert [u["name"] for u in upscalers] == ["None", "Lanczos", "Nearest"]
    assert set(upscalers[1]) == {"name", "model_name", "model_path", "model_url", "scale"}
    assert [m["name"] for m in client.get(f"{API}/latent-upscale-modes").json()] == list(LATENT_UPSCALE_MODES)


def test_styles_embeddings_scripts_and_the_empty_lists(api):
    client, _ = api
    styles = client.get(f"{API}/prompt-styles").json()
    assert styles[0] == {"name": "vivid", "prompt": "{prompt}, vivid colours", "negative_prompt": "dull"}
    assert client.get(f"{API}/embeddings").json() == {"loaded": {}, "skipped": {}}
    scripts = client.get(f"{API}/scripts").json()
    assert scripts == {"txt2img": ["prompt matrix", "x/y/z plot"],  # the built-in extensions' scripts
                       "img2img": ["outpainting mk2", "poor man's outpainting", "prompt matrix", "sd upscale", "x/y/z plot"]}
    info = client.get(f"{API}/script-info").json()
    assert [(s["name"], s["is_img2img"]) for s in info] == [
        ("outpainting mk2", True), ("poor man's outpainting", True), ("prompt matrix", False), ("x/y/z plot", False),
        ("prompt matrix", True), ("sd upscale", True), ("x/y/z plot", True)]
    assert client.get(f"{API}/extensions").json() == [
        {"name": name, "remote": "", "branch": "", "commit_hash": "", "version": "1.0", "commit_date": 0, "enabled": True}
        for name in ("prompt-matrix", "sd-upscale", "xyz-plot")]
    for path in ("loras", "hypernetworks", "face-restorers", "realesrgan-models"):
        response = client.get(f"{API}/{path}")
        assert response.status_code == 200 and response.json() == [], path
    for path in ("refresh-embeddings", "refresh-loras", "refresh-checkpoints", "refresh-vae"):
        response = client.post(f"{API}/{path}")
        assert response.status_code == 200 and response.json() is None, path


def test_cmd_flags_and_memory(api, api_models):
    client, _ = api
    flags = client.get(f"{API}/cmd-flags").json()
    assert flags["nowebui"] is True and flags["api"] is True and flags["models_dir"] == str(api_models)
    assert flags["api_auth"] is None and flags["medvram"] is False
    memory = client.get(f"{API}/memory").json()
    assert memory["ram"]["total"] >= memory["ram"]["free"] > 0 and memory["ram"]["used"] > 0
    assert "error" in memory["cuda"] or "system" in memory["cuda"]


def test_options_list_a1111_options_and_validate_them(api):
    client, services = api
    options = client.get(f"{API}/options").json()
    assert options["CLIP_stop_at_last_layers"] == 1 and options["send_seed"] is True and options["samples_format"] == "png"
    assert options["sd_model_checkpoint"].startswith("alpha.safetensors [")
    bad = client.post(f"{API}/options", json={"CLIP_stop_at_last_layers": "two"})
    assert bad.status_code == 400 and "CLIP_stop_at_last_layers" in bad.json()["detail"]
    try:
        assert client.post(f"{API}/options", json={"CLIP_stop_at_last_layers": 2, "unknown_thing": 1}).json() is None
        assert client.get(f"{API}/options").json()["CLIP_stop_at_last_layers"] == 2
        assert json.loads(services.paths.config_file.read_text())["CLIP_stop_at_last_layers"] == 2
        response = client.post(f"{API}/txt2img", json={**TINY, "seed": 1})
        assert "Clip skip: 2" in json.loads(response.json()["info"])["infotexts"][0]
    finally:
        client.post(f"{API}/options", json={"CLIP_stop_at_last_layers": 1})
    schema = client.get("/openapi.json").json()
    assert "CLIP_stop_at_last_layers" in schema["components"]["schemas"]["Options"]["properties"]


def test_png_info_round_trip(api):
    client, _ = api
    made = client.post(f"{API}/txt2img", json={**TINY, "prompt": "a kite", "negative_prompt": "rain", "seed": 31})
    image = made.json()["images"][0]
    answer = client.post(f"{API}/png-info", json={"image": "data:image/png;base64," + image}).json()
    assert answer["info"] == json.loads(made.json()["info"])["infotexts"][0]
    params = answer["parameters"]
    assert params["Prompt"] == "a kite" and params["Negative prompt"] == "rain" and params["Seed"] == "31"
    assert params["Size-1"] == "64" and params["Steps"] == "3" and answer["items"] == {}


def test_png_info_of_other_metadata_and_of_none(api):
    client, _ = api
    info = PngInfo()
    info.add_text("Software", "Paint")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG", pnginfo=info)
    answer = client.post(f"{API}/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()}).json()
    assert answer["info"] == "" and answer["items"] == {"Software": "Paint"} and answer["parameters"]["Prompt"] == ""
    bad = client.post(f"{API}/png-info", json={"image": "bm90IGFuIGltYWdl"})
    assert bad.status_code == 422 and "not an image" in bad.json()["detail"]
    missing = client.post(f"{API}/png-info", json={})
    assert missing.status_code == 422 and "image" in missing.json()["detail"]


def _with_parameters(size: tuple[int, int], text: str) -> str:
    info = PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, "PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def test_extras_single_image_scales_and_keeps_the_parameters(api):
    client, _ = api
    source = _with_parameters((50, 30), "a fox\nSteps: 20, Sampler: Euler, Seed: 1")
    answer = client.post(f"{API}/extra-single-image", json={"image": source, "upscaler_1": "Lanczos", "upscaling_resize": 2})
    assert answer.status_code == 200, answer.text
    image = decode(answer.json()["image"])
    assert image.size == (96, 56)  # 100x60 rounded down to multiples of 8, as A1111
    assert image.info["parameters"].startswith("a fox\nSteps: 20")
    assert image.info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    assert "Postprocess upscaler: Lanczos" in answer.json()["html_info"]
    unchanged = client.post(f"{API}/extra-single-image", json={"image": source, "upscaler_1": "None"})
    assert decode(unchanged.json()["image"]).size == (50, 30)


def test_extras_resize_to_with_crop_and_batch(api):
    client, _ = api
    source = b64_png(Image.new("RGB", (40, 20), (0, 255, 0)))
    to = client.post(f"{API}/extra-single-image", json={"image": source, "upscaler_1": "Nearest", "resize_mode": 1,
                                                         "upscaling_resize_w": 64, "upscaling_resize_h": 64, "upscaling_crop": True})
    assert decode(to.json()["image"]).size == (64, 64)
    batch = client.post(f"{API}/extra-batch-images", json={"imageList": [{"data": source, "name": "a"}, {"data": source, "name": "b"}],
                                                         "upscaler_1": "Lanczos", "upscaling_resize": 1.5})
    assert [decode(i).size for i in batch.json()["images"]] == [(56, 24), (56, 24)]


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        ("extra-single-image", {"image": "", "upscaler_1": "Lanczos"}, 422, ["image is empty"]),
        ("extra-single-image", {"image": "<image>", "upscaler_1": "R-ESRGAN 4x+"}, 404, ["No upscaler named 'R-ESRGAN 4x+' is installed", "models/ESRGAN"]),
        ("extra-single-image", {"image": "<image>", "upscaler_1": "Lanczos", "upscaling_resize": 40}, 422, ["at most 8"]),
        ("extra-batch-images", {"imageList": []}, 422, ["imageList is empty"]),
        ("interrogate", {"image": "<image>", "model": "clip"}, 404, ["no interrogate model"]),
    ],
)
def test_extras_errors(api, path, body, status, words):
    client, _ = api
    body = {k: (b64_png(Image.new("RGB", (16, 16))) if v == "<image>" else v) for k, v in body.items()}
    response = client.post(f"{API}/{path}", json=body)
    assert response.status_code == status, response.text
    for word in words:
        assert word in response.json()["detail"]


def test_progress_is_idle_zero_and_interrupt_skip_answer_json(api):
    client, _ = api
    idle = client.get(f"{API}/progress").json()
    assert idle["progress"] == 0 and idle["eta_relative"] == 0 and idle["current_image"] is None
    assert idle["state"]["job_count"] == 0 and set(idle["state"]) >= {"skipped", "interrupted", "job", "job_no", "sampling_step", "sampling_steps"}
    assert client.post(f"{API}/interrupt").json() == {}
    skip = client.post(f"{API}/skip")
    assert skip.status_code == 200 and skip.json() is None


def test_every_route_is_in_the_openapi_schema(api):
    client, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    wanted = {
        "txt2img", "img2img", "png-info", "progress", "interrupt", "skip", "options", "sd-models", "sd-vae", "samplers",
        "schedulers", "upscalers", "latent-upscale-modes", "prompt-styles", "embeddings", "loras", "scripts", "script-info",
        "cmd-flags", "memory", "refresh-checkpoints", "refresh-vae", "unload-checkpoint", "reload-checkpoint",
        "extra-single-image", "extra-batch-images", "face-restorers", "hypernetworks", "realesrgan-models",
    }
    assert {f"{API}/{name}" for name in wanted} <= set(paths)
    txt2img = paths[f"{API}/txt2img"]["post"]
    assert txt2img["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("Txt2ImgRequest")


def test_unknown_paths_and_methods_answer_a1111_json(api):
    client, _ = api
    missing = client.get(f"{API}/no-such-route")
    assert missing.status_code == 404 and missing.json()["error"] == "HTTPException"
    assert "There is no API route /sdapi/v1/no-such-route" in missing.json()["detail"]
    wrong = client.get(f"{API}/txt2img")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST" and "use POST" in wrong.json()["detail"]


def test_docs_page_works_offline_from_local_swagger_files(api):
    """/docs must not point at a CDN (offline machines would get a blank page): its script and
    style are served from the installed swagger-ui-bundle."""
    client, _ = api
    page = client.get("/docs")
    assert page.status_code == 200 and "http" not in page.text  # no outside address at all
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs-assets/{asset}" in page.text
        served = client.get(f"/docs-assets/{asset}")
        assert served.status_code == 200 and len(served.content) > 100_000
    assert "/openapi.json" in page.text and "/docs" not in client.get("/openapi.json").json()["paths"]
