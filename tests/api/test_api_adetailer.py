"""The detailer through A1111's API as ADetailer's clients use it: its routes, tabs in
`alwayson_scripts.ADetailer`, a face found and repainted with everything outside its padded region
untouched, a picture where nothing is found returned unchanged with "0 regions", and bad tabs
answered with a sentence naming the tab and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.api.api_helpers import API, b64_png, decode

ROOT = Path(__file__).resolve().parents[2]
FACE_MODEL = "easel-face-mtcnn.safetensors"
ASTRONAUT = ROOT / "tests" / "fixtures" / "astronaut.jpg"
FACE_BOX = (91.34, 31.89, 134.51, 87.44)  # tests/unit/test_detailer_faces.py
BASE = {"prompt": "a face", "width": 64, "height": 64, "steps": 4, "seed": 11, "cfg_scale": 5, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def detectors(api):
    _, services = api
    folder = services.paths.models_dir / "adetailer"
    folder.mkdir(exist_ok=True)
    copied = folder / FACE_MODEL
    shutil.copy(ROOT / "models" / "adetailer" / FACE_MODEL, copied)
    yield folder
    copied.unlink(missing_ok=True)


def tab(**fields) -> dict:
    return {"ad_model": FACE_MODEL, **fields}


def infotext_of(response) -> str:
    assert response.status_code == 200, response.text
    return json.loads(response.json()["info"])["infotexts"][0]


def test_the_routes_answer_as_adetailer(api, detectors):
    client, _ = api
    assert client.get("/adetailer/v1/version").json() == {"version": "25.3.0"}
    assert FACE_MODEL in client.get("/adetailer/v1/ad_model").json()["ad_model"]
    schema = client.get("/adetailer/v1/schema").json()
    assert schema["properties"]["ad_confidence"]["default"] == 0.3 and "ad_mask_k" in schema["properties"]


def test_a_face_is_repainted_and_nothing_outside_its_region_changes(api, detectors):
    """img2img with ADetailer's skip_img2img: the astronaut as given, then the face tab at 0.9."""
    client, _ = api
    astronaut = Image.open(ASTRONAUT).convert("RGB")
    body = {**BASE, "width": 256, "height": 256, "init_images": [b64_png(astronaut)], "denoising_strength": 0.75,
            "alwayson_scripts": {"ADetailer": {"args": [True, True, tab(ad_prompt="a green face", ad_denoising_strength=0.9)]}}}
    answer = client.post(f"{API}/img2img", json=body)
    text = infotext_of(answer)
    assert "ADetailer model: easel-face-mtcnn.safetensors" in text and "ADetailer version: 25.3.0" in text
    assert "ADetailer regions: 1" in text and "ADetailer prompt: a green face" in text
    out = np.asarray(decode(answer.json()["images"][0]).convert("RGB")).astype(int)
    source = np.asarray(astronaut).astype(int)
    x1, y1, x2, y2 = FACE_BOX
    reach = 4 + 4 * 2 + 2  # dilate 4, mask blur 4 (its kernel reaches about twice the radius), rounding
    outside = np.ones(out.shape[:2], bool)
    outside[max(int(y1) - reach, 0):int(y2) + reach + 1, max(int(x1) - reach, 0):int(x2) + reach + 1] = False
    assert np.array_equal(out[outside], source[outside])
    inside = out[int(y1) + 8:int(y2) - 8, int(x1) + 8:int(x2) - 8]
    assert np.abs(inside - source[int(y1) + 8:int(y2) - 8, int(x1) + 8:int(x2) - 8]).mean() > 10


def test_a_picture_where_nothing_is_found_comes_back_unchanged(api, detectors):
    client, _ = api
    plain = client.post(f"{API}/txt2img", json=BASE)
    detailed = client.post(f"{API}/txt2img", json={**BASE, "alwayson_scripts": {"adetailer": {"args": [tab()]}}})
    assert np.array_equal(np.asarray(decode(detailed.json()["images"][0])), np.asarray(decode(plain.json()["images"][0])))
    info = json.loads(detailed.json()["info"])
    assert "ADetailer regions: 0" in info["infotexts"][0]
    assert any("nothing found" in note for note in info["notes"])


def test_adetailer_off_or_without_a_model_does_nothing(api, detectors):
    client, _ = api
    plain = infotext_of(client.post(f"{API}/txt2img", json=BASE))
    for args in ([False, tab()], [tab(ad_model="None")], [tab(ad_tab_enable=False)], []):
        text = infotext_of(client.post(f"{API}/txt2img", json={**BASE, "alwayson_scripts": {"ADetailer": {"args": args}}}))
        assert "ADetailer" not in text and text == plain


@pytest.mark.parametrize("args, status, words", [
    ([tab(ad_model="face_yolov9z.pt")], 404, "no detector named 'face_yolov9z.pt'"),
    ([tab(ad_model="mediapipe_face_full")], 422, "mediapipe"),
    ([tab(ad_confidence=2)], 422, "ad_confidence"),
    ([tab(ad_denoising_strenght=0.5)], 422, "ad_denoising_strenght"),
    ([tab(), tab(ad_mask_merge_invert="Sideways")], 422, "ad_mask_merge_invert"),
    ([tab(ad_use_checkpoint=True, ad_checkpoint="other.safetensors")], 422, "ad_checkpoint"),
])
def test_bad_tabs_are_answered_with_a_sentence_and_the_queue_goes_on(api, detectors, args, status, words):
    client, _ = api
    answer = client.post(f"{API}/txt2img", json={**BASE, "alwayson_scripts": {"ADetailer": {"args": args}}})
    assert answer.status_code == status, answer.text
    assert words in answer.json()["detail"]
    assert client.post(f"{API}/txt2img", json=BASE).status_code == 200


def test_an_infotext_with_adetailer_keys_rebuilds_the_tabs(api, detectors):
    client, _ = api
    infotext = ("a face\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 11, Size: 64x64, ADetailer model: easel-face-mtcnn.safetensors, "
                "ADetailer confidence: 0.5, ADetailer dilate erode: 8, ADetailer mask blur: 4, ADetailer denoising strength: 0.3, "
                "ADetailer inpaint only masked: True, ADetailer inpaint padding: 32, ADetailer version: 25.3.0")
    text = infotext_of(client.post(f"{API}/txt2img", json={"infotext": infotext}))
    assert "ADetailer model: easel-face-mtcnn.safetensors" in text and "ADetailer confidence: 0.5" in text
    assert "ADetailer dilate erode: 8" in text and "ADetailer denoising strength: 0.3" in text


@pytest.mark.parametrize("fields, words", [
    ({"ad_mask_min_ratio": 0.8, "ad_mask_max_ratio": 0.2}, "ad_mask_min_ratio 0.8 is above ad_mask_max_ratio 0.2"),
    ({"ad_use_inpaint_width_height": True, "ad_inpaint_width": 100000}, "ad_inpaint_width/ad_inpaint_height: width must be between"),
    ({"ad_use_inpaint_width_height": True, "ad_inpaint_width": 100}, "width 100 is not a multiple of 8"),
])
def test_conflicting_tab_settings_are_refused_before_the_job_runs(api, detectors, fields, words):
    client, _ = api
    answer = client.post(f"{API}/txt2img", json={**BASE, "alwayson_scripts": {"ADetailer": {"args": [tab(**fields)]}}})
    assert answer.status_code == 422 and "ADetailer tab 1: " in answer.json()["detail"] and words in answer.json()["detail"], answer.text


def test_whole_picture_inpainting_keeps_the_pictures_size(api, detectors):
    """"Inpaint only masked" off: the region pass runs on the whole 248x248 picture (a 250x250 upload
    fitted to the request's size by skip img2img) and the picture comes back at that size."""
    client, _ = api
    astronaut = Image.open(ASTRONAUT).convert("RGB").resize((250, 250))
    body = {**BASE, "width": 248, "height": 248, "init_images": [b64_png(astronaut)],
            "alwayson_scripts": {"ADetailer": {"args": [True, True, tab(ad_inpaint_only_masked=False)]}}}
    answer = client.post(f"{API}/img2img", json=body)
    assert answer.status_code == 200, answer.text
    assert decode(answer.json()["images"][0]).size == (248, 248)


def test_hundreds_of_regions_are_capped_with_a_notice(api, detectors):
    """36 small circles (the shipped shape detector finds more than 32): the first 32 are repainted
    and the job's notes say how many were found."""
    from PIL import ImageDraw

    client, _ = api
    shutil.copy(ROOT / "models" / "adetailer" / "easel-demo-shapes.safetensors", detectors / "easel-demo-shapes.safetensors")
    try:
        picture = Image.new("RGB", (256, 256), "white")
        pen = ImageDraw.Draw(picture)
        for i in range(6):
            for j in range(6):
                x, y = 21 + 42 * i, 21 + 42 * j
                pen.ellipse((x - 14, y - 14, x + 14, y + 14), fill=(220, 30, 30))
        shapes = tab(ad_model="easel-demo-shapes.safetensors", ad_use_inpaint_width_height=True, ad_inpaint_width=64, ad_inpaint_height=64)
        body = {**BASE, "width": 256, "height": 256, "steps": 2, "init_images": [b64_png(picture)],
                "alwayson_scripts": {"ADetailer": {"args": [True, True, shapes]}}}
        answer = client.post(f"{API}/img2img", json=body)
        info = json.loads(answer.json()["info"])
        assert "ADetailer regions: 32" in info["infotexts"][0]
        assert any("regions found; only the first 32 were repainted" in note for note in info["notes"]), info["notes"]
    finally:
        (detectors / "easel-demo-shapes.safetensors").unlink(missing_ok=True)
