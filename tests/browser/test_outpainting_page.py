"""The Outpainting tab in a real browser: a txt2img result sent over with its prompt and seed, the
enlarged canvas shown before generating, right + down extended with the original kept top left,
the result sent back to outpainting with its outpaint settings, and the errors a user can make.
"""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image
from playwright.sync_api import expect

from tests.browser.page_actions import gallery_srcs, info_text, set_number, set_prompt, small_run, start, wait_for_progress


def fetch_image(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(httpx.get(url, timeout=10).content)).convert("RGB"))


def set_directions(page, wanted: set[str]) -> None:
    for side in ("left", "right", "up", "down"):
        box = page.locator("#outpaint-directions").get_by_label(side, exact=True)
        if box.is_checked() != (side in wanted):
            box.click()


def test_send_a_generated_image_then_extend_it_right_and_down(pages):
    page = pages.open()
    set_prompt(page, "a red barn in a field")
    small_run(page, steps=3, seed=1357, size=64)
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    made = fetch_image(gallery_srcs(page)[0])

    page.locator("#txt2img-send-outpainting").click()
    expect(page.locator("#easel-tabs [role=tab][aria-selected=true]").first).to_have_text("Outpainting")
    expect(page.locator("#outpaint-prompt textarea")).to_have_value("a red barn in a field")
    expect(page.locator("#outpaint-seed input")).to_have_value("1357")
    sent = page.locator("#outpaint-image img")
    expect(sent).to_be_visible()
    assert np.array_equal(fetch_image(sent.get_attribute("src")), made)

    set_directions(page, {"right", "down"})
    set_number(page, "outpaint-pixels", 32)
    expect(page.locator("#outpaint-canvas-size")).to_contain_text("64x64 → 96x96: right +32, down +32")
    canvas = page.locator("#outpaint-canvas img")
    expect(canvas).to_be_visible()
    shown = fetch_image(canvas.get_attribute("src"))
    assert shown.shape == (96, 96, 3) and np.array_equal(shown[:64, :64], made)
    assert set(np.unique(shown[80:, 80:])) <= {150, 200}  # the new area is the grey checkerboard
    set_number(page, "outpaint-steps", 3)
    pages.shot(page, "outpainting-before")

    start(page, tab="outpaint")
    wait_for_progress(page, r"Done: 1 image", tab="outpaint")
    result = fetch_image(gallery_srcs(page, "outpaint")[0])
    pages.shot(page, "outpainting-done")
    assert result.shape == (96, 96, 3)
    assert np.abs(result[:64, :64].astype(int) - made.astype(int)).max() <= 1  # Easel fill never touches the picture
    assert result[64:, :].std() > 1  # something was painted in the new area
    info = info_text(page, "outpaint")
    assert "Outpaint method: Easel fill" in info and "Outpaint directions: right down" in info and "Size: 96x96" in info

    # Outpainting the result again starts from its settings.
    set_directions(page, {"left"})
    set_number(page, "outpaint-pixels", 64)
    page.locator("#outpaint-send-outpainting").click()
    expect(page.locator("#outpaint-directions").get_by_label("right", exact=True)).to_be_checked()
    expect(page.locator("#outpaint-directions").get_by_label("left", exact=True)).not_to_be_checked()
    expect(page.locator("#outpaint-pixels input[type=number]")).to_have_value("32")
    expect(page.locator("#outpaint-canvas-size")).to_contain_text("96x96 → 128x128")


def test_methods_show_their_own_controls_and_errors_say_what_to_fix(pages, tmp_path):
    page = pages.open()
    page.get_by_role("tab", name="Outpainting", exact=True).click()
    start(page, tab="outpaint")
    wait_for_progress(page, r"Upload a picture to extend first", tab="outpaint")

    page.locator("#outpaint-method").get_by_label("Outpainting mk2").click()
    expect(page.locator("#outpaint-falloff")).to_be_visible()
    expect(page.locator("#outpaint-window")).to_be_visible()
    expect(page.locator("#outpaint-masked-content")).to_be_hidden()
    expect(page.locator("#outpaint-method-hint")).to_contain_text("Recommended settings")
    page.locator("#outpaint-method").get_by_label("Poor man's outpainting").click()
    expect(page.locator("#outpaint-masked-content")).to_be_visible()
    expect(page.locator("#outpaint-falloff")).to_be_hidden()
    expect(page.locator("#outpaint-mask-blur input[type=number]")).to_have_value("4")  # its own default

    path = tmp_path / "small.png"
    Image.new("RGB", (40, 24), (20, 120, 220)).save(path)
    page.locator("#outpaint-image input[type=file]").set_input_files(str(path))
    expect(page.locator("#outpaint-canvas-size")).to_contain_text("40x24 → 320x320")  # rounded up to multiples of 64, as A1111
    set_directions(page, set())
    expect(page.locator("#outpaint-canvas-size")).to_contain_text("Tick at least one side")
    start(page, tab="outpaint")
    wait_for_progress(page, r"at least one direction", tab="outpaint")


def test_history_sends_an_outpainted_picture_back_with_its_settings(pages, tmp_path):
    page = pages.open()
    marker = f"a green hill {tmp_path.name}"
    source = tmp_path / "hill.png"
    Image.new("RGB", (64, 64), (40, 160, 60)).save(source)
    page.get_by_role("tab", name="Outpainting", exact=True).click()
    page.locator("#outpaint-image input[type=file]").set_input_files(str(source))
    page.locator("#outpaint-prompt textarea").fill(marker)
    set_directions(page, {"up"})
    set_number(page, "outpaint-pixels", 16)
    set_number(page, "outpaint-steps", 2)
    start(page, tab="outpaint")
    wait_for_progress(page, r"Done: 1 image", tab="outpaint")

    page.get_by_role("tab", name="History").click()
    page.locator("#history-text textarea, #history-text input").first.fill(marker)
    page.locator("#history-search").click()
    expect(page.locator("#history-message")).to_have_text("1 image(s)")
    page.locator("#history-gallery img").first.click()
    page.locator("#history-send-outpainting").click()
    expect(page.locator("#easel-tabs [role=tab][aria-selected=true]").first).to_have_text("Outpainting")
    expect(page.locator("#outpaint-directions").get_by_label("up", exact=True)).to_be_checked()
    expect(page.locator("#outpaint-directions").get_by_label("right", exact=True)).not_to_be_checked()
    expect(page.locator("#outpaint-pixels input[type=number]")).to_have_value("16")
    expect(page.locator("#outpaint-canvas-size")).to_contain_text("64x80 →", timeout=20_000)
