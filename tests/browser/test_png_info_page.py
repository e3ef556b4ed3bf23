"""PNG Info in a real browser: drop a generated PNG, read its parameters, send them to txt2img and
get the same picture again; a damaged file gives a sentence, not a traceback."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image
from playwright.sync_api import expect

from tests.browser.page_actions import gallery_srcs, info_text, set_number, set_prompt, small_run, start, wait_for_progress


def fetch(url: str) -> bytes:
    return httpx.get(url, timeout=10).content


def test_send_to_txt2img_reproduces_the_image(pages, tmp_path):
    page = pages.open()
    set_prompt(page, "a (yellow:1.2) triangle, on grey")
    page.locator("#txt2img-negative-prompt textarea").fill("blurry")
    small_run(page, steps=6, seed=4242, size=64)
    set_number(page, "txt2img-cfg", 5.5)
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    first = fetch(gallery_srcs(page)[0])
    original = tmp_path / "original.png"
    original.write_bytes(first)

    # Change what Send to txt2img must put back.
    set_prompt(page, "something else")
    small_run(page, steps=20, seed=1, size=128)

    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#png-info-file input[type=file]").set_input_files(str(original))
    table = page.locator("#png-info-table")
    expect(table).to_contain_text("4242")
    expect(table).to_contain_text("a (yellow:1.2) triangle, on grey")
    pages.shot(page, "png-info")
    page.locator("#png-info-send-txt2img").click()
    expect(page.locator("#txt2img-prompt textarea")).to_have_value("a (yellow:1.2) triangle, on grey")
    expect(page.locator("#txt2img-negative-prompt textarea")).to_have_value("blurry")
    expect(page.locator("#txt2img-seed input")).to_have_value("4242")
    expect(page.locator("#txt2img-width input[type=number]")).to_have_value("64")
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    second = fetch(gallery_srcs(page)[0])
    pages.shot(page, "regenerated")
    assert "CFG scale: 5.5" in info_text(page)
    a, b = (np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in (first, second))
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)


def test_damaged_file_gives_a_clear_error(pages, tmp_path):
    page = pages.open()
    broken = tmp_path / "broken.png"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    broken.write_bytes(buffer.getvalue()[:60])
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#png-info-file input[type=file]").set_input_files(str(broken))
    error = page.locator("#png-info-message .easel-error")
    expect(error).to_contain_text("broken.png")
    pages.shot(page, "broken")
    expect(page.locator("#png-info-send-txt2img")).to_be_disabled()


# A picture made elsewhere: a checkpoint, sampler, schedule and upscaler this Easel does not have, and
# settings of extensions it does not have (keys and value forms as ADetailer and Regional Prompter write them).
FOREIGN_INFOTEXT = (
    "a red circle, on white\nNegative prompt: blurry\n"
    "Steps: 17, Sampler: Euler A Turbo, Schedule type: Kerras, CFG scale: 4.5, Seed: 777, Size: 64x64, "
    "Model hash: 0123456789, Model: dreamshaper_8, Denoising strength: 0.4, Hires upscale: 2, Hires upscaler: 4x-UltraSharp, "
    "ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.3, RP Active: True, RP Divide mode: Matrix, Version: v1.10.1"
)


def test_send_to_txt2img_names_every_setting_it_could_not_apply(pages, tmp_path):
    page = pages.open()
    picture = tmp_path / "foreign.png"
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", FOREIGN_INFOTEXT)
    Image.new("RGB", (64, 64), "white").save(picture, pnginfo=info)
    sampler_before = page.locator("#txt2img-sampler input").input_value()
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#png-info-file input[type=file]").set_input_files(str(picture))
    expect(page.locator("#png-info-table")).to_contain_text("777")
    page.locator("#png-info-send-txt2img").click()

    notice = page.locator("#txt2img-restore-notice .easel-restore-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("except 5 settings")
    for line in ("Model: dreamshaper_8 [0123456789] — not among your checkpoints",
                 "Sampler: Euler A Turbo — unknown sampler 'Euler A Turbo'",
                 "Schedule type: Kerras — unknown schedule type 'Kerras'",
                 "Hires upscaler: 4x-UltraSharp — no upscaler named 4x-UltraSharp here",
                 "ADetailer model: face_yolov8n.pt — not among your detectors (models/adetailer)"):  # its tab is restored
        expect(notice).to_contain_text(line)
    expect(page.locator("#txt2img-steps input[type=number]")).to_have_value("17")  # what Easel has is applied
    expect(page.locator("#txt2img-seed input")).to_have_value("777")
    assert page.locator("#txt2img-sampler input").input_value() == sampler_before  # left as it was, not guessed
    expect(page.locator("#easel-status")).to_contain_text("alpha")  # the current checkpoint stays
    pages.shot(page, "restore-notice")

    # The ↙️ button reads the same text from the prompt box; a picture with nothing missing clears the notice.
    set_prompt(page, "a blue square\nSteps: 9, Sampler: Euler, CFG scale: 3, Seed: 55, Size: 64x64, Token merging ratio: 0.5")
    page.locator("#txt2img-paste").click()
    expect(page.locator("#txt2img-prompt textarea")).to_have_value("a blue square")
    expect(page.locator("#txt2img-seed input")).to_have_value("55")
    expect(notice).to_contain_text("except 1 setting:")
    expect(notice).to_contain_text("Token merging ratio: 0.5 — token merging is not supported")
    set_prompt(page, "a blue square\nSteps: 9, Sampler: Euler, CFG scale: 3, Seed: 56, Size: 64x64")
    page.locator("#txt2img-paste").click()
    expect(page.locator("#txt2img-seed input")).to_have_value("56")
    expect(page.locator("#txt2img-restore-notice")).to_be_hidden()  # shown only when something was left out
