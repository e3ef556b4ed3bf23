"""The page in Simplified Chinese, as a browser set to zh-CN opens it: every tab and every folded
section is walked, and each text a user reads (labels, choices, tooltips, placeholders, messages)
must be Chinese, except names (models, samplers, file formats, the product). Then a run: its
progress, its result line and an error come in Chinese too."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from tests.browser.page_actions import set_prompt, small_run, start, wait_for_progress

# Every text node the user can see, the placeholders of visible fields, and the tooltips (title) of
# visible elements other than inputs (Gradio titles a checkbox with its value, a name). The infotext
# is a format (A1111's keys), never translated.
VISIBLE_TEXTS = """() => {
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, element = node.parentElement;
    if (!element || !node.textContent.trim() || element.closest('script, style, textarea, .easel-infotext')) continue;
    if (element.checkVisibility()) texts.push(node.textContent.trim());
  }
  for (const element of document.querySelectorAll('[placeholder]')) if (element.checkVisibility()) texts.push(element.placeholder);
  for (const element of document.querySelectorAll('[title]:not(input)')) if (element.checkVisibility()) texts.push(element.title);
  return texts;
}"""
CJK = re.compile(r"[\u4e00-\u9fff]")
# Texts that are names, numbers or formats in every language.
NAMES = re.compile(
    r"^(Easel|SD1\.x|\S+\.safetensors( \[[0-9a-f]{10}\])?|alpha|beta|shimmer( \[[0-9a-f]+\])?|ControlNet|ADetailer|prompt-matrix|xyz-plot|sd-upscale|none|canny|invert|threshold|blur_gaussian|"
    r"DPM.*|Euler.*|Heun|LMS|DDIM.*|PLMS|UniPC|LCM|Restart|DEIS|Karras|Exponential|Automatic|Uniform|SGM Uniform|Simple|Normal|"
    r"Align Your Steps|KL Optimal|Beta|Polyexponential|TAESD|VAE|LoRA|None|png|jpg|webp|fp16|fp32|bf16|auto|epsilon|v_prediction|"
    r"[\d\s.,:/x×%↺·+-]+|\d+/75|Lanczos|Nearest.*|Latent.*|X/Y/Z.*|Prompt-Ex|"
    r"Canny|Depth|Lineart|MLSD|OpenPose|Recolor|Scribble|Shuffle|SoftEdge|T2I-Adapter|Tile|IP-Adapter|Inpaint|NormalMap|Segmentation|InstructP2P|Reference|Revision|SparseCtrl)$"
)
# Gradio's gallery writes these tooltips in English in every language (not in its i18n tables).
GRADIO_FIXED = {"Fullscreen", "Close"}


def english_texts(page) -> list[str]:
    """The visible texts with Latin words and no Chinese that are not names."""
    return [text for text in page.evaluate(VISIBLE_TEXTS)
            if re.search(r"[A-Za-z]{2}", text) and not CJK.search(text) and not NAMES.match(text) and text not in GRADIO_FIXED]


def open_every_section(page) -> None:
    for fold in page.locator("button.label-wrap:not(.open)").all():
        if fold.is_visible():
            fold.click()
    page.wait_for_timeout(300)


def test_every_tab_reads_in_chinese_for_a_chinese_browser(pages):
    page = pages.open(locale="zh-CN")
    expect(page.locator("button[role=tab]").first).to_have_text("文生图")
    set_prompt(page, "a red circle")  # a picture first, so History and the gallery have something to say
    small_run(page, steps=2, seed=3, size=64)
    start(page)
    wait_for_progress(page, r"完成")
    left_in_english: dict[str, list[str]] = {}
    tabs = page.locator("#easel-tabs > .tab-wrapper button[role=tab]")
    names = tabs.all_inner_texts()
    assert len(names) >= 6 and all(CJK.search(name) for name in names), names
    for index, name in enumerate(names):
        tabs.nth(index).click()
        page.wait_for_timeout(400)
        open_every_section(page)
        found = english_texts(page)
        if found:
            left_in_english[name] = sorted(set(found))
    assert left_in_english == {}, json.dumps(left_in_english, ensure_ascii=False)
    pages.shot(page, "zh-CN-settings")


def test_a_run_and_its_error_speak_chinese(pages):
    page = pages.open(locale="zh-CN")
    set_prompt(page, "a blue square")
    small_run(page, steps=3, seed=11, size=64)
    start(page)
    wait_for_progress(page, r"完成：1 张图像，用时")
    expect(page.locator("#txt2img-info")).to_contain_text("Steps: 3")  # infotext is a format: never translated
    pages.shot(page, "zh-CN-done")
    set_prompt(page, "a (blue:1.2.3) square")
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-failure")).to_contain_text("提示词中的强调权重 '1.2.3' 不是数字")
    assert english_texts(page) == []
