"""The ControlNet section in a real browser: a unit with an uploaded picture, the canny preview,
a model dropped into models/ControlNet while Easel runs, the picture made with it (its infotext
line), and an enabled unit without a picture answered with a sentence."""

from __future__ import annotations

import io

from diffusers import UNet2DConditionModel
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from tests.browser.page_actions import choose, info_text, small_run, start, wait_for_progress
from tests.controlnet_models import tiny_controlnet, write_controlnet
from tools.make_test_models import tiny_spec


def circle_png() -> bytes:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).ellipse((12, 12, 52, 52), fill="white")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_a_controlnet_unit_from_the_page(pages, webui):
    config = tiny_spec("sd1", "tiny").components["unet"].config
    unet = UNet2DConditionModel.from_config(config)
    path = write_controlnet(webui.log.parent / "models" / "ControlNet" / "browser-cn.safetensors", tiny_controlnet(unet, seed=2, scale=0.5),
                            dict(unet.config))
    try:
        page = pages.open()
        page.locator("#txt2img-controlnet").get_by_text("ControlNet", exact=True).first.click()
        page.locator("#txt2img-controlnet-0-enable input").check()
        page.locator("#txt2img-controlnet-0-image input[type=file]").set_input_files(files=[{"name": "c.png", "mimeType": "image/png", "buffer": circle_png()}])
        expect(page.locator("#txt2img-controlnet-0-image img")).to_be_visible()
        choose(page, "txt2img-controlnet-0-module", "canny")
        page.locator("#txt2img-controlnet-0-preview-button").click()
        expect(page.locator("#txt2img-controlnet-0-preview img")).to_be_visible()
        choose(page, "txt2img-controlnet-0-model", "browser-cn")
        small_run(page, steps=3, seed=5, size=64)
        start(page)
        wait_for_progress(page, r"Done: 1 image")
        assert 'ControlNet 0: "Module: canny, Model: browser-cn [' in info_text(page)

        page.locator("#txt2img-controlnet-1-tab-button").click()
        page.locator("#txt2img-controlnet-1-enable input").check()
        start(page)
        wait_for_progress(page, r"ControlNet unit 1: the unit is enabled but has no image")
    finally:
        path.unlink()
