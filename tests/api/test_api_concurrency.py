"""Two API clients and a person in the browser use one server at once: every job completes, each
gets its own images and seeds, and all of them land in the one queue and the one history."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

from tests.api.api_helpers import API, decode, infotext_params

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
JOBS = {"client a": (1000, 1100), "client b": (2000, 2100)}  # prompt -> the seeds of its two jobs


def run_client(url: str, prompt: str, seeds: tuple[int, ...], answers: dict, errors: list) -> None:
    with httpx.Client(base_url=url + API, timeout=180) as http:
        for seed in seeds:
            try:
                response = http.post("/txt2img", json={"prompt": prompt, "seed": seed, "batch_size": 2, "steps": 6,
                                                       "width": 64, "height": 64, "sampler_name": "Euler"})
                answers[(prompt, seed)] = response
            except httpx.HTTPError as error:
                errors.append(f"{prompt} {seed}: {error!r}")


@pytest.mark.timeout(240)
def test_two_api_clients_and_a_browser_user_each_get_their_own_images(live_server):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup_env.sh --dev does it as root).")
    from playwright.sync_api import sync_playwright

    from tests.browser.page_actions import info_text, set_prompt, small_run, start, wait_for_progress

    answers: dict = {}
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            page.goto(live_server.url + "/")
            page.locator("#txt2img-generate").wait_for()
            set_prompt(page, "browser user")
            small_run(page, steps=6, seed=3000, size=64)
            clients = [threading.Thread(target=run_client, args=(live_server.url, prompt, seeds, answers, errors))
                       for prompt, seeds in JOBS.items()]
            for thread in clients:
                thread.start()
            start(page)
            wait_for_progress(page, r"Done: 1 image", timeout=180)
            shown = info_text(page)
            for thread in clients:
                thread.join(timeout=180)
        finally:
            browser.close()

    assert errors == []
    assert shown.startswith("browser user\nSteps: 6") and "Seed: 3000" in shown
    pictures = set()
    for prompt, seeds in JOBS.items():
        for seed in seeds:
            response = answers[(prompt, seed)]
            assert response.status_code == 200, response.text
            info = json.loads(response.json()["info"])
            assert info["all_seeds"] == [seed, seed + 1] and info["all_prompts"] == [prompt, prompt]
            for image, own_seed in zip(response.json()["images"], (seed, seed + 1)):
                params = infotext_params(decode(image).info["parameters"])
                assert (params["Prompt"], params["Seed"]) == (prompt, str(own_seed))
                pictures.add(decode(image).tobytes())
    assert len(pictures) == 8  # every image its own

    with sqlite3.connect(f"file:{live_server.data_dir / 'history.sqlite3'}?mode=ro", uri=True) as db:
        recorded = {(prompt, seed) for prompt, seed in db.execute("SELECT prompt, seed FROM history")}
    wanted = {(p, s + i) for p, seeds in JOBS.items() for s in seeds for i in (0, 1)} | {("browser user", 3000)}
    assert wanted <= recorded
