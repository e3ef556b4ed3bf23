"""A preprocessor with weights through the extension's `/controlnet/detect`: refused naming its file
until the user puts ControlNetHED.pth (here: random weights, saved as the real file is) in
models/ControlNet/annotators, then the soft-edge map."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from modules.controlnet.annotators.files import AnnotatorModels
from modules.controlnet.annotators.hed import ControlNetHED
from modules.controlnet.preprocess import PREPROCESSORS, detect
from tests.api.api_helpers import b64_png, decode


def shapes() -> Image.Image:
    image = Image.new("RGB", (80, 64), (128, 120, 110))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 10, 40, 50), fill="white")
    draw.rectangle((45, 20, 75, 60), fill=(20, 40, 200))
    return image


def test_detect_runs_softedge_hed_with_the_users_file(api):
    client, services = api
    folder = services.paths.models_dir / "ControlNet" / "annotators"
    path = folder / "ControlNetHED.pth"
    body = {"controlnet_module": "softedge_hed", "controlnet_input_images": [b64_png(shapes())], "controlnet_processor_res": 64}
    missing = client.post("/controlnet/detect", json=body)
    assert missing.status_code == 422
    assert "softedge_hed preprocessor needs its weights, ControlNetHED.pth, in models/ControlNet/annotators" in missing.json()["detail"]
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    network = ControlNetHED()
    with torch.no_grad():
        network.norm.fill_(115.0)
    torch.save(network.state_dict(), path)
    try:
        answer = client.post("/controlnet/detect", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["info"] == "Success"
        found = np.asarray(decode(answer.json()["images"][0]).convert("RGB"))
        assert found.shape == (64, 80, 3) and found[..., 0].std() > 5
        expected = detect(PREPROCESSORS["softedge_hed"], shapes(), 64, -1, -1, annotators=AnnotatorModels([folder]))
        assert np.array_equal(found, expected)
        assert not any(title.startswith("ControlNetHED") for title in client.get("/controlnet/model_list").json()["model_list"])
    finally:
        path.unlink(missing_ok=True)
        if created:
            folder.rmdir()
