"""The progress line above the preview: a bar with the step, speed, percent and ETA, or the queue
position; and the error box shown where the picture would be when a job fails.

Every text goes through `say` (modules/ui/text.py: the caller's language). The bar carries its
state and percent as data attributes, which the page's script puts in the tab's title.
"""

from __future__ import annotations

import html
from typing import Callable

from modules.jobs import ProgressEvent

Say = Callable[..., str]  # (English text or template, **values) -> the caller's language


def english(text: str, **values: object) -> str:
    """`say` for callers without a request (tests, logs): the English text, values filled in."""
    return text.format(**values) if values else text


def format_eta(seconds: float | None, say: Say = english) -> str:
    if seconds is None:
        return say("ETA --")
    seconds = max(0, round(seconds))
    minutes, seconds = divmod(seconds, 60)
    return say("ETA {minutes}m{seconds}s", minutes=minutes, seconds=f"{seconds:02d}") if minutes else say("ETA {seconds}s", seconds=seconds)


def _bar(percent: float, text: str, state: str) -> str:
    return (
        f'<div class="easel-progress" data-state="{state}" data-percent="{percent:.0f}">'
        f'<div class="easel-progress-fill" style="width:{percent:.1f}%"></div>'
        f'<span class="easel-progress-text">{html.escape(text)}</span></div>'
    )


def queued_html(position: int, say: Say = english) -> str:
    if position == 0:
        text = say("Queued: next to run")
    elif position == 1:
        text = say("Queued: 1 job ahead of yours")
    else:
        text = say("Queued: {count} jobs ahead of yours", count=position)
    return _bar(0.0, text, "queued")


def starting_html(text: str) -> str:
    return _bar(0.0, text, "starting")


def step_html(event: ProgressEvent, say: Say = english, rate: float | None = None) -> str:
    """Step i/N, it/s (when measured), percent and ETA; a script's own line in place of the step."""
    percent = 100.0 * event.fraction
    parts = []
    if event.textinfo:  # a script's own line (e.g. "Cell 3 of 6")
        parts.append(say(event.textinfo))
    else:
        if event.image_count > 1:
            parts.append(say("Batch {index}/{count}", index=event.image_index + 1, count=event.image_count))
        parts.append(say("Step {step}/{steps}", step=event.step, steps=event.steps))
        if rate is not None and rate > 0:
            parts.append(say("{rate} it/s", rate=f"{rate:.2f}" if rate < 10 else f"{rate:.1f}"))
    parts += [f"{percent:.0f}%", format_eta(event.eta_seconds, say)]
    return _bar(percent, " · ".join(parts), "running")


def done_html(text: str, state: str = "done") -> str:
    return _bar(100.0 if state == "done" else 0.0, text, state)


def error_html(message: str, say: Say = english) -> str:
    """An error as the user reads it, in their language (`message` is translated when a template knows it)."""
    return f'<div class="easel-error" role="alert"><b>{html.escape(say("Error:"))}</b> {html.escape(say(message))}</div>'


PROGRESS_CSS = """
.easel-progress { position: relative; height: 1.8em; border-radius: 6px; overflow: hidden;
  background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
.easel-progress-fill { position: absolute; inset: 0 auto 0 0; background: var(--color-accent); opacity: .35;
  transition: width .2s linear; }
.easel-progress-text { position: relative; padding: 0 .6em; line-height: 1.8em; font-variant-numeric: tabular-nums;
  white-space: nowrap; }
/* The cheap preview is 1/8 of the image size: scale it up to fill the preview box. */
.easel-preview img { width: 100%; height: 100%; object-fit: contain; }
.easel-error { color: var(--error-text-color, #b91c1c); padding: .4em .6em; border: 1px solid currentColor; border-radius: 6px; }
.easel-failure .easel-error { min-height: 8em; display: flex; align-items: center; gap: .4em; }
"""
