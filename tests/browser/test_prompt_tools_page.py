"""Regional and dynamic prompts in a real browser: the regional layout is drawn when the section is
on and the prompt has a BREAK; "Preview prompts" lists the prompts a template gives in combinatorial
mode; a wildcard file in the data folder shows up in the list with its lines."""

from __future__ import annotations

import io

from PIL import Image
from playwright.sync_api import expect

from modules.ui.regional_panel import COLOURS
from tests.browser.page_actions import set_prompt


def test_the_regional_layout_and_the_dynamic_preview(pages, webui):
    page = pages.open()
    set_prompt(page, "a red circle BREAK a blue square")
    page.locator("#txt2img-regional").get_by_text("Regional prompts", exact=True).first.click()
    page.locator("#txt2img-regional-active input").check()
    expect(page.locator("#txt2img-regional-layout img")).to_be_visible(timeout=20_000)
    page.locator("#txt2img-regional-mode").get_by_text("Prompt", exact=True).click()  # regions found while drawing: nothing to draw yet
    expect(page.locator("#txt2img-regional-message")).to_contain_text("Prompt mode finds the regions", timeout=20_000)
    page.locator("#txt2img-regional-mode").get_by_text("Matrix", exact=True).click()

    set_prompt(page, "a {red|blue} {circle|square}")
    page.locator("#txt2img-dynamic-prompts").get_by_text("Dynamic Prompts", exact=True).first.click()
    page.locator("#txt2img-dynamic-combinatorial input").check()
    page.locator("#txt2img-dynamic-preview-button").click()
    preview = page.locator("#txt2img-dynamic-preview")
    expect(preview).to_contain_text("4 prompt(s):")
    for prompt in ("a red circle", "a red square", "a blue circle", "a blue square"):
        expect(preview).to_contain_text(prompt)

    set_prompt(page, "a __no_such_thing__")
    page.locator("#txt2img-dynamic-preview-button").click()
    expect(preview).to_contain_text("no_such_thing")


def test_painting_a_region_mask(pages, webui):
    """Mask mode: a blank canvas at the picture's shape, one region painted with the brush's first
    colour and another with the second: the layout drawing shows both, with no error."""
    page = pages.open()
    set_prompt(page, "a red circle BREAK a blue square")
    page.locator("#txt2img-regional").get_by_text("Regional prompts", exact=True).first.click()
    page.locator("#txt2img-regional-active input").check()
    page.locator("#txt2img-regional-mode").get_by_text("Mask", exact=True).click()
    page.locator("#txt2img-regional-new-canvas").click()
    editor = page.locator("#txt2img-regional-mask")
    expect(editor.locator("canvas").first).to_be_visible(timeout=20_000)
    editor.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    box = editor.locator("canvas").first.bounding_box()
    assert box is not None
    middle_x, middle_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def paint(x_from: float, x_to: float) -> None:
        editor.locator("button[aria-label='Brush']").click()
        for row in range(-4, 5):
            y = middle_y + row * 18
            page.mouse.move(x_from, y)
            page.mouse.down()
            page.mouse.move(x_to, y, steps=8)
            page.mouse.up()

    paint(middle_x - 100, middle_x - 15)
    editor.locator("button[aria-label='Color']").click()
    editor.locator("button.color").nth(1).click()  # the brush's second colour: region 2
    page.keyboard.press("Escape")
    paint(middle_x + 15, middle_x + 100)
    layout = page.locator("#txt2img-regional-layout img")
    expect(layout).to_be_visible(timeout=20_000)
    expect(page.locator("#txt2img-regional-message")).not_to_contain_text("Error", timeout=5_000)
    for _ in range(30):  # the drawing follows the strokes after a round trip to the server
        drawing = Image.open(io.BytesIO(layout.screenshot())).convert("RGB")
        width, height = drawing.size
        left, right = drawing.getpixel((width // 4, height // 2)), drawing.getpixel((3 * width // 4, height // 2))
        if close(right, COLOURS[1]):
            break
        page.wait_for_timeout(500)
    assert close(left, COLOURS[0]) and close(right, COLOURS[1]), (left, right)


def close(pixel: tuple, colour: tuple) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(pixel, colour))
