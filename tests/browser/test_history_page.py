"""The History tab in a real browser: a generated image is listed, found by its prompt, opened,
sent back to txt2img, exported and deleted (file and row)."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.page_actions import info_text, set_prompt, small_run, start, wait_for_progress


def test_find_open_send_export_delete(pages, webui):
    page = pages.open()
    marker = f"history marker {time.time_ns()}"
    set_prompt(page, marker)
    small_run(page, steps=3, seed=777, size=64)
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    made = info_text(page).strip()

    page.get_by_role("tab", name="History").click()
    page.locator("#history-text textarea, #history-text input").first.fill(marker)
    page.locator("#history-search").click()
    expect(page.locator("#history-message")).to_have_text("1 image(s)")
    page.locator("#history-gallery img").first.click()
    expect(page.locator("#history-infotext")).to_have_text(made)
    pages.shot(page, "history")

    page.locator("#history-export").click()
    link = page.locator("#history-export-file a").first
    expect(link).to_be_visible()
    saved = list((Path(webui.data_dir) / "exports").glob("easel-history-*.txt"))
    assert any(path.read_text(encoding="utf-8") == made for path in saved)

    page.locator("#history-send-txt2img").click()
    expect(page.locator("#txt2img-prompt textarea")).to_have_value(marker)
    expect(page.locator("#txt2img-seed input")).to_have_value("777")

    page.get_by_role("tab", name="History").click()
    page.locator("#history-search").click()
    page.locator("#history-gallery img").first.click()
    files_before = list((Path(webui.data_dir) / "outputs").rglob("*.png"))
    page.locator("#history-delete").click()
    expect(page.locator("#history-message")).to_have_text("0 image(s)")
    files_after = list((Path(webui.data_dir) / "outputs").rglob("*.png"))
    assert len(files_after) == len(files_before) - 1


def test_bad_day_says_how_to_write_it(pages):
    page = pages.open()
    page.get_by_role("tab", name="History").click()
    page.locator("#history-day textarea, #history-day input").first.fill("28/11/2026")
    page.locator("#history-search").click()
    expect(page.locator("#history-message .easel-error")).to_contain_text("Write the day as YYYY-MM-DD")
