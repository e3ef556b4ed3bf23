"""Browser tests: a real `python webui.py` on two tiny checkpoints, driven by Debian's Chromium
through Playwright (never Playwright's own browser download).

Every page records the requests it makes; a request to anything but the test server fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.webui_server import Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
CHECKPOINTS = {"alpha": 1, "beta": 2}
# Records every Gradio error pop-up (toast) a page shows; they vanish after seconds, so the record
# is what the fixture checks when the test ends.
RECORD_TOASTS = """
window.__toasts = [];
new MutationObserver(() => {
  for (const el of document.querySelectorAll('[data-testid="toast-body"], .toast-body')) {
    if (!el.dataset.easelSeen) { el.dataset.easelSeen = '1'; window.__toasts.push(el.innerText); }
  }
}).observe(document, {subtree: true, childList: true});
"""


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.timeout(240))


def write_test_embedding(path: Path) -> None:
    """A 2-vector A1111-format embedding for the tiny SD1 text encoder (width 32), with a preview."""
    import torch
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(7))
    torch.save({"string_to_param": {"*": vectors}, "name": path.stem, "step": 100}, path)
    Image.new("RGB", (64, 64), (250, 200, 40)).save(path.with_suffix(".png"))


@pytest.fixture(scope="session")
def webui(tmp_path_factory) -> Server:
    from tools.make_test_models import write_test_checkpoint

    root = tmp_path_factory.mktemp("browser")
    checkpoints = root / "models" / "Stable-diffusion"
    checkpoints.mkdir(parents=True)
    for name, seed in CHECKPOINTS.items():
        write_test_checkpoint(checkpoints / f"{name}.safetensors", "sd1", "tiny", seed=seed)
    write_test_embedding(root / "models" / "embeddings" / "shimmer.pt")
    server = Server("browser-ui", ["--api", "--models-dir", str(root / "models"), "--data-dir", str(root / "data")], root)
    server.data_dir = root / "data"
    try:
        server.wait_ready("/")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup_env.sh --dev does it as root).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives each launch a fresh temporary profile (its own --user-data-dir).
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


class PageRecorder:
    """Opens pages in a fresh browser context and remembers every URL they request."""

    def __init__(self, browser, server: Server, shots: Path):
        self.browser, self.server, self.shots = browser, server, shots
        self.contexts = []
        self.pages = []
        self.urls: list[str] = []

    def open(self, width: int = 1280, height: int = 1000, locale: str = "en-US", color_scheme: str = "light"):
        context = self.browser.new_context(viewport={"width": width, "height": height}, locale=locale, color_scheme=color_scheme)
        context.add_init_script(RECORD_TOASTS)
        context.on("request", lambda request: self.urls.append(request.url))
        self.contexts.append(context)
        page = context.new_page()
        self.pages.append(page)
        page.set_default_timeout(60_000)
        page.goto(self.server.url + "/")
        page.locator("#txt2img-generate").wait_for()
        return page

    def shot(self, page, name: str) -> Path:
        path = self.shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def outside_requests(self) -> list[str]:
        return [url for url in self.urls if urlparse(url).scheme in ("http", "https", "ws", "wss") and urlparse(url).hostname != "127.0.0.1"]

    def toasts(self) -> list[str]:
        """Every pop-up the pages showed (Gradio shows errors the handlers did not turn into text)."""
        return [text for page in self.pages if not page.is_closed() for text in page.evaluate("window.__toasts || []")]

    def close(self):
        for context in self.contexts:
            context.close()


@pytest.fixture(scope="session")
def demo_webui(tmp_path_factory) -> Server:
    """A real `python webui.py` as a new user starts it: an empty models folder, so Easel runs its
    bundled demo model (tabs open at the demo's 64x64 and CFG 2.5)."""
    root = tmp_path_factory.mktemp("browser-demo")
    (root / "models").mkdir()
    server = Server("browser-demo", ["--models-dir", str(root / "models"), "--data-dir", str(root / "data")], root)
    try:
        server.wait_ready("/")
        yield server
    finally:
        server.stop()


@pytest.fixture
def demo_pages(browser, demo_webui, tmp_path):
    recorder = PageRecorder(browser, demo_webui, tmp_path)
    try:
        yield recorder
        assert recorder.outside_requests() == [], "the page reached outside 127.0.0.1"
        assert recorder.toasts() == [], "the page showed error pop-ups"
    finally:
        recorder.close()


@pytest.fixture
def pages(browser, webui, tmp_path):
    recorder = PageRecorder(browser, webui, tmp_path)
    try:
        yield recorder
        assert recorder.outside_requests() == [], "the page reached outside 127.0.0.1"
        assert recorder.toasts() == [], "the page showed error pop-ups"
        assert recorder.urls, "no requests were recorded at all"
    finally:
        recorder.close()
