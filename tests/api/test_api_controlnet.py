"""ControlNet through A1111's API as sd-webui-controlnet's clients use it: the /controlnet routes,
units in `alwayson_scripts`, LDM and diffusers files of a tiny ControlNet made for the test
checkpoint, the infotext line, and bad units answered with a sentence naming the unit and field."""

from __future__ import annotations

import base64
import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.controlnet.preprocess import PREPROCESSORS, detect, fit
from tests.api.api_helpers import API, b64_png, decode
from tests.controlnet_models import tiny_controlnet, write_controlnet

BASE = {"prompt": "a shape", "width": 64, "height": 64, "steps": 4, "seed": 11, "cfg_scale": 5, "sampler_name": "Euler"}


def circle(size=(64, 64), box=(16, 16, 48, 48)) -> Image.Image:
    image = Image.new("RGB", size, "black")
    ImageDraw.Draw(image).ellipse(box, fill="white")
    return image


@pytest.fixture(scope="module")
def controlnets(api):
    """models/ControlNet/tiny-cn.safetensors (diffusers layout) and tiny-cn-ldm.safetensors (the same
    weights under ControlNet 1.1's LDM keys), made for the loaded test checkpoint's UNet."""
    client, services = api
    client.post(f"{API}/options", json={"sd_model_checkpoint": "alpha"})
    unet = services.manager.loaded.unet
    network = tiny_controlnet(unet, seed=5, scale=0.5)
    folder = services.paths.models_dir / "ControlNet"
    paths = [write_controlnet(folder / "tiny-cn.safetensors", network, dict(unet.config)),
             write_controlnet(folder / "sub" / "tiny-cn-ldm.safetensors", network, dict(unet.config), layout="ldm")]
    yield paths
    for path in paths:
        path.unlink(missing_ok=True)


def unit(**fields) -> dict:
    return {"image": b64_png(circle()), "module": "none", "model": "tiny-cn", **fields}


def run(client, units, **fields):
    return client.post(f"{API}/txt2img", json={**BASE, **fields, "alwayson_scripts": {"ControlNet": {"args": units}}})


def pixels(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(decode(response.json()["images"][0])).astype(int)


def test_the_routes_answer_as_the_extension(api, controlnets):
    client, services = api
    assert client.get("/controlnet/version").json() == {"version": 3}
    models = client.get("/controlnet/model_list").json()["model_list"]
    titles = services.controlnets.catalog.titles()
    assert models == titles and [t.split(" [")[0] for t in titles] == ["tiny-cn", "tiny-cn-ldm"] and all(len(t.split("[")[1]) == 9 for t in titles)
    modules = client.get("/controlnet/module_list").json()
    assert modules["module_list"][0] == "none" and "canny" in modules["module_list"]
    assert [s["name"] for s in modules["module_detail"]["canny"]["sliders"]] == ["Preprocessor Resolution", "Canny Low Threshold", "Canny High Threshold"]
    assert client.get("/controlnet/settings").json() == {"control_net_unit_count": 3}
    assert "Canny" in client.get("/controlnet/control_types").json()["control_types"]


def test_detect_computes_canny_with_either_image_key(api):
    client, _ = api
    for key in ("controlnet_input_images", "controlnet_images"):
        answer = client.post("/controlnet/detect", json={"controlnet_module": "canny", key: [b64_png(circle())], "controlnet_processor_res": 64})
        assert answer.status_code == 200 and answer.json()["info"] == "Success"
        edges = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]))))
        assert edges.shape == (64, 64, 3) and 0 < (edges[..., 0] == 255).mean() < 0.2 and edges[32, 32, 0] == 0  # an outline, not a disc
    missing = client.post("/controlnet/detect", json={"controlnet_module": "canny"})
    assert missing.status_code == 422 and "No image selected" in missing.json()["detail"]


def test_a_unit_changes_the_picture_and_writes_the_extensions_infotext(api, controlnets):
    client, _ = api
    plain = client.post(f"{API}/txt2img", json=BASE)
    controlled = run(client, [unit()])
    assert np.abs(pixels(plain) - pixels(controlled)).mean() > 1
    infotext = json.loads(controlled.json()["info"])["infotexts"][0]
    title = [t for t in client.get("/controlnet/model_list").json()["model_list"] if t.startswith("tiny-cn [")][0]
    assert (f'ControlNet 0: "Module: none, Model: {title}, Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: -1, '
            'Threshold A: -1.0, Threshold B: -1.0, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced"') in infotext
    weightless = run(client, [unit(weight=0)])
    assert np.array_equal(pixels(weightless), pixels(plain))  # weight 0 adds nothing
    disabled = run(client, [unit(enabled=False)])
    assert np.array_equal(pixels(disabled), pixels(plain)) and "ControlNet 0" not in json.loads(disabled.json()["info"])["infotexts"][0]


def test_ldm_and_diffusers_files_of_one_controlnet_draw_the_same(api, controlnets):
    client, _ = api
    assert np.array_equal(pixels(run(client, [unit()])), pixels(run(client, [unit(model="tiny-cn-ldm")])))


def test_old_clients_forms_work(api, controlnets):
    client, _ = api
    new = pixels(run(client, [unit(control_mode="ControlNet is more important", resize_mode="Just Resize")]))
    old = pixels(run(client, [{"input_image": b64_png(circle()), "module": "none", "model": "tiny-cn", "control_mode": 2, "resize_mode": 0}]))
    assert np.array_equal(new, old)
    lower_key = client.post(f"{API}/txt2img", json={**BASE, "alwayson_scripts": {"controlnet": {"args": [unit()]}}})
    assert np.array_equal(pixels(lower_key), pixels(run(client, [unit()])))


def test_img2img_uses_its_picture_when_the_unit_has_none(api, controlnets):
    client, _ = api
    body = {**BASE, "init_images": [b64_png(circle())], "denoising_strength": 0.6,
            "alwayson_scripts": {"controlnet": {"args": [{"module": "canny", "model": "tiny-cn", "image": ""}]}}}
    answer = client.post(f"{API}/img2img", json=body)
    assert answer.status_code == 200, answer.text
    assert 'ControlNet 0: "Module: canny' in json.loads(answer.json()["info"])["infotexts"][0]


@pytest.mark.parametrize("units, status, words", [
    ([{"module": "none", "model": "tiny-cn"}], 422, ["ControlNet unit 0", "no image"]),
    ([unit(image="bm90IGFuIGltYWdl")], 422, ["ControlNet unit 0: image"]),
    ([unit(model="no-such-net")], 404, ["ControlNet unit 0, model", "no-such-net", "tiny-cn"]),
    ([unit(weight=5)], 422, ["ControlNet unit 0", "weight must be between 0 and 2, not 5"]),
    ([unit(guidance_start=0.9, guidance_end=0.1)], 422, ["ControlNet unit 0", "guidance_start and guidance_end"]),
    ([unit(), unit(), unit(), unit()], 422, ["4 ControlNet units were sent; at most 3"]),
    ([unit(module="depth")], 422, ["depth_midas preprocessor needs its weights", "dpt_hybrid-midas-501f0c75.pt"]),
    ([unit(module="sketchify")], 422, ["'sketchify' is not a preprocessor"]),
])
def test_bad_units_are_a_sentence_and_the_queue_goes_on(api, controlnets, units, status, words):
    client, _ = api
    answer = run(client, units)
    assert answer.status_code == status, answer.text
    for word in words:
        assert word in answer.json()["detail"]
    assert run(client, [unit()]).status_code == 200


def test_a_controlnet_for_another_model_family_is_refused(api, controlnets):
    from diffusers import UNet2DConditionModel

    client, services = api
    other = UNet2DConditionModel(**{**dict(services.manager.loaded.unet.config), "cross_attention_dim": 48})
    path = write_controlnet(services.paths.models_dir / "ControlNet" / "wide-cn.safetensors", tiny_controlnet(other), dict(other.config))
    try:
        answer = run(client, [unit(model="wide-cn")])
        assert answer.status_code == 422, answer.text
        assert "ControlNet unit 0, model wide-cn [" in answer.json()["detail"]
        assert "wide-cn.safetensors was made for a model whose text encoder width is 48; the checkpoint in use has 32" in answer.json()["detail"]
        assert run(client, [unit()]).status_code == 200
    finally:
        path.unlink()


def test_xyz_plot_axes_for_controlnet(api, controlnets):
    client, _ = api
    body = {**BASE, "alwayson_scripts": {"controlnet": {"args": [unit()]}},
            "script_name": "x/y/z plot", "script_args": ["[ControlNet] Weight", "0, 1", "[ControlNet] Model", "tiny-cn, tiny-cn-ldm"]}
    answer = client.post(f"{API}/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    images = [np.asarray(decode(item)).astype(int) for item in answer.json()["images"]]
    plain = pixels(client.post(f"{API}/txt2img", json=BASE))
    controlled = pixels(run(client, [unit()]))
    grid_offset = len(images) - 4  # the labelled grid comes first when it is sent
    cells = images[grid_offset:]
    assert np.array_equal(cells[0], plain) and np.array_equal(cells[1], controlled) and np.array_equal(cells[3], controlled)
    infotexts = json.loads(answer.json()["info"])["infotexts"][grid_offset:]
    assert "Weight: 0.0" in infotexts[0] and "Model: tiny-cn-ldm [" in infotexts[2]
    without = client.post(f"{API}/txt2img", json={**BASE, "script_name": "x/y/z plot", "script_args": ["[ControlNet] Weight", "0, 1"]})
    assert without.status_code in (400, 422) and "needs an enabled ControlNet unit" in without.json()["detail"]


def test_a_pictures_units_restore_against_the_models_here(api, controlnets):
    """Send to / paste: a unit's model is looked up in models/ControlNet (by stem, as the extension
    finds it); a model or preprocessor Easel lacks is named, and so is the control image a picture
    never carries. The API's `infotext` names the units unless the request sends its own."""
    client, services = api
    title = next(t for t in services.controlnets.catalog.titles() if t.startswith("tiny-cn ["))
    infotext = ("a shape\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 11, Size: 64x64, "
                'ControlNet 0: "Module: canny, Model: tiny-cn [00000000], Weight: 0.5, Resize Mode: Crop and Resize, Processor Res: 256, '
                'Threshold A: 90.0, Threshold B: 180.0, Guidance Start: 0.0, Guidance End: 0.75, Pixel Perfect: False, Control Mode: Balanced", '
                'ControlNet 1: "Module: depth_leres++, Model: control_v11f1p_sd15_depth [cfd03158], Weight: 1.0"')
    restored = services.models.picture_restorer().restore(infotext, {"prompt", "steps", "control_units"})
    units = restored.fields["control_units"]
    assert (units[0].model, units[0].module, units[0].weight, units[0].threshold_a, units[0].guidance_end) == (title, "canny", 0.5, 90.0, 0.75)
    assert (units[1].model, units[1].module) == ("None", "none")
    assert [(i.key, i.value, i.reason) for i in restored.not_applied if i.key.startswith("ControlNet")] == [
        ("ControlNet 0", "control image", "a picture does not carry its control image: add it to the unit"),
        ("ControlNet 1", "Module: depth_leres++", "not a preprocessor Easel has; the unit uses none"),
        ("ControlNet 1", "Model: control_v11f1p_sd15_depth [cfd03158]", "not among your ControlNet models (models/ControlNet)"),
        ("ControlNet 1", "control image", "a picture does not carry its control image: add it to the unit"),
    ]
    refused = client.post(f"{API}/txt2img", json={"infotext": infotext.split(", ControlNet 1")[0]})
    assert refused.status_code == 422 and "ControlNet 0: Module: canny" in refused.json()["detail"]
    assert "alwayson_scripts.controlnet" in refused.json()["detail"]
    given = client.post(f"{API}/txt2img", json={"infotext": infotext.split(", ControlNet 1")[0],
                                                "alwayson_scripts": {"controlnet": {"args": [unit(weight=0.5)]}}})
    assert given.status_code == 200, given.text
    assert "ControlNet 0: \"Module: none, Model: tiny-cn [" in json.loads(given.json()["info"])["infotexts"][0]


def test_the_control_maps_follow_the_pictures_unless_turned_off(api, controlnets):
    """The extension's detected maps: appended after the pictures (without infotexts), one per unit
    whose save_detected_map is on; the setting control_net_no_detectmap hides them all."""
    client, services = api
    picture = circle((96, 64), (8, 8, 56, 56))
    units = [unit(module="canny", image=b64_png(picture), threshold_a=50, threshold_b=100),
             unit(module="invert", image=b64_png(picture), weight=0.3, save_detected_map=False)]
    answer = run(client, units, batch_size=2)
    assert answer.status_code == 200, answer.text
    images = answer.json()["images"]
    assert len(images) == 3 and len(json.loads(answer.json()["info"])["infotexts"]) == 2
    drawn = np.asarray(decode(images[2]).convert("L"))
    assert drawn.shape == (64, 64)  # fitted to the picture: 96x64 cropped to 64x64 (Crop and Resize)
    # cropped by 16 px a side, the circle's right edge lands near x=40 and its centre at x=16
    assert drawn[32, 37:44].max() > 0 and drawn[32, 16] == 0 and drawn[32, 60] == 0
    expected = fit(detect(PREPROCESSORS["canny"], picture, 512, 50, 100), 64, 64, "Crop and Resize")
    assert np.array_equal(np.asarray(decode(images[2]).convert("RGB")), expected)
    client.post(f"{API}/options", json={"control_net_no_detectmap": True})
    try:
        assert len(run(client, units).json()["images"]) == 1
    finally:
        client.post(f"{API}/options", json={"control_net_no_detectmap": False})


def test_inpaint_only_repaints_the_mask_and_keeps_the_rest_of_its_picture(api, controlnets):
    """inpaint_only: the unit's picture outside its mask comes back as it was (held in the latent,
    then pasted back past a 7 px grown, blurred edge); inside, the picture is made anew. Without a
    mask the unit is refused with a sentence; in img2img's inpainting a unit without its own
    picture takes the img2img picture and mask."""
    client, _ = api
    rng = np.random.default_rng(3)
    picture = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((24, 24, 40, 40), fill=255)
    answer = run(client, [unit(module="inpaint_only", image=b64_png(picture), mask=b64_png(mask))])
    out, source = pixels(answer), np.asarray(picture).astype(int)
    outside = np.ones((64, 64), bool)
    outside[24 - 8:41 + 8, 24 - 8:41 + 8] = False
    assert np.array_equal(out[outside], source[outside])
    assert np.abs(out[28:37, 28:37] - source[28:37, 28:37]).mean() > 20  # the repainted middle is no copy of the noise
    bare = run(client, [unit(module="inpaint_only", image=b64_png(picture))])
    assert bare.status_code == 422 and "ControlNet unit 0: the inpaint_only preprocessor needs a mask" in bare.json()["detail"]
    inpaint = client.post(f"{API}/img2img", json={**BASE, "init_images": [b64_png(picture)], "mask": b64_png(mask), "denoising_strength": 0.8,
                                                  "alwayson_scripts": {"controlnet": {"args": [{"module": "inpaint_only", "model": "tiny-cn"}]}}})
    kept = pixels(inpaint)
    assert np.array_equal(kept[outside], source[outside])


def test_colorfix_and_recolor_change_the_picture_by_their_rules(api, controlnets):
    client, _ = api
    picture = circle()
    plain = pixels(client.post(f"{API}/txt2img", json=BASE))
    off = run(client, [unit(module="tile_colorfix", image=b64_png(picture), weight=0)])
    assert np.array_equal(pixels(off), plain)  # weight 0: no residual and no x0 rule
    on = pixels(run(client, [unit(module="tile_colorfix+sharp", image=b64_png(picture), threshold_a=3, threshold_b=50)]))
    assert np.abs(on - plain).mean() > 1
    recolored = run(client, [unit(module="recolor_luminance", image=b64_png(picture))])
    lightness = cv2.cvtColor(np.asarray(decode(recolored.json()["images"][0]).convert("RGB")), cv2.COLOR_RGB2LAB)[..., 0].astype(int)
    disc = np.asarray(picture.convert("L")) > 128
    # the picture took the map's lightness, a white disc on black (colours out of gamut at L=0 lift the black a little)
    assert lightness[disc].mean() > 220 and lightness[~disc].mean() < 25, (lightness[disc].mean(), lightness[~disc].mean())
