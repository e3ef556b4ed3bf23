"""The img2img tab in a real browser: inpaint with a mask painted by the mouse (only the painted part
changes, to the pixel), send a txt2img result over with its parameters, resize by a scale, an
empty mask, a missing image; and txt2img's hires fix, which shares the img2img machinery.
"""

from __future__ import annotations

import io
import re

import httpx
import numpy as np
from PIL import Image
from playwright.sync_api import expect

from tests.browser.page_actions import (
    choose, gallery_srcs, info_text, progress_text, set_number, set_prompt, small_run, start, wait_for_progress,
)

SIZE = 128
BLUR_REACH = 12  # mask blur 4: its kernel reaches 10 px; 12 leaves a margin
EDITOR_TIMEOUT = 20_000  # ms: the image editor draws with WebGL in software, slow on a busy machine


def pattern_image(path) -> np.ndarray:
    """A 128x128 picture with no white in it (so white brush strokes over it are easy to find)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    pixels = np.stack([(x * 2) % 256, (y * 2) % 256, ((x // 16 + y // 16) % 2) * 200], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def fetch_image(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(httpx.get(url, timeout=10).content)).convert("RGB"))


def open_img2img(page, source: str = "img2img") -> None:
    page.get_by_role("tab", name="img2img", exact=True).first.click()
    labels = {"img2img": "img2img", "sketch": "Sketch", "inpaint": "Inpaint", "inpaint-upload": "Inpaint upload"}
    page.locator("#img2img-source-tabs").get_by_role("tab", name=labels[source], exact=True).click()


def upload_to_editor(page, elem_id: str, path) -> None:
    editor = page.locator(f"#{elem_id}")
    editor.locator("canvas").first.wait_for()  # a file given before the canvas exists is dropped
    editor.locator("input[type=file]").first.set_input_files(str(path))
    expect(editor.get_by_text("Upload an image")).to_be_hidden(timeout=EDITOR_TIMEOUT)
    expect(editor.locator(".zoom-number")).not_to_have_text("45%", timeout=EDITOR_TIMEOUT)  # the empty canvas's zoom


def paint_stroke(page, elem_id: str, source: np.ndarray) -> np.ndarray:
    """Drags the brush across the middle of the picture; returns where it painted, in picture pixels
    (read back from the canvas: the brush is white and the picture has no white)."""
    canvas = page.locator(f"#{elem_id} canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 50, cy + 10)
    page.mouse.down()
    for step in range(1, 5):  # each move redraws the canvas (slow in software WebGL): few, long ones
        page.mouse.move(cx - 50 + step * 25, cy + 10 - step * 5)
    page.mouse.up()
    page.wait_for_timeout(300)
    zoom = float(page.locator(f"#{elem_id} .zoom-number").inner_text().strip("%")) / 100
    shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"))
    centres = (np.arange(SIZE) + 0.5 - SIZE / 2) * zoom
    rows = np.clip((box["height"] / 2 + centres).astype(int), 0, shot.shape[0] - 1)
    cols = np.clip((box["width"] / 2 + centres).astype(int), 0, shot.shape[1] - 1)
    shown = shot[rows][:, cols].astype(int)  # the canvas as the picture's pixels
    stroke = np.all(shown >= 250, axis=-1)
    # The mapping is right if the unpainted pixels look like the picture (the display may smooth).
    assert np.median(np.abs(shown[~stroke] - source[~stroke])) <= 8, "could not find the picture on the canvas"
    assert 200 < stroke.sum() < SIZE * SIZE / 2, f"the stroke covers {stroke.sum()} pixels"
    return stroke


def grow(mask: np.ndarray, reach: int) -> np.ndarray:
    """Every pixel within `reach` (chessboard distance) of the mask."""
    padded = np.pad(mask, reach)
    out = np.zeros_like(mask)
    for dy in range(2 * reach + 1):
        for dx in range(2 * reach + 1):
            out |= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return out


def test_inpaint_changes_only_the_painted_part(pages, tmp_path):
    page = pages.open()
    source = pattern_image(tmp_path / "pattern.png")
    open_img2img(page, "inpaint")
    expect(page.locator("#img2img-inpaint-controls")).to_be_visible()
    upload_to_editor(page, "img2img-inpaint", tmp_path / "pattern.png")
    stroke = paint_stroke(page, "img2img-inpaint", source)
    set_prompt(page, "a white cat", tab="img2img")
    small_run(page, steps=4, seed=4321, size=SIZE, tab="img2img")
    pages.shot(page, "inpaint-painted")
    start(page, tab="img2img")
    wait_for_progress(page, r"Done: 1 image", tab="img2img")
    pages.shot(page, "inpaint-done")

    info = info_text(page, "img2img")
    assert "Seed: 4321" in info and "Size: 128x128" in info and "Mask blur: 4" in info and "Denoising strength: 0.75" in info
    output = fetch_image(gallery_srcs(page, "img2img")[0])
    assert output.shape == (SIZE, SIZE, 3)
    far = ~grow(stroke, BLUR_REACH)
    assert far.sum() > 2000
    assert np.array_equal(output[far], source[far]), "pixels far from the stroke changed"
    core = stroke & ~grow(~stroke, 3)
    changed = np.any(output != source, axis=-1)
    assert changed[core].mean() > 0.9, f"only {changed[core].mean():.0%} of the pixels under the stroke changed"


def test_send_txt2img_result_to_img2img_and_inpaint(pages):
    page = pages.open()
    set_prompt(page, "a blue house by the sea")
    small_run(page, steps=3, seed=2468, size=64)
    set_number(page, "txt2img-cfg", 6.5)
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    made = fetch_image(gallery_srcs(page)[0])

    page.locator("#txt2img-send-img2img").click()
    expect(page.locator("#img2img-prompt textarea")).to_have_value("a blue house by the sea")
    expect(page.locator("#img2img-seed input")).to_have_value("2468")
    expect(page.locator("#img2img-width input[type=number]")).to_have_value("64")
    expect(page.locator("#img2img-cfg input[type=number]")).to_have_value("6.5")
    image = page.locator("#img2img-image img")
    expect(image).to_be_visible()
    pages.shot(page, "sent-to-img2img")
    assert np.array_equal(fetch_image(image.get_attribute("src")), made)

    page.get_by_role("tab", name="txt2img", exact=True).click()
    page.locator("#txt2img-send-inpaint").click()
    expect(page.locator("#img2img-source-tabs [role=tab][aria-selected=true]")).to_have_text("Inpaint")
    expect(page.locator("#img2img-inpaint .zoom-number")).not_to_have_text("45%", timeout=EDITOR_TIMEOUT)
    expect(page.locator("#img2img-inpaint-controls")).to_be_visible()
    pages.shot(page, "sent-to-inpaint")
    # Nothing painted: the engine runs plain img2img, and the page says so.
    small_run(page, steps=3, seed=2468, size=64, tab="img2img")
    start(page, tab="img2img")
    text = wait_for_progress(page, r"Done: 1 image", tab="img2img")
    assert "The mask is empty" in text
    assert "Mask blur" not in info_text(page, "img2img")
    # The page stays on the tab a person picks next (a tab set by the server used to come back).
    page.get_by_role("tab", name="txt2img", exact=True).click()
    page.wait_for_timeout(1500)
    expect(page.locator("#easel-tabs [role=tab][aria-selected=true]").first).to_have_text("txt2img")


def test_resize_by_scales_the_picture_and_the_result_goes_back_to_inpaint(pages, tmp_path):
    page = pages.open()
    pattern_image(tmp_path / "pattern.png")
    open_img2img(page, "img2img")
    page.locator("#img2img-image input[type=file]").set_input_files(str(tmp_path / "pattern.png"))
    page.locator("#img2img-resize-tabs").get_by_role("tab", name="Resize by").click()
    set_number(page, "img2img-scale", 0.5)
    expect(page.locator("#img2img-scale-size")).to_have_text("resize: from 128x128 to 64x64")
    set_prompt(page, "smaller", tab="img2img")
    set_number(page, "img2img-steps", 3)
    start(page, tab="img2img")
    wait_for_progress(page, r"Done: 1 image", tab="img2img")
    assert "Size: 64x64" in info_text(page, "img2img")
    assert fetch_image(gallery_srcs(page, "img2img")[0]).shape == (64, 64, 3)

    # Iterate: the result goes back in, to be inpainted, at its own size.
    page.locator("#img2img-send-inpaint").click()
    expect(page.locator("#img2img-source-tabs [role=tab][aria-selected=true]")).to_have_text("Inpaint")
    expect(page.locator("#img2img-inpaint .zoom-number")).not_to_have_text("45%", timeout=EDITOR_TIMEOUT)
    page.locator("#img2img-resize-tabs").get_by_role("tab", name="Resize to").click()
    expect(page.locator("#img2img-width input[type=number]")).to_have_value("64")


def test_bad_input_says_what_to_fix(pages, webui, tmp_path):
    page = pages.open()
    open_img2img(page)
    set_prompt(page, "nothing to start from", tab="img2img")
    page.locator("#img2img-prompt textarea").press("Control+Enter")  # the visible tab's Generate
    error = page.locator("#img2img-progress .easel-error")
    expect(error).to_contain_text("img2img needs an image to start from: upload one.")
    pages.shot(page, "no-image")
    assert progress_text(page) == "", "Ctrl+Enter on the img2img tab started txt2img"

    big = tmp_path / "big.png"
    Image.new("RGB", (640, 640), "navy").save(big)
    page.locator("#img2img-image input[type=file]").set_input_files(str(big))
    expect(page.locator("#img2img-image img")).to_be_visible()
    options = webui.url + "/sdapi/v1/options"
    httpx.post(options, json={"max_input_megapixels": 0.25}, timeout=10).raise_for_status()
    try:
        page.locator("#img2img-generate").click()
        expect(error).to_contain_text("The image is 640x640 (0.4 megapixels); the largest allowed is 0.25 megapixels")
    finally:
        httpx.post(options, json={"max_input_megapixels": 25.0}, timeout=10).raise_for_status()


def test_hires_fix_renders_the_target_size(pages):
    page = pages.open()
    set_prompt(page, "a lighthouse")
    small_run(page, steps=3, seed=99, size=64)
    page.locator("#txt2img-hr-enable input").check()
    expect(page.locator("#txt2img-hr-settings")).to_be_visible()
    set_number(page, "txt2img-hr-steps", 2)
    set_number(page, "txt2img-hr-scale", 2)
    expect(page.locator("#txt2img-hr-size")).to_have_text("from 64x64 to 128x128")
    choose(page, "txt2img-hr-upscaler", "Latent")
    pages.shot(page, "hires-settings")
    start(page)
    text = wait_for_progress(page, r"Done: 1 image")
    info = info_text(page)
    assert "Hires upscale: 2" in info and "Hires upscaler: Latent" in info and "Hires steps: 2" in info, info
    assert re.search(r"Size: 64x64", info)
    assert fetch_image(gallery_srcs(page)[0]).shape == (128, 128, 3), text


def test_png_info_and_history_send_the_image_and_its_parameters(pages, tmp_path):
    page = pages.open()
    marker = f"a red kite {tmp_path.name}"
    set_prompt(page, marker)
    small_run(page, steps=3, seed=1357, size=64)
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    saved = tmp_path / "made.png"
    saved.write_bytes(httpx.get(gallery_srcs(page)[0], timeout=10).content)
    made = np.asarray(Image.open(saved).convert("RGB"))

    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#png-info-file input[type=file]").set_input_files(str(saved))
    expect(page.locator("#png-info-table")).to_contain_text("1357")
    page.locator("#png-info-send-inpaint").click()  # the page waits for the editor to be drawn first
    expect(page.locator("#img2img-prompt textarea")).to_have_value(marker, timeout=EDITOR_TIMEOUT)
    expect(page.locator("#img2img-seed input")).to_have_value("1357")
    expect(page.locator("#img2img-source-tabs [role=tab][aria-selected=true]")).to_have_text("Inpaint")
    expect(page.locator("#img2img-inpaint .zoom-number")).not_to_have_text("45%", timeout=EDITOR_TIMEOUT)
    pages.shot(page, "png-info-sent-to-inpaint")

    page.get_by_role("tab", name="History").click()
    page.locator("#history-text textarea, #history-text input").first.fill(marker)
    page.locator("#history-search").click()
    expect(page.locator("#history-message")).to_have_text("1 image(s)")
    page.locator("#history-gallery img").first.click()
    page.locator("#history-send-img2img").click()
    expect(page.locator("#img2img-source-tabs [role=tab][aria-selected=true]")).to_have_text("img2img")
    image = page.locator("#img2img-image img")
    expect(image).to_be_visible(timeout=EDITOR_TIMEOUT)  # a busy 2-core machine can take over 5 s here
    assert np.array_equal(fetch_image(image.get_attribute("src")), made)
    expect(page.locator("#img2img-prompt textarea")).to_have_value(marker)
