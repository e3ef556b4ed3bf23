"""A fresh install with no checkpoint (and the bundled demo model turned off with --no-demo-model,
since a fresh install otherwise loads it): the page still opens, says where to put one, and Generate
answers with that sentence instead of hanging or showing a traceback."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PageRecorder
from tests.webui_server import Server


@pytest.fixture(scope="module")
def empty_webui(tmp_path_factory):
    root = tmp_path_factory.mktemp("no-model")
    (root / "models").mkdir()
    server = Server("no-model-ui", ["--models-dir", str(root / "models"), "--data-dir", str(root / "data"), "--no-demo-model"], root)
    try:
        server.wait_ready("/")
        yield server
    finally:
        server.stop()


def test_generate_without_any_checkpoint_says_where_to_put_one(browser, empty_webui, tmp_path):
    pages = PageRecorder(browser, empty_webui, tmp_path)
    try:
        page = pages.open()
        expect(page.locator("#easel-status")).to_contain_text("No model loaded. Put a checkpoint in")
        page.locator("#txt2img-prompt textarea").fill("a cat")
        page.locator("#txt2img-generate").click()
        error = page.locator("#txt2img-progress .easel-error")
        expect(error).to_contain_text("No checkpoint found. Put a .safetensors or .ckpt file in", timeout=60_000)
        pages.shot(page, "no-model")
        assert pages.toasts() == [] and pages.outside_requests() == []
    finally:
        pages.close()
