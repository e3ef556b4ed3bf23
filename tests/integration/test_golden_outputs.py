"""A fixed set of API requests and the UI's component surface, recorded once and compared on every
run: a reshaping of the code must not change what users and clients get.

Recorded in tests/fixtures/golden/ (regenerate with EASEL_UPDATE_GOLDEN=1 after a deliberate change,
and say why in the commit): every answer's JSON (info, parameters, png-info) and infotexts exactly;
every picture as a PNG, compared pixel by pixel. The models run in float32 so the verdict does not
depend on the CPU's bf16 support; pixels may differ by 2 levels at most (float32 sums are ordered
differently by different CPUs' kernels), anything more is a change in behaviour.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
UPDATE = os.environ.get("EASEL_UPDATE_GOLDEN") == "1"
PIXEL_LEVELS = 2
API = "/sdapi/v1"
VOLATILE_INFO = {"job_timestamp", "task_id"}  # the time of the run, the job's random id


def picture() -> Image.Image:
    image = Image.new("RGB", (64, 64), (30, 90, 200))
    ImageDraw.Draw(image).ellipse((16, 16, 48, 48), fill=(240, 200, 20))
    return image


def mask() -> Image.Image:
    image = Image.new("L", (64, 64), 0)
    image.paste(255, (16, 16, 48, 48))
    return image


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


TINY = {"width": 64, "height": 64, "steps": 4, "seed": 1234, "subseed": 5, "prompt": "a red circle", "negative_prompt": "blurry"}
REQUESTS: dict[str, tuple[str, dict]] = {
    "txt2img": ("txt2img", {**TINY, "sampler_name": "Euler a"}),
    "txt2img-karras-batch": ("txt2img", {**TINY, "sampler_name": "DPM++ 2M", "scheduler": "Karras", "batch_size": 2, "cfg_scale": 5.5,
                                         "subseed": 7, "subseed_strength": 0.3, "styles": ["vivid"]}),
    "txt2img-hires": ("txt2img", {**TINY, "sampler_name": "Euler", "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Lanczos",
                                  "hr_second_pass_steps": 2, "denoising_strength": 0.5}),
    "txt2img-clip-skip-infotext": ("txt2img", {"subseed": 5, "infotext": "a blue square\nSteps: 3, Sampler: Heun, CFG scale: 4, Seed: 99, "
                                                           "Size: 64x64, Clip skip: 2"}),
    "img2img": ("img2img", {**TINY, "sampler_name": "Euler", "init_images": "picture", "denoising_strength": 0.6}),
    "inpaint": ("img2img", {**TINY, "sampler_name": "DDIM", "init_images": "picture", "mask": "mask", "inpainting_fill": 1,
                            "inpaint_full_res": True, "inpaint_full_res_padding": 8, "mask_blur": 2}),
    "outpaint": ("img2img", {**TINY, "sampler_name": "Euler", "init_images": "picture", "script_name": "Outpainting mk2",
                             "script_args": ["", 16, 8, ["right"], 1.0, 0.05]}),
    "xyz": ("txt2img", {**TINY, "sampler_name": "Euler", "script_name": "x/y/z plot",
                        "script_args": ["Steps", "3, 4", "CFG Scale", "3, 6", "Nothing", "", True, True, False]}),
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from modules.cmd_args import parse_args
    from modules.services import build_services
    from tools.make_test_models import write_test_checkpoint
    from webui import create_app

    root = tmp_path_factory.mktemp("golden")
    models = root / "models"
    write_test_checkpoint(models / "Stable-diffusion" / "golden.safetensors", "sd1", "tiny", seed=11)
    data = root / "data"
    data.mkdir()
    (data / "styles.csv").write_text('name,prompt,negative_prompt\nvivid,"{prompt}, vivid colours",dull\n')
    args = parse_args(["--nowebui", "--models-dir", str(models), "--data-dir", str(data), "--device", "cpu", "--dtype", "fp32",
                       "--no-demo-model", "--extensions-dir", str(Path(__file__).resolve().parents[2] / "extensions")])
    services = build_services(args)
    client = TestClient(create_app(services, args), raise_server_exceptions=False)
    with client:
        yield client, services
    services.close()


def _body(fields: dict) -> dict:
    images = {"picture": picture, "mask": mask}
    body = dict(fields)
    if body.get("init_images") == "picture":
        body["init_images"] = [b64(picture())]
    if body.get("mask") in images:
        body["mask"] = b64(images[body["mask"]]())
    return body


def _differences(got, want, where: str = "") -> list[str]:
    """Where two JSON values differ, as paths (for a readable failure)."""
    if isinstance(got, dict) and isinstance(want, dict):
        return [d for key in sorted(set(got) | set(want)) for d in _differences(got.get(key), want.get(key), f"{where}.{key}")]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


def _pixels(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"), dtype=np.int16)


def _record(name: str, answer: dict) -> dict:
    """The answer as compared: info and parameters as JSON (minus the run's time), pictures apart."""
    info = json.loads(answer["info"])
    for key in VOLATILE_INFO:
        info.pop(key, None)
    parameters = {key: value for key, value in answer["parameters"].items() if key not in ("init_images", "mask")}
    return {"info": info, "parameters": parameters, "images": len(answer["images"])}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_api_answers_are_unchanged(app, name):
    client, _ = app
    route, fields = REQUESTS[name]
    response = client.post(f"{API}/{route}", json=_body(fields))
    assert response.status_code == 200, response.text
    answer = response.json()
    recorded = _record(name, answer)
    png_info = client.post(f"{API}/png-info", json={"image": answer["images"][-1]}).json()
    recorded["png_info"] = png_info
    expected_path = GOLDEN / f"{name}.json"
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        expected_path.write_text(json.dumps(recorded, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        for index, data in enumerate(answer["images"]):
            (GOLDEN / f"{name}-{index}.png").write_bytes(base64.b64decode(data))
    expected = json.loads(expected_path.read_text())
    recorded = json.loads(json.dumps(recorded))  # as stored: tuples are lists
    for part in expected:
        assert recorded[part] == expected[part], (part, _differences(recorded[part], expected[part]))
    for index, data in enumerate(answer["images"]):
        want = np.asarray(Image.open(GOLDEN / f"{name}-{index}.png").convert("RGB"), dtype=np.int16)
        got = _pixels(data)
        assert got.shape == want.shape, (name, index)
        assert np.abs(got - want).max() <= PIXEL_LEVELS, (name, index, int(np.abs(got - want).max()))


def test_the_ui_surface_is_unchanged(app):
    """Every component with an elem id in the page: its type, label and choices (what a user sees)."""
    from gradio.i18n import I18nData

    from modules.ui.app import build_ui

    def english(value):  # a translated text as the English the code wrote
        if isinstance(value, I18nData):
            return value.key
        if isinstance(value, str) and value.startswith("__i18n__"):  # a button's value, as Gradio stores it
            return json.loads(value.removeprefix("__i18n__"))["key"]
        if isinstance(value, (list, tuple)):
            return [english(item) for item in value]
        return value

    _, services = app
    blocks = build_ui(services)
    surface = []
    for block in blocks.blocks.values():
        elem_id = getattr(block, "elem_id", None)
        if not elem_id:
            continue
        choices = getattr(block, "choices", None)
        text = block.value if type(block).__name__ == "Button" else None  # a button's label is its value
        surface.append({"id": elem_id, "type": type(block).__name__, "label": english(getattr(block, "label", None) or text),
                        "choices": english(choices) if choices else None})
    surface.sort(key=lambda item: item["id"])
    path = GOLDEN / "ui-surface.json"
    if UPDATE:
        path.write_text(json.dumps(surface, indent=1, ensure_ascii=False) + "\n")
    assert surface == json.loads(path.read_text())
