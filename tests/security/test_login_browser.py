"""The gate in front of the page (modules/ui/access.py) still lets a person log in with a real
browser: the login form loads with no request refused, the right password opens the page (the
checkpoint dropdown shows), a wrong one does not."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS
from tests.security.conftest import UI_PASSWORD, UI_USER


class BrowserThread:
    """A Chromium driven by Playwright's sync API from a thread of its own. Playwright refuses its
    sync API in a thread with a running asyncio loop, and earlier tests in the same process (servers
    and clients run in-process) can leave one in the main thread; a fresh thread never has one."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.playwright = self.browser = None

    def start(self) -> None:
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)

    def stop(self) -> None:
        self.browser.close()
        self.playwright.stop()

    def run(self, action: Callable[[Any], None]) -> None:
        """Calls `action(browser)` in the browser's thread; its exceptions are raised here."""
        self.pool.submit(action, self.browser).result()


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup_env.sh --dev does it as root).")
    driver = BrowserThread()
    driver.pool.submit(driver.start).result()
    try:
        yield driver
    finally:
        driver.pool.submit(driver.stop).result()
        driver.pool.shutdown()


def login(chromium, site, password: str):
    context = chromium.new_context()
    page = context.new_page()
    answers: list[tuple[int, str]] = []
    page.on("response", lambda response: answers.append((response.status, response.url)))
    page.goto(site.url + "/", wait_until="networkidle")
    before_login = list(answers)
    page.get_by_label("username").fill(UI_USER)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    return context, page, before_login


def test_a_person_logs_in_through_the_gate(chromium, site):
    def check(browser):
        context, page, before_login = login(browser, site, UI_PASSWORD)
        try:
            refused = [(status, url) for status, url in before_login if status in (401, 403)]
            assert not refused, f"the login page needs these, and the gate refused them: {refused}"
            page.locator("#easel-checkpoint").wait_for(timeout=60_000)
            assert "alpha.safetensors" in page.content()
        finally:
            context.close()

    chromium.run(check)


def test_a_wrong_password_stays_on_the_login_form(chromium, site):
    def check(browser):
        context, page, _ = login(browser, site, "not-the-password")
        try:
            page.get_by_text("Incorrect", exact=False).first.wait_for(timeout=30_000)
            assert page.locator("#easel-checkpoint").count() == 0
            assert "alpha.safetensors" not in page.content()
        finally:
            context.close()

    chromium.run(check)
