"""SDXL ControlNets through A1111's API, in diffusers layout as users download them (the
`diffusion_pytorch_model.safetensors` of controlnet-canny-sdxl-1.0, renamed): a tiny one made from
the tiny SDXL checkpoint's UNet (with its size and pooled-text embeddings) changes the picture,
weight 0 changes nothing, the infotext line is written, the soft control mode is not Balanced; and
a ControlNet of the other family (SD1 on SDXL, SDXL on SD1) is a 422 naming the unit and both text
widths, after which the queue goes on.

The app is this module's own (an SD1 and an SDXL checkpoint), so the shared app's checkpoint and
ControlNet lists stay as the other modules expect them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.api.api_helpers import API, b64_png, decode, make_client
from tests.controlnet_models import tiny_controlnet, write_controlnet

BASE = {"prompt": "a shape", "width": 64, "height": 64, "steps": 4, "seed": 11, "cfg_scale": 5, "sampler_name": "Euler"}
SD1, SDXL = "alpha", "xl"
SD1_WIDTH, SDXL_WIDTH = 32, 64  # the tiny checkpoints' text encoder widths (SDXL: two encoders of 32, concatenated)


def circle(size=(64, 64), box=(16, 16, 48, 48)) -> Image.Image:
    image = Image.new("RGB", size, "black")
    ImageDraw.Draw(image).ellipse(box, fill="white")
    return image


@pytest.fixture(scope="module")
def xl_api(api_models, tmp_path_factory):
    """(client, services) of an app with alpha (SD1) and xl (SDXL base) and, in models/ControlNet,
    xl-cn.safetensors (made for xl's UNet) and sd1-cn.safetensors (made for alpha's), both in
    diffusers layout; xl is loaded."""
    from tools.make_test_models import write_test_checkpoint

    root = tmp_path_factory.mktemp("xl-models")
    (root / "Stable-diffusion").mkdir()
    shutil.copy(api_models / "Stable-diffusion" / "alpha.safetensors", root / "Stable-diffusion" / "alpha.safetensors")
    write_test_checkpoint(root / "Stable-diffusion" / f"{SDXL}.safetensors", "sdxl-base", seed=4)
    client, services = make_client(root, tmp_path_factory.mktemp("xl-data"))
    with client:
        sd1_unet = services.manager.loaded.unet
        write_controlnet(root / "ControlNet" / "sd1-cn.safetensors", tiny_controlnet(sd1_unet, seed=5, scale=0.5), dict(sd1_unet.config))
        use(client, SDXL)
        xl_unet = services.manager.loaded.unet
        network = tiny_controlnet(xl_unet, seed=6, scale=0.5)
        assert (network.config.addition_embed_type, network.config.addition_time_embed_dim, network.config.projection_class_embeddings_input_dim) == (
            "text_time", xl_unet.config.addition_time_embed_dim, xl_unet.config.projection_class_embeddings_input_dim)
        write_controlnet(root / "ControlNet" / "xl-cn.safetensors", network, dict(xl_unet.config))
        yield client, services
    services.close()


def use(client, checkpoint: str) -> None:
    answer = client.post(f"{API}/options", json={"sd_model_checkpoint": checkpoint})
    assert answer.status_code == 200, answer.text


def unit(**fields) -> dict:
    return {"image": b64_png(circle()), "module": "none", "model": "xl-cn", **fields}


def run(client, units, **fields):
    return client.post(f"{API}/txt2img", json={**BASE, **fields, "alwayson_scripts": {"ControlNet": {"args": units}}})


def pixels(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(decode(response.json()["images"][0])).astype(int)


def test_an_sdxl_controlnet_changes_the_picture_and_writes_the_infotext(xl_api):
    client, services = xl_api
    use(client, SDXL)
    assert services.manager.loaded.spec.family.name == "sdxl-base"
    plain = client.post(f"{API}/txt2img", json=BASE)
    controlled = run(client, [unit()])
    assert np.abs(pixels(plain) - pixels(controlled)).mean() > 1
    title = [t for t in client.get("/controlnet/model_list").json()["model_list"] if t.startswith("xl-cn [")][0]
    assert (f'ControlNet 0: "Module: none, Model: {title}, Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: -1, '
            'Threshold A: -1.0, Threshold B: -1.0, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced"'
            ) in json.loads(controlled.json()["info"])["infotexts"][0]
    assert np.array_equal(pixels(run(client, [unit(weight=0)])), pixels(plain))  # weight 0 adds nothing, to the bit


def test_my_prompt_is_more_important_is_not_balanced_on_sdxl(xl_api):
    client, _ = xl_api
    use(client, SDXL)
    balanced = pixels(run(client, [unit()]))
    soft = run(client, [unit(control_mode="My prompt is more important")])
    assert np.abs(pixels(soft) - balanced).mean() > 0.5
    assert "Control Mode: My prompt is more important" in json.loads(soft.json()["info"])["infotexts"][0]


@pytest.mark.parametrize("checkpoint, model, made_for, in_use", [
    (SDXL, "sd1-cn", SD1_WIDTH, SDXL_WIDTH),
    (SD1, "xl-cn", SDXL_WIDTH, SD1_WIDTH),
])
def test_a_controlnet_of_the_other_family_is_a_422_and_the_queue_goes_on(xl_api, checkpoint, model, made_for, in_use):
    client, _ = xl_api
    use(client, checkpoint)
    answer = run(client, [unit(model=model)])
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"ControlNet unit 0, model {model} [")
    assert f"{model}.safetensors was made for a model whose text encoder width is {made_for}; the checkpoint in use has {in_use}" in detail
    assert client.post(f"{API}/txt2img", json=BASE).status_code == 200
    fitting = "xl-cn" if checkpoint == SDXL else "sd1-cn"
    assert run(client, [unit(model=fitting)]).status_code == 200
