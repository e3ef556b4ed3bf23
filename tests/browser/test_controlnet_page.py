"""The ControlNet section in a real browser: a unit with an uploaded picture, the canny preview,
a model dropped into models/ControlNet while Easel runs, the picture made with it (its infotext
line), and an enabled unit without a picture answered with a sentence."""

from __future__ import annotations

import io
import re

from diffusers import UNet2DConditionModel
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from tests.browser.page_actions import choose, info_text, set_prompt, small_run, start, wait_for_progress
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


def test_pasting_a_pictures_parameters_restores_its_units(pages, webui):
    """↙️ with an A1111 infotext carrying two units: unit 0 and 1 take the picture's settings (the
    canny thresholds in their sliders), unit 2 is switched off, and the notice asks for the control
    images and names the model that is not here."""
    config = tiny_spec("sd1", "tiny").components["unet"].config
    unet = UNet2DConditionModel.from_config(config)
    path = write_controlnet(webui.log.parent / "models" / "ControlNet" / "paste-cn.safetensors", tiny_controlnet(unet, seed=3), dict(unet.config))
    try:
        check_pasted_units(pages.open())
    finally:
        path.unlink()


def check_pasted_units(page) -> None:
    page.locator("#txt2img-controlnet").get_by_text("ControlNet", exact=True).first.click()
    page.locator("#txt2img-controlnet-2-tab-button").click()
    page.locator("#txt2img-controlnet-2-enable input").check()
    set_prompt(page, "a red circle\nSteps: 6, Sampler: Euler, CFG scale: 5, Seed: 3, Size: 64x64, "
                     'ControlNet 0: "Module: canny, Model: paste-cn [0badc0de], Weight: 0.6, Resize Mode: Resize and Fill, '
                     'Processor Res: 384, Threshold A: 90.0, Threshold B: 170.0, Guidance Start: 0.1, Guidance End: 0.8, Pixel Perfect: False, '
                     'Control Mode: My prompt is more important", '
                     'ControlNet 1: "preprocessor: invert, model: control_sd15_scribble [fef5e48e], weight: 1, starting/ending: (0, 1), '
                     'resize mode: Crop and Resize, pixel perfect: False, control mode: Balanced, preprocessor params: (512, -1, -1)"')
    page.locator("#txt2img-paste").click()
    notice = page.locator("#txt2img-restore-notice, .easel-restore-notice").first
    expect(notice).to_contain_text("control_sd15_scribble [fef5e48e]")
    expect(notice).to_contain_text("a picture does not carry its control image")
    expect(page.locator("#txt2img-controlnet-2-enable input")).not_to_be_checked()
    page.locator("#txt2img-controlnet-0-tab-button").click()
    expect(page.locator("#txt2img-controlnet-0-enable input")).to_be_checked()
    expect(page.locator("#txt2img-controlnet-0-module input")).to_have_value("canny")
    expect(page.locator("#txt2img-controlnet-0-model input")).to_have_value(re.compile(r"^paste-cn \[[0-9a-f]{8}\]$"))
    expect(page.locator("#txt2img-controlnet-0-weight input[type=number]")).to_have_value("0.6")
    expect(page.locator("#txt2img-controlnet-0-threshold-a input[type=number]")).to_have_value("90")
    expect(page.locator("#txt2img-controlnet-0-threshold-b input[type=number]")).to_have_value("170")
    expect(page.locator("#txt2img-controlnet-0-resolution input[type=number]")).to_have_value("384")
    expect(page.locator("#txt2img-controlnet-0-mode")).to_contain_text("My prompt is more important")
    expect(page.locator("#txt2img-controlnet-0-mode input[value='My prompt is more important']")).to_be_checked()
    page.locator("#txt2img-controlnet-1-tab-button").click()
    expect(page.locator("#txt2img-controlnet-1-module input")).to_have_value("invert")
    expect(page.locator("#txt2img-controlnet-1-model input")).to_have_value("None")
