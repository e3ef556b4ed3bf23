"""What the browser tests do on the page: set fields, start a run, read the progress line, the
gallery and the info text. Shared by the tests in tests/browser/."""

from __future__ import annotations

import re
import time

# Collects every distinct live-preview image URL the page shows, in order.
WATCH_PREVIEWS = """
() => {
  window.__previews = [];
  const seen = new Set();
  const look = () => {
    const img = document.querySelector('#txt2img-preview img');
    const text = (document.querySelector('#txt2img-progress') || {}).innerText || '';
    if (img && img.src && !seen.has(img.src)) {
      seen.add(img.src);
      window.__previews.push({src: img.src, finished: /Done|Interrupted/.test(text)});
    }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}
"""


def live_previews(page) -> list[str]:
    """Preview images shown while the run went on. The last one seen is left out: it may be the
    final image, which the page puts in the preview area in the same update as "Done"."""
    seen = [p["src"] for p in page.evaluate("window.__previews")]
    return seen[:-1]


def set_number(page, elem_id: str, value: int | float) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def set_prompt(page, text: str, tab: str = "txt2img") -> None:
    page.locator(f"#{tab}-prompt textarea").fill(text)


def small_run(page, steps: int = 12, seed: int = 1234, size: int = 64, batch_count: int = 1, tab: str = "txt2img") -> None:
    """Sets a small, seeded run on the generation tab `tab` ("txt2img" or "img2img")."""
    set_number(page, f"{tab}-width", size)
    set_number(page, f"{tab}-height", size)
    set_number(page, f"{tab}-steps", steps)
    set_number(page, f"{tab}-batch-count", batch_count)
    page.locator(f"#{tab}-seed input").fill(str(seed))
    page.locator(f"#{tab}-seed input").blur()


def start(page, how: str = "click", tab: str = "txt2img") -> None:
    """Starts a generation and waits until the progress line belongs to it (not to the last run)."""
    before = progress_text(page, tab)
    if how == "click":
        page.locator(f"#{tab}-generate").click()
    else:
        page.locator(f"#{tab}-prompt textarea").press(how)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = progress_text(page, tab)
        if re.search(r"Starting|Loading|Queued|Step|Error", text) or (text != before and text):
            return
        time.sleep(0.02)
    raise AssertionError(f"the run did not start; progress still reads {before!r}")


def progress_text(page, tab: str = "txt2img") -> str:
    """Our progress line only (not Gradio's own loading overlay, which shows the old value)."""
    return page.evaluate(
        "(tab) => Array.from(document.querySelectorAll(`#${tab}-progress .easel-progress-text, #${tab}-progress .easel-error`))"
        ".map(e => e.innerText).join(' ')",
        tab,
    )


def wait_for_progress(page, pattern: str, timeout: float = 120.0, tab: str = "txt2img") -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = progress_text(page, tab)
        if re.search(pattern, text):
            return text
        time.sleep(0.05)
    raise AssertionError(f"progress never matched {pattern!r}; it reads {progress_text(page, tab)!r}")


def gallery_srcs(page, tab: str = "txt2img") -> list[str]:
    """The gallery's pictures in order, once each: Gradio draws the preview's strip of thumbnails and,
    behind it, the grid of the same pictures (and the large one shown)."""
    return page.locator(f"#{tab}-gallery").evaluate(
        """root => {
            const strip = root.querySelectorAll('.thumbnail-small img');
            const items = strip.length ? strip : root.querySelectorAll('.thumbnail-item img, img');
            return Array.from(items).map(e => e.src);
        }"""
    )


def info_text(page, tab: str = "txt2img") -> str:
    return page.locator(f"#{tab}-info").inner_text()


def choose(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id} [role=option]", has_text=option).first.click()
