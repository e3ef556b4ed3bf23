"""POST /sdapi/v1/img2img: images in as base64 or data URIs, inpainting with a mask (A1111's API
defaults), the 9-channel inpainting model, scripts, and clear 422s for images that cannot be used."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.generation.outpaint import OUTPAINT_METHODS
from tests.api.api_helpers import API, TINY, b64_png, decode, info_of, infotext_params


def picture(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), (30, 90, 200))
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(240, 200, 20))
    return image


def square_mask(size: int = 64) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return mask


def img2img(client, **fields):
    return client.post(f"{API}/img2img", json={**TINY, **fields})


def test_img2img_from_a_data_uri_resizes_and_records_denoising(api):
    client, _ = api
    response = img2img(client, init_images=[b64_png(picture(96), data_uri=True)], prompt="a sun", seed=21, denoising_strength=0.6)
    info = info_of(response)
    assert [decode(i).size for i in response.json()["images"]] == [(64, 64)]
    params = infotext_params(info["infotexts"][0])
    assert params["Denoising strength"] == "0.6" and params["Seed"] == "21" and params["Size-1"] == "64"
    assert info["denoising_strength"] == 0.6 and info["is_using_inpainting_conditioning"] is False
    assert response.json()["parameters"]["init_images"] is None  # not echoed unless include_init_images
    echoed = img2img(client, init_images=[b64_png(picture())], seed=21, include_init_images=True)
    assert echoed.json()["parameters"]["init_images"] == [b64_png(picture())]


def test_inpainting_keeps_the_pixels_outside_the_mask(api):
    client, _ = api
    source = picture()
    response = img2img(client, init_images=[b64_png(source)], mask=b64_png(square_mask()), prompt="a hole", seed=8,
                       inpainting_fill=1, inpaint_full_res=False, mask_blur=0, denoising_strength=1.0)
    info = info_of(response)
    out = np.asarray(decode(response.json()["images"][0]).convert("RGB"), dtype=np.int16)
    original = np.asarray(source, dtype=np.int16)
    outside = np.asarray(square_mask(), dtype=bool) == 0
    outside[12:52, 12:52] = False  # leave a margin around the square for the latent's 8-pixel cells
    assert np.abs(out[outside] - original[outside]).max() <= 1
    assert np.abs(out[24:40, 24:40] - original[24:40, 24:40]).mean() > 5  # the masked part was repainted
    params = infotext_params(info["infotexts"][0])
    assert params["Masked content"] == "original" and params["Mask blur"] == "0" and params["Inpaint area"] == "Whole picture"


def test_inpainting_uses_the_api_defaults_and_the_inpainting_model(api):
    client, _ = api
    response = img2img(client, init_images=[b64_png(picture())], mask=b64_png(square_mask()), seed=8,
                       override_settings={"sd_model_checkpoint": "inpaint"})
    info = info_of(response)
    params = infotext_params(info["infotexts"][0])
    # A1111's API defaults: only masked, no padding, masked content "fill", blur 4
    assert params["Inpaint area"] == "Only masked" and params["Masked area padding"] == "0"
    assert params["Masked content"] == "fill" and params["Mask blur"] == "4"
    assert info["sd_model_name"] == "inpaint" and info["is_using_inpainting_conditioning"] is True


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"init_images": ["not base64!!"]}, ["init_images[0] is not valid base64"]),
        ({"init_images": ["aGVsbG8gd29ybGQ="]}, ["init_images[0]", "not an image"]),
        ({"init_images": []}, ["init_images is empty"]),
        ({"init_images": [b64_png(picture())], "mask": "%%%"}, ["mask is not valid base64"]),
        ({"init_images": ["https://example.com/cat.png"]}, ["URL"]),
        ({"init_images": [b64_png(picture())], "resize_mode": 9}, ["resize_mode must be 0-3"]),
        ({"init_images": [b64_png(picture())], "script_name": "outpainting mk3"}, ["Script 'outpainting mk3' not found"]),
    ],
)
def test_images_and_fields_that_cannot_be_used_are_422(api, fields, words):
    client, _ = api
    response = img2img(client, **fields)
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "body", "errors"}
    for word in words:
        assert word in body["detail"]


def test_damaged_png_is_422_not_500(api):
    client, _ = api
    whole = b64_png(picture())
    import base64

    cut = base64.b64encode(base64.b64decode(whole)[:120]).decode()
    response = img2img(client, init_images=[cut])
    assert response.status_code == 422 and "init_images[0]" in response.json()["detail"]


def test_outpainting_scripts_run_by_name_with_a1111_args(api):
    """Both outpainting scripts run from script_name + script_args as A1111 clients send them: the
    picture grows on the named sides (rounded up to a multiple of 64, as A1111), the original stays
    in place, and the infotext records the outpaint settings."""
    client, _ = api
    source = picture()
    listed = client.get(f"{API}/scripts").json()["img2img"]
    assert listed[:2] == ["outpainting mk2", "poor man's outpainting"]  # then the extensions' (X/Y/Z plot...)
    response = img2img(client, init_images=[b64_png(source)], script_name="Poor man's outpainting",
                       script_args=[32, 4, "fill", ["left"]], seed=1)
    out = decode(response.json()["images"][0])
    assert out.size == (128, 64)  # 64 + 32 rounds up to 128: the left side grows by 64
    band = OUTPAINT_METHODS["Poor man's outpainting"].seam_band(4)  # how far into the picture its mask reaches
    kept = np.asarray(out.convert("RGB"), dtype=int)[:, 64 + band:, :]
    assert np.abs(kept - np.asarray(source, dtype=int)[:, band:, :]).max() <= 2
    params = infotext_params(info_of(response)["infotexts"][0])
    assert params["Outpaint method"] == "Poor man's outpainting" and params["Outpaint directions"] == "left"
    assert params["Size-1"] == "128" and params["Seed"] == "1" and params["Masked content"] == "fill"

    response = img2img(client, init_images=[b64_png(source)], script_name="outpainting mk2",
                       script_args=["", 8, 2, ["right", "down"], 1.5, 0.1], seed=3, steps=2)
    out = decode(response.json()["images"][0])
    assert out.size == (128, 128)
    params = infotext_params(info_of(response)["infotexts"][0])
    assert params["Outpaint method"] == "Outpainting mk2" and params["Outpaint directions"] == "right down"
    assert params["Outpaint fall-off exponent"] == "1.5" and params["Outpaint color variation"] == "0.1"

    bad = img2img(client, init_images=[b64_png(source)], script_name="outpainting mk2", script_args=["", 8, 2, ["sideways"]])
    assert bad.status_code == 422 and "Outpainting direction" in bad.json()["detail"]