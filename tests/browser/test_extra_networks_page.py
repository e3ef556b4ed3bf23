"""The Extra networks panel: an embedding's card (its preview picture) adds its trigger word to the
prompt, and the image made with it records the embedding in "TI hashes"."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.page_actions import info_text, set_prompt, small_run, start, wait_for_progress


def test_clicking_an_embedding_card_adds_its_trigger(pages):
    page = pages.open()
    set_prompt(page, "a castle")
    page.locator("#txt2img-extra-networks").get_by_text("Extra networks").click()
    cards = page.locator("#txt2img-extra-networks-cards")
    expect(cards.get_by_text("shimmer [")).to_be_visible()
    cards.locator("img").first.click()
    expect(page.locator("#txt2img-prompt textarea")).to_have_value("a castle, shimmer")
    cards.locator("img").first.click()  # a second click does not add it twice
    expect(page.locator("#txt2img-prompt textarea")).to_have_value("a castle, shimmer")
    pages.shot(page, "extra-networks")
    small_run(page, steps=2, seed=3, size=64)
    start(page)
    wait_for_progress(page, r"Done: 1 image")
    assert 'TI hashes: "shimmer: ' in info_text(page)
