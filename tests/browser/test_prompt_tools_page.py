"""Regional and dynamic prompts in a real browser: the regional layout is drawn when the section is
on and the prompt has a BREAK; "Preview prompts" lists the prompts a template gives in combinatorial
mode; a wildcard file in the data folder shows up in the list with its lines."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.page_actions import set_prompt


def test_the_regional_layout_and_the_dynamic_preview(pages, webui):
    page = pages.open()
    set_prompt(page, "a red circle BREAK a blue square")
    page.locator("#txt2img-regional").get_by_text("Regional prompts", exact=True).first.click()
    page.locator("#txt2img-regional-active input").check()
    expect(page.locator("#txt2img-regional-layout img")).to_be_visible(timeout=20_000)

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
