"""The txt2img page in a real browser: what a person sees while and after generating.

Each test asserts on what the page shows (preview images, progress text, gallery, info text, status
line) and saves a screenshot in its tmp dir.
"""

from __future__ import annotations

import io
import re
import time

import httpx
from PIL import Image
from playwright.sync_api import expect

from tests.browser.page_actions import (  # noqa: E402
    WATCH_PREVIEWS, choose, gallery_srcs, info_text, live_previews, progress_text, set_number, set_prompt, small_run, start,
    wait_for_progress,
)


def test_generate_streams_previews_then_fills_gallery_and_info(pages):
    page = pages.open()
    page.evaluate(WATCH_PREVIEWS)
    set_prompt(page, "a red circle on a blue background")
    small_run(page, steps=30, seed=1234, size=128)
    # The first count loads the tokenizer (seconds on a busy machine if the model load has not yet).
    expect(page.locator("#txt2img-token-counter .easel-tokens")).to_have_text("7/75", timeout=60_000)
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    page.locator("#easel-status", has_text="Active: alpha.safetensors [").wait_for(timeout=10_000)
    pages.shot(page, "after-generate")

    during = live_previews(page)
    assert len(set(during)) >= 2, f"expected several live previews before the end, saw {during}"
    srcs = gallery_srcs(page)
    assert len(srcs) >= 1
    info = info_text(page)
    assert info.startswith("a red circle on a blue background\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 128x128")
    assert "Model: alpha" in info

    # The gallery serves the file as PNG with its parameters, not a re-encoded WebP.
    response = httpx.get(srcs[0], timeout=10)
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.size == (128, 128)
    assert image.info["parameters"] == info.strip()


def test_switch_checkpoint_from_dropdown_then_generate(pages):
    page = pages.open()
    choose(page, "easel-checkpoint", "beta.safetensors")
    page.locator("#easel-status", has_text="Active: beta.safetensors").wait_for(timeout=60_000)
    set_prompt(page, "a green square")
    small_run(page, steps=4, seed=7)
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    pages.shot(page, "beta")
    assert "Model: beta" in info_text(page)
    choose(page, "easel-checkpoint", "alpha.safetensors")
    page.locator("#easel-status", has_text="Active: alpha.safetensors").wait_for(timeout=60_000)


def test_interrupt_stops_a_long_run(pages):
    page = pages.open()
    set_prompt(page, "a long run")
    small_run(page, steps=20, seed=99, batch_count=40)
    start(page)
    wait_for_progress(page, r"Batch 2/40 · Step \d+/20")
    page.locator("#txt2img-interrupt").click()
    stopped_at = time.monotonic()
    text = wait_for_progress(page, r"Interrupted: \d+ image", timeout=30)
    pages.shot(page, "interrupted")
    assert time.monotonic() - stopped_at < 10
    made = int(re.search(r"Interrupted: (\d+) image", text).group(1))
    assert 1 <= made < 40
    assert len(set(gallery_srcs(page))) == made + 1  # and the grid of them, first
    assert page.locator("#txt2img-gallery").get_by_text("Grid").count() >= 1


def test_escape_interrupts_and_ctrl_enter_generates(pages):
    page = pages.open()
    set_prompt(page, "keyboard")
    small_run(page, steps=20, seed=5, batch_count=40)
    start(page, "Control+Enter")
    wait_for_progress(page, r"Step \d+/20")
    page.keyboard.press("Escape")
    wait_for_progress(page, r"Interrupted", timeout=30)


def test_settings_preview_method_takes_effect(pages):
    page = pages.open()
    page.get_by_role("tab", name="Settings").click()
    choose(page, "setting-show_progress_type", "None")
    page.locator("#settings-apply").click()
    page.locator("#settings-result", has_text="Saved: Live preview method = None.").wait_for()
    pages.shot(page, "settings-saved")
    try:
        page.get_by_role("tab", name="txt2img").click()
        page.evaluate(WATCH_PREVIEWS)
        set_prompt(page, "no previews please")
        small_run(page, steps=30, seed=3, size=128)
        start(page)
        wait_for_progress(page, r"Done: 1 image")
        during = live_previews(page)
        assert during == [], f"previews were shown with the method set to None: {during}"
    finally:
        page.get_by_role("tab", name="Settings").click()
        choose(page, "setting-show_progress_type", "Approx cheap")
        page.locator("#settings-apply").click()
        page.locator("#settings-result", has_text="Saved: Live preview method = Approx cheap.").wait_for()
    page.get_by_role("tab", name="txt2img").click()
    page.evaluate(WATCH_PREVIEWS)
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    assert len(set(live_previews(page))) >= 2, (page.evaluate("window.__previews"), progress_text(page))


def test_two_browsers_see_only_their_own_job(pages):
    first, second = pages.open(), pages.open()
    for page in (first, second):
        page.evaluate(WATCH_PREVIEWS)
    set_prompt(first, "first person, long")
    small_run(first, steps=20, seed=11, batch_count=40)
    set_prompt(second, "second person")
    small_run(second, steps=8, seed=22)
    start(first)
    wait_for_progress(first, r"Step \d+/20")
    start(second)
    wait_for_progress(second, r"Queued: next to run")
    pages.shot(second, "second-queued")
    assert second.evaluate("window.__previews") == [], "the queued user saw someone else's preview"

    first.locator("#txt2img-interrupt").click()  # stops the first job only
    wait_for_progress(first, r"Interrupted")
    wait_for_progress(second, r"Done: 1 image")
    pages.shot(second, "second-done")
    assert "Seed: 22" in info_text(second) and "second person" in info_text(second)
    assert "first person" in info_text(first)
    assert len(gallery_srcs(second)) == 1


def test_bad_input_says_what_to_fix_and_loses_nothing(pages):
    page = pages.open()
    set_prompt(page, "keep this prompt")
    small_run(page, steps=4, seed=8)
    set_number(page, "txt2img-width", 100)
    page.locator("#txt2img-generate").click()
    error = page.locator("#txt2img-progress .easel-error")
    error.wait_for()
    pages.shot(page, "bad-width")
    assert "width 100 is not a multiple of 8: use 96 or 104." in error.inner_text()
    assert page.locator("#txt2img-prompt textarea").input_value() == "keep this prompt"
    set_number(page, "txt2img-width", 96)
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    assert "Size: 96x64" in info_text(page)


def test_alt_enter_skips_to_the_next_image(pages):
    page = pages.open()
    set_prompt(page, "skipping")
    small_run(page, steps=150, seed=5, batch_count=2)
    start(page)
    wait_for_progress(page, r"Step \d+/150")
    page.keyboard.press("Alt+Enter")  # the first image stops where it is; the second one starts
    wait_for_progress(page, r"Batch 2/2", timeout=30)
    page.keyboard.press("Escape")
    wait_for_progress(page, r"Interrupted", timeout=30)
