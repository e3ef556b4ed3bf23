"""Extensions in a real browser: the built-in X/Y/Z plot run from txt2img's Script dropdown (a
labelled grid first, then every cell with its infotext), and an extension disabled in Settings
losing its controls after the restart the page asks for."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import PageRecorder
from tests.browser.page_actions import choose, gallery_srcs, info_text, set_prompt, small_run, start, wait_for_progress
from tests.webui_server import Server

EXTENSIONS = Path(__file__).resolve().parents[2] / "extensions"
WATCH_PROGRESS = """
() => {
  window.__progressLines = [];
  new MutationObserver(() => {
    const text = (document.querySelector('#txt2img-progress') || {}).innerText || '';
    if (text && window.__progressLines[window.__progressLines.length - 1] !== text) window.__progressLines.push(text);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""


def fetch(url: str) -> Image.Image:
    return Image.open(io.BytesIO(httpx.get(url, timeout=10).content))


def test_xyz_plot_from_the_script_dropdown(pages):
    page = pages.open()
    set_prompt(page, "a blue square")
    small_run(page, steps=3, seed=77, size=64)
    choose(page, "txt2img-script", "X/Y/Z plot")
    choose(page, "txt2img-x-y-z-plot-x-type", "CFG Scale")
    page.locator("#txt2img-x-y-z-plot-x-values textarea").fill("4, 8")
    choose(page, "txt2img-x-y-z-plot-y-type", "Steps")
    page.locator("#txt2img-x-y-z-plot-y-values textarea").fill("2-3")
    page.evaluate(WATCH_PROGRESS)
    start(page)
    wait_for_progress(page, r"Done: 4 image")
    lines = page.evaluate("window.__progressLines")
    assert any("Cell 2 of 4" in line for line in lines), lines  # each cell shown as it finished
    pages.shot(page, "xyz-plot-done")
    sources = gallery_srcs(page)
    assert len(sources) == 5  # the grid, then the four cells
    grid = fetch(sources[0])
    assert grid.width == 64 + 2 * 64 and grid.height > 2 * 64
    assert "CFG scale: 4" in info_text(page) and "Steps: 2" in info_text(page)
    assert all(fetch(src).size == (64, 64) for src in sources[1:])

    # A bad value is an error line before anything runs.
    page.locator("#txt2img-x-y-z-plot-x-values textarea").fill("4, lots")
    start(page)
    wait_for_progress(page, r"X axis \(CFG Scale\): 'lots' is not a number")


def test_disabling_an_extension_removes_its_controls_after_a_restart(browser, tmp_path_factory, tmp_path):
    from tools.make_test_models import write_test_checkpoint

    root = tmp_path_factory.mktemp("extensions-ui")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    write_test_checkpoint(root / "models" / "Stable-diffusion" / "tiny.safetensors", "sd1", "tiny", seed=3)
    shutil.copytree(EXTENSIONS / "xyz-plot", root / "extensions" / "xyz-plot")
    flags = ["--models-dir", str(root / "models"), "--data-dir", str(root / "data"), "--extensions-dir", str(root / "extensions")]

    server = Server("extensions-ui", flags, root)
    try:
        server.wait_ready("/")
        pages = PageRecorder(browser, server, tmp_path)
        page = pages.open()
        expect(page.locator("#txt2img-script")).to_be_attached()
        page.get_by_role("tab", name="Settings").click()
        expect(page.locator("#extensions-status")).to_contain_text("loaded")
        page.locator("#extensions-enabled").get_by_label("xyz-plot").uncheck()
        page.locator("#extensions-apply").click()
        expect(page.locator("#extensions-message")).to_contain_text("Restart Easel to load or unload: xyz-plot")
        pages.shot(page, "extension-disabled")
        pages.close()
    finally:
        server.stop()

    server = Server("extensions-ui-restarted", flags, root)
    try:
        server.wait_ready("/")
        pages = PageRecorder(browser, server, tmp_path)
        page = pages.open()
        expect(page.locator("#txt2img-prompt")).to_be_visible()
        expect(page.locator("#txt2img-script")).not_to_be_attached()
        page.get_by_role("tab", name="Settings").click()
        expect(page.locator("#extensions-status")).to_contain_text("disabled")
        assert pages.toasts() == [] and pages.outside_requests() == []
        pages.close()
    finally:
        server.stop()
