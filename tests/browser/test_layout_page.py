"""The page as a new user sees it, on the demo model, at the window sizes people have: after Generate
the live preview and then the finished picture are on screen without scrolling (1366x768 and
1920x1080), and a phone-sized window (390x844) stacks the parameters above the results."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.page_actions import set_prompt

DESKTOP = [(1366, 768), (1920, 1080)]


def inside_viewport(page, selector: str) -> dict:
    """The element's box, asserted to lie wholly inside the window (no scrolling happened)."""
    box = page.locator(selector).first.bounding_box()
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    assert box is not None, f"{selector} is not shown"
    assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width and box["y"] + box["height"] <= height, (selector, box, (width, height))
    return box


@pytest.mark.parametrize("width, height", DESKTOP, ids=[f"{w}x{h}" for w, h in DESKTOP])
def test_the_preview_and_the_picture_are_in_view_without_scrolling(demo_pages, width, height):
    page = demo_pages.open(width, height)
    expect(page.locator("#txt2img-width input[type=number]")).to_have_value("64")  # the demo model's own size
    set_prompt(page, "a red circle on a white background")
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-preview")).to_be_visible()
    preview = inside_viewport(page, "#txt2img-preview")
    page.locator("#txt2img-progress .easel-progress[data-state=running]").wait_for(timeout=60_000)
    expect(page.locator("#txt2img-preview img")).to_be_visible(timeout=60_000)  # a live preview arrived
    inside_viewport(page, "#txt2img-preview img")
    page.locator("#txt2img-progress .easel-progress[data-state=done]").wait_for(timeout=120_000)
    expect(page.locator("#txt2img-gallery img").first).to_be_visible()
    picture = inside_viewport(page, "#txt2img-gallery img")
    assert page.evaluate("window.scrollY") == 0, "the page scrolled"
    assert abs(picture["y"] - preview["y"]) < 60, "the picture should appear where the preview was"
    parameters, results = (page.locator(f"#txt2img-{part}").bounding_box() for part in ("parameters", "results"))
    assert parameters["x"] + parameters["width"] <= results["x"] + 1, "the parameters and the results sit side by side"
    demo_pages.shot(page, f"layout-{width}x{height}")


def test_a_phone_window_stacks_parameters_above_results(demo_pages):
    page = demo_pages.open(390, 844)
    parameters, results = (page.locator(f"#txt2img-{part}").bounding_box() for part in ("parameters", "results"))
    assert results["y"] >= parameters["y"] + parameters["height"] - 1, (parameters, results)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, "the page is wider than the phone"
    generate = page.locator("#txt2img-generate").bounding_box()
    prompt = page.locator("#txt2img-prompt").bounding_box()
    assert generate["y"] > prompt["y"] and generate["width"] > 200, "Generate goes under the prompts, full width"
    demo_pages.shot(page, "layout-390x844")


def test_the_tab_title_shows_the_progress_while_a_job_runs(demo_pages):
    page = demo_pages.open(1366, 768)
    set_prompt(page, "a blue square")
    page.locator("#txt2img-steps input[type=number]").fill("60")
    page.locator("#txt2img-steps input[type=number]").press("Enter")
    page.locator("#txt2img-generate").click()
    page.wait_for_function("/^\\[\\d+%\\] Easel$/.test(document.title)", timeout=60_000)
    page.locator("#txt2img-progress .easel-progress[data-state=done]").wait_for(timeout=120_000)
    page.wait_for_function("document.title === 'Easel'")


def test_the_page_follows_a_dark_system_theme(demo_pages):
    page = demo_pages.open(1366, 768, color_scheme="dark")
    page.wait_for_function("document.body.classList.contains('dark') || document.querySelector('.dark') !== null")
    background = page.evaluate("getComputedStyle(document.querySelector('gradio-app') || document.body).backgroundColor")
    red, green, blue = (int(part) for part in background[background.index("(") + 1:background.index(")")].split(",")[:3])
    assert red + green + blue < 3 * 80, f"a dark system theme should give a dark page, got {background}"
    demo_pages.shot(page, "dark")


def test_prompt_shortcuts_change_the_emphasis_and_move_items(demo_pages):
    page = demo_pages.open(1366, 768)
    box = page.locator("#txt2img-prompt textarea")
    box.fill("a cat, a dog, grass")
    box.evaluate("el => el.setSelectionRange(2, 5)")  # "cat" selected
    box.press("Control+ArrowUp")
    expect(box).to_have_value("a (cat:1.1), a dog, grass")
    box.press("Control+ArrowUp")
    expect(box).to_have_value("a (cat:1.2), a dog, grass")
    box.press("Control+ArrowDown")
    box.press("Control+ArrowDown")
    expect(box).to_have_value("a cat, a dog, grass")  # back at 1: the brackets go
    box.evaluate("el => el.setSelectionRange(10, 10)")  # the cursor inside "dog", nothing selected
    box.press("Control+ArrowDown")
    expect(box).to_have_value("a cat, a (dog:0.9), grass")
    box.fill("a cat, a dog, grass")
    box.evaluate("el => el.setSelectionRange(3, 3)")  # in "a cat"
    box.press("Alt+ArrowRight")
    expect(box).to_have_value("a dog, a cat, grass")
    box.press("Alt+ArrowRight")
    expect(box).to_have_value("a dog, grass, a cat")
    box.press("Alt+ArrowLeft")
    expect(box).to_have_value("a dog, a cat, grass")
