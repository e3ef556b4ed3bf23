"""The Extras tab in a real browser: a model file dropped into models/ESRGAN while Easel runs is
offered after a reload (Extras and hires fix), upscales a picture that keeps its parameters, the
result goes to img2img, and bad settings are a sentence where the result would be."""

from __future__ import annotations

import io

import httpx
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo
from playwright.sync_api import expect

from tests import upscaler_models
from tests.browser.page_actions import choose, gallery_srcs, wait_for_progress

PARAMETERS = "a red circle\nSteps: 7, Sampler: Euler a, CFG scale: 3, Seed: 99, Size: 48x32"


def source_picture(path) -> None:
    image = Image.new("RGB", (48, 32), "white")
    ImageDraw.Draw(image).ellipse((10, 4, 38, 28), fill=(220, 30, 30))
    info = PngInfo()
    info.add_text("parameters", PARAMETERS)
    image.save(path, pnginfo=info)


def test_extras_upscales_with_a_model_and_sends_the_result_on(pages, webui, tmp_path):
    models_dir = webui.log.parent / "models"
    model = upscaler_models.write(models_dir / "ESRGAN" / "2x-Browser.safetensors", upscaler_models.compact(2, seed=4))
    try:
        page = pages.open()
        page.locator("#txt2img-hr-enable input").check()
        choose(page, "txt2img-hr-upscaler", "2x-Browser")  # the hires list has it too (the page load read the folders)
        page.get_by_role("tab", name="Extras").click()
        source = tmp_path / "source.png"
        source_picture(source)
        page.locator("#extras-image input[type=file]").set_input_files(str(source))
        expect(page.locator("#extras-image img")).to_be_visible()
        choose(page, "extras-upscaler-1", "2x-Browser")
        page.locator("#extras-scale input[type=number]").fill("2")
        page.locator("#extras-scale input[type=number]").press("Enter")
        page.locator("#extras-generate").click()
        wait_for_progress(page, r"Done: 1 image", tab="extras")
        expect(page.locator("#extras-info")).to_have_text("Postprocess upscale by: 2, Postprocess upscaler: 2x-Browser")
        result = Image.open(io.BytesIO(httpx.get(gallery_srcs(page, "extras")[0], timeout=10).content))
        assert result.size == (96, 64)
        assert result.info["parameters"] == PARAMETERS and result.info["extras"] == result.info["postprocessing"]
        saved = list((webui.data_dir / "outputs" / "extras-images").rglob("*.png"))
        assert len(saved) == 1 and Image.open(saved[0]).size == (96, 64)

        page.locator("#extras-send-img2img").click()
        expect(page.locator("#img2img-prompt textarea")).to_have_value("a red circle")
        expect(page.locator("#img2img-image img")).to_be_visible()
    finally:
        model.unlink()


def test_bad_extras_settings_show_a_sentence(pages):
    page = pages.open()
    page.get_by_role("tab", name="Extras").click()
    page.locator("#extras-generate").click()
    wait_for_progress(page, r"There is no picture to work on", tab="extras")
    page.locator("#extras-image input[type=file]").set_input_files(files=[{"name": "x.png", "mimeType": "image/png", "buffer": _png(8, 8)}])
    expect(page.locator("#extras-image img")).to_be_visible()
    choose(page, "extras-upscaler-1", "Lanczos")
    page.get_by_role("tab", name="Scale to").click()
    page.locator("#extras-width input").fill("4")
    page.locator("#extras-width input").press("Enter")
    page.locator("#extras-generate").click()
    wait_for_progress(page, r"at least 8x8 pixels, not 4x512", tab="extras")


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "blue").save(buffer, "PNG")
    return buffer.getvalue()
