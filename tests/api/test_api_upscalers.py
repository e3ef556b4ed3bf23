"""Model upscalers through A1111's API: the lists, Extras, hires fix named by an infotext, SD
upscale (A1111's own test), and bad input answered with a sentence while the server goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests import upscaler_models as models
from tests.api.api_helpers import API, b64_png, decode

ULTRASHARP = "4x-UltraSharp"
# What an A1111 user's picture says (the checkpoint is given by the request: it is not here).
REAL_INFOTEXT = ("masterpiece, a lighthouse on a cliff at dusk\nNegative prompt: lowres, blurry\n"
                 "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
                 "Denoising strength: 0.45, Hires upscale: 2, Hires steps: 10, Hires upscaler: 4x-UltraSharp, Version: v1.10.1")


@pytest.fixture()
def installed(api):
    """models/ESRGAN/4x-UltraSharp.pth (a tiny 4x ESRGAN, old keys, as the real file), a 2x Compact
    and a Real-ESRGAN file; removed afterwards (the folders are read on every call)."""
    _, services = api
    root = services.paths.models_dir
    paths = [
        models.write(root / "ESRGAN" / f"{ULTRASHARP}.pth", models.esrgan(4, seed=1)),
        models.write(root / "ESRGAN" / "compact-2x.safetensors", models.compact(2, seed=2)),
        models.write(root / "RealESRGAN" / "RealESRGAN_x4plus.pth", models.to_rrdbnet_keys(models.esrgan(4)), "params_ema"),
    ]
    yield root
    for path in paths:
        path.unlink(missing_ok=True)
    for folder in ("ESRGAN", "RealESRGAN"):
        shutil.rmtree(root / folder, ignore_errors=True)


def source_png(size=(48, 32), parameters: str | None = "a fox\nSteps: 20, Sampler: Euler, Seed: 1") -> str:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    info = PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    import base64
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_lists_show_what_is_installed(api, installed):
    client, _ = api
    upscalers = client.get(f"{API}/upscalers").json()
    names = [item["name"] for item in upscalers]
    assert names == ["None", "Lanczos", "Nearest", ULTRASHARP, "compact-2x", "R-ESRGAN 4x+"]
    by_name = {item["name"]: item for item in upscalers}
    assert by_name[ULTRASHARP]["model_path"] == str(installed / "ESRGAN" / f"{ULTRASHARP}.pth") and by_name["compact-2x"]["scale"] == 2.0
    assert client.get(f"{API}/realesrgan-models").json() == [
        {"name": "R-ESRGAN 4x+", "path": str(installed / "RealESRGAN" / "RealESRGAN_x4plus.pth"), "scale": 4}]
    assert [m["name"] for m in client.get(f"{API}/latent-upscale-modes").json()][0] == "Latent"


def test_extras_with_a_model_keeps_the_parameters_and_says_what_it_did(api, installed):
    client, _ = api
    answer = client.post(f"{API}/extra-single-image", json={"image": source_png(), "upscaler_1": ULTRASHARP, "upscaling_resize": 2,
                                                            "upscaler_2": "compact-2x", "extras_upscaler_2_visibility": 0.5})
    assert answer.status_code == 200, answer.text
    image = decode(answer.json()["image"])
    assert image.size == (96, 64) and image.mode == "RGB"
    assert image.info["parameters"].startswith("a fox\nSteps: 20")
    assert image.info["postprocessing"] == f"Postprocess upscale by: 2, Postprocess upscaler: {ULTRASHARP}, Postprocess upscaler 2: compact-2x"
    info = client.post(f"{API}/png-info", json={"image": answer.json()["image"]}).json()
    assert info["parameters"]["Prompt"] == "a fox" and info["items"]["postprocessing"].startswith("Postprocess upscale by: 2")
    lanczos = decode(client.post(f"{API}/extra-single-image", json={"image": source_png(), "upscaler_1": "Lanczos", "upscaling_resize": 2}).json()["image"])
    assert not np.array_equal(np.asarray(image), np.asarray(lanczos))  # the model ran, not a resize


def test_extras_batch_and_real_esrgan_by_its_a1111_name(api, installed):
    client, _ = api
    batch = client.post(f"{API}/extra-batch-images", json={
        "imageList": [{"data": source_png((16, 16)), "name": "a"}, {"data": source_png((24, 16), None), "name": "b"}],
        "upscaler_1": "R-ESRGAN 4x+", "upscaling_resize": 4})
    assert batch.status_code == 200, batch.text
    images = [decode(item) for item in batch.json()["images"]]
    assert [i.size for i in images] == [(64, 64), (96, 64)] and "Postprocess upscaler: R-ESRGAN 4x+" in batch.json()["html_info"]
    assert "parameters" in images[0].info and "parameters" not in images[1].info


@pytest.mark.parametrize("body, status, words", [
    ({"upscaler_1": "Lanczos", "upscaling_resize": 0}, 422, ["more than 0 and at most 8, not 0"]),
    ({"upscaler_1": "Lanczos", "upscaling_resize": 100}, 422, ["at most 8, not 100"]),
    ({"upscaler_1": "4x-NoSuch"}, 404, ["No upscaler named '4x-NoSuch' is installed", ULTRASHARP]),
    ({"upscaler_1": "Lanczos", "upscaler_2": "Nope", "extras_upscaler_2_visibility": 0.5}, 404, ["'Nope'"]),
    ({"upscaler_1": "Lanczos", "extras_upscaler_2_visibility": 2}, 422, ["between 0 and 1, not 2"]),
    ({"upscaler_1": "Lanczos", "gfpgan_visibility": 0.5}, 422, ["gfpgan_visibility", "no face restoration"]),
    ({"upscaler_1": "Lanczos", "resize_mode": 1, "upscaling_resize_w": 4, "upscaling_resize_h": 4}, 422, ["at least 8x8"]),
])
def test_bad_extras_settings_are_a_sentence(api, installed, body, status, words):
    client, _ = api
    answer = client.post(f"{API}/extra-single-image", json={"image": source_png(), **body})
    assert answer.status_code == status, answer.text
    for word in words:
        assert word in answer.json()["detail"]


def test_bad_pictures_and_broken_models_leave_the_server_serving(api, installed):
    client, _ = api
    (installed / "ESRGAN" / "broken.pth").write_bytes((installed / "ESRGAN" / f"{ULTRASHARP}.pth").read_bytes()[:5000])
    broken = client.post(f"{API}/extra-single-image", json={"image": source_png(), "upscaler_1": "broken"})
    assert broken.status_code == 400 and "broken.pth" in broken.json()["detail"] and "truncated" in broken.json()["detail"]
    tiny = client.post(f"{API}/extra-single-image", json={"image": b64_png(Image.new("RGB", (1, 1))), "upscaler_1": ULTRASHARP, "upscaling_resize": 2})
    assert tiny.status_code == 422 and "less than 8 pixels" in tiny.json()["detail"]
    huge = Image.new("RGB", (20000, 20000))
    import base64
    import io

    buffer = io.BytesIO()
    huge.save(buffer, "PNG", optimize=False, compress_level=1)
    enormous = client.post(f"{API}/extra-single-image", json={"image": base64.b64encode(buffer.getvalue()).decode(), "upscaler_1": "Lanczos"})
    assert enormous.status_code == 422 and "megapixels" in enormous.json()["detail"]
    fine = client.post(f"{API}/extra-single-image", json={"image": source_png(), "upscaler_1": "compact-2x", "upscaling_resize": 2})
    assert fine.status_code == 200 and decode(fine.json()["image"]).size == (96, 64)


def test_an_infotext_naming_an_installed_upscaler_runs_hires_with_that_file(api, installed):
    client, services = api
    body = {"infotext": REAL_INFOTEXT, "enable_hr": True, "width": 64, "height": 64, "steps": 2, "hr_second_pass_steps": 1,
            "override_settings": {"sd_model_checkpoint": "alpha"}}
    answer = client.post(f"{API}/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    info = json.loads(answer.json()["info"])
    assert f"Hires upscaler: {ULTRASHARP}" in info["infotexts"][0] and "Hires upscale: 2" in info["infotexts"][0]
    assert decode(answer.json()["images"][0]).size == (128, 128)
    assert installed / "ESRGAN" / f"{ULTRASHARP}.pth" in services.upscalers.loaded()
    lanczos = client.post(f"{API}/txt2img", json={**body, "hr_upscaler": "Lanczos"})
    assert "Hires upscaler: Lanczos" in json.loads(lanczos.json()["info"])["infotexts"][0]
    assert not np.array_equal(np.asarray(decode(answer.json()["images"][0])), np.asarray(decode(lanczos.json()["images"][0])))


def test_an_infotext_naming_a_missing_upscaler_says_so(api):
    client, _ = api
    answer = client.post(f"{API}/txt2img", json={"infotext": REAL_INFOTEXT, "enable_hr": True, "width": 64, "height": 64, "steps": 2,
                                                 "override_settings": {"sd_model_checkpoint": "alpha"}})
    assert answer.status_code == 422 and "Hires upscaler: 4x-UltraSharp" in answer.json()["detail"]
    named = client.post(f"{API}/txt2img", json={"enable_hr": True, "hr_upscaler": ULTRASHARP, "width": 64, "height": 64, "steps": 2})
    assert named.status_code == 404 and f"No upscaler named '{ULTRASHARP}' is installed" in named.json()["detail"]


def a1111_img2img_request(image: str) -> dict:
    """A1111's test/test_img2img.py `simple_img2img_request`, as it is."""
    return {
        "batch_size": 1, "cfg_scale": 7, "denoising_strength": 0.75, "eta": 0, "height": 64, "include_init_images": False,
        "init_images": [image], "inpaint_full_res": False, "inpaint_full_res_padding": 0, "inpainting_fill": 0,
        "inpainting_mask_invert": False, "mask": None, "mask_blur": 4, "n_iter": 1, "negative_prompt": "", "override_settings": {},
        "prompt": "example prompt", "resize_mode": 0, "restore_faces": False, "s_churn": 0, "s_noise": 1, "s_tmax": 0, "s_tmin": 0,
        "sampler_index": "Euler a", "seed": -1, "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3, "styles": [],
        "subseed": -1, "subseed_strength": 0, "tiling": False, "width": 64,
    }


def test_a1111_img2img_sd_upscale_performed(api):
    """A1111's `test_img2img_sd_upscale_performed`, plus what its 200 stands for."""
    client, _ = api
    request = a1111_img2img_request(source_png((96, 80)))
    request["script_name"] = "sd upscale"
    request["script_args"] = ["", 8, "Lanczos", 2.0]
    answer = client.post(f"{API}/img2img", json=request)
    assert answer.status_code == 200, answer.text
    image = decode(answer.json()["images"][0])
    assert image.size == (192, 160)
    infotext = json.loads(answer.json()["info"])["infotexts"][0]
    assert "SD upscale overlap: 8" in infotext and "SD upscale upscaler: Lanczos" in infotext


def test_sd_upscale_takes_an_upscaler_by_index_and_model(api, installed):
    client, _ = api
    request = a1111_img2img_request(source_png((48, 40)))
    names = [item["name"] for item in client.get(f"{API}/upscalers").json()]
    request.update(script_name="sd upscale", script_args=["", 16, names.index("compact-2x"), 2.0], seed=7)
    answer = client.post(f"{API}/img2img", json=request)
    assert answer.status_code == 200, answer.text
    assert decode(answer.json()["images"][0]).size == (96, 80)
    assert "SD upscale upscaler: compact-2x" in json.loads(answer.json()["info"])["infotexts"][0]
    request["script_args"] = ["", 16, "no-such-upscaler", 2.0]
    missing = client.post(f"{API}/img2img", json=request)
    assert missing.status_code in (400, 404) and "no-such-upscaler" in missing.json()["detail"]
    request["script_args"] = ["", 80, "Lanczos", 2.0]
    overlap = client.post(f"{API}/img2img", json=request)
    assert overlap.status_code == 400 and "overlap" in overlap.json()["detail"]


def test_script_info_lists_the_installed_upscalers_for_sd_upscale(api, installed):
    client, _ = api
    info = next(s for s in client.get(f"{API}/script-info").json() if s["name"] == "sd upscale")
    assert info["is_img2img"] and [a["label"] for a in info["args"]] == [None, "Tile overlap", "Upscaler", "Scale Factor"]
    assert ULTRASHARP in info["args"][2]["choices"] and info["args"][1]["value"] == 64


def test_face_restoration_is_refused_by_name_not_ignored(api):
    client, _ = api
    answer = client.post(f"{API}/txt2img", json={"prompt": "a face", "width": 64, "height": 64, "steps": 2, "restore_faces": True})
    assert answer.status_code == 422 and "restore_faces" in answer.json()["detail"] and "send false" in answer.json()["detail"]
    assert client.post(f"{API}/txt2img", json={"prompt": "a face", "width": 64, "height": 64, "steps": 2, "restore_faces": False}).status_code == 200
    assert client.get(f"{API}/face-restorers").json() == []
