"""Helpers of the API tests: images to and from base64, the info JSON, infotext fields."""

from __future__ import annotations

import base64
import io
import json

from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

API = "/sdapi/v1"
STYLES_CSV = 'name,prompt,negative_prompt\nvivid,"{prompt}, vivid colours",dull\nplain,plain style,\n'

TINY = {"width": 64, "height": 64, "steps": 3}
# Every key of A1111 1.10.1's Processed.js(): strict clients read them all.
INFO_KEYS = {
    "prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed", "all_subseeds",
    "subseed_strength", "width", "height", "sampler_name", "cfg_scale", "steps", "batch_size", "restore_faces",
    "face_restoration_model", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash", "seed_resize_from_w",
    "seed_resize_from_h", "denoising_strength", "extra_generation_params", "index_of_first_image", "infotexts", "styles",
    "job_timestamp", "clip_skip", "is_using_inpainting_conditioning", "version",
}


def b64_png(image: Image.Image, data_uri: bool = False) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    text = base64.b64encode(buffer.getvalue()).decode()
    return "data:image/png;base64," + text if data_uri else text


def decode(text: str) -> Image.Image:
    assert not text.startswith("data:"), "images must come back as bare base64"
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def info_of(response) -> dict:
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert INFO_KEYS <= set(info), INFO_KEYS - set(info)
    return info


def infotext_params(text: str) -> dict[str, str]:
    from modules.infotext.parse import parse_infotext

    return parse_infotext(text)


def make_client(models: Path, data_dir: Path, *flags: str) -> tuple[TestClient, object]:
    from modules.services import build_services
    from modules.cmd_args import parse_args
    from webui import create_app

    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "styles.csv").write_text(STYLES_CSV)
    args = parse_args(["--nowebui", "--models-dir", str(models), "--data-dir", str(data_dir), "--device", "cpu",
                       "--ckpt", str(models / "Stable-diffusion" / "alpha.safetensors"), *flags])
    services = build_services(args)
    return TestClient(create_app(services, args), raise_server_exceptions=False), services
