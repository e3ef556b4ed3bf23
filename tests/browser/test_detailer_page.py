"""The ADetailer section in a real browser: the astronaut picture in img2img, ADetailer on with the
shipped face detector and "Skip img2img": the face is repainted, the infotext carries ADetailer's
keys and the region count, the gallery shows the boxes; pasting an A1111 infotext with ADetailer
keys fills the tabs."""

from __future__ import annotations

import shutil
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.page_actions import choose, gallery_srcs, info_text, set_number, set_prompt, start, wait_for_progress

ROOT = Path(__file__).resolve().parents[2]
FACE_MODEL = "easel-face-mtcnn.safetensors"


def test_a_face_detailed_from_the_page_and_tabs_restored_by_paste(pages, webui):
    folder = webui.log.parent / "models" / "adetailer"
    folder.mkdir(parents=True, exist_ok=True)
    copied = folder / FACE_MODEL
    shutil.copy(ROOT / "models" / "adetailer" / FACE_MODEL, copied)
    try:
        page = pages.open()
        page.get_by_role("tab", name="img2img", exact=True).first.click()
        page.locator("#img2img-image input[type=file]").first.set_input_files(str(ROOT / "tests" / "fixtures" / "astronaut.jpg"))
        expect(page.locator("#img2img-image img").first).to_be_visible()
        set_prompt(page, "an astronaut", tab="img2img")
        for name, value in (("img2img-width", 256), ("img2img-height", 256), ("img2img-steps", 4)):
            set_number(page, name, value)
        page.locator("#img2img-detailer").get_by_text("ADetailer", exact=True).first.click()
        page.locator("#img2img-detailer-enable input").check()
        page.locator("#img2img-detailer-skip input").check()
        choose(page, "img2img-detailer-0-model", FACE_MODEL)
        page.locator("#img2img-detailer-0-prompt textarea").fill("a green face")
        start(page, tab="img2img")
        wait_for_progress(page, r"Done: 1 image", tab="img2img")
        text = info_text(page, tab="img2img")
        assert "ADetailer model: easel-face-mtcnn.safetensors" in text and "ADetailer regions: 1" in text
        assert len(gallery_srcs(page, tab="img2img")) == 2  # the picture, then its boxes

        page.get_by_role("tab", name="txt2img", exact=True).first.click()
        page.locator("#txt2img-detailer").get_by_text("ADetailer", exact=True).first.click()
        set_prompt(page, "a face\nSteps: 6, Sampler: Euler, CFG scale: 5, Seed: 3, Size: 64x64, ADetailer model: easel-face-mtcnn.safetensors, "
                         "ADetailer prompt: a smiling face, ADetailer confidence: 0.55, ADetailer dilate erode: 12, ADetailer mask blur: 4, "
                         "ADetailer denoising strength: 0.35, ADetailer inpaint only masked: True, ADetailer inpaint padding: 48, "
                         "ADetailer model 2nd: hand_yolov8n.pt, ADetailer version: 24.9.0")
        page.locator("#txt2img-paste").click()
        notice = page.locator("#txt2img-restore-notice")
        expect(notice).to_contain_text("hand_yolov8n.pt")
        expect(notice).to_contain_text("not among your detectors")
        expect(page.locator("#txt2img-detailer-enable input")).to_be_checked()
        expect(page.locator("#txt2img-detailer-0-model input")).to_have_value(FACE_MODEL)
        expect(page.locator("#txt2img-detailer-0-prompt textarea")).to_have_value("a smiling face")
        unit = page.locator("#txt2img-detailer-0-tab")
        unit.get_by_text("Detection", exact=True).first.click()
        unit.get_by_text("Inpainting", exact=True).first.click()
        expect(page.locator("#txt2img-detailer-0-confidence input[type=number]")).to_have_value("0.55")
        expect(page.locator("#txt2img-detailer-0-denoise input[type=number]")).to_have_value("0.35")
    finally:
        copied.unlink(missing_ok=True)
