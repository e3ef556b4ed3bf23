"""The progress line under the preview: a bar with step, percent and ETA, or the queue position."""

from __future__ import annotations

import html

from modules.jobs import ProgressEvent


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --"
    seconds = max(0, round(seconds))
    minutes, seconds = divmod(seconds, 60)
    return f"ETA {minutes}m{seconds:02d}s" if minutes else f"ETA {seconds}s"


def _bar(percent: float, text: str, state: str) -> str:
    return (
        f'<div class="easel-progress" data-state="{state}">'
        f'<div class="easel-progress-fill" style="width:{percent:.1f}%"></div>'
        f'<span class="easel-progress-text">{html.escape(text)}</span></div>'
    )


def queued_html(position: int) -> str:
    ahead = "1 job" if position == 1 else f"{position} jobs"
    text = "Queued: next to run" if position == 0 else f"Queued: {ahead} ahead of yours"
    return _bar(0.0, text, "queued")


def starting_html(text: str = "Starting…") -> str:
    return _bar(0.0, text, "starting")


def step_html(event: ProgressEvent) -> str:
    percent = 100.0 * event.fraction
    image = f"Batch {event.image_index + 1}/{event.image_count} · " if event.image_count > 1 else ""
    text = f"{image}Step {event.step}/{event.steps} · {percent:.0f}% · {format_eta(event.eta_seconds)}"
    if event.textinfo:  # a script's own line (e.g. "Cell 3 of 6 done")
        text = f"{html.escape(event.textinfo)} · {percent:.0f}% · {format_eta(event.eta_seconds)}"
    return _bar(percent, text, "running")


def done_html(text: str, state: str = "done") -> str:
    return _bar(100.0 if state == "done" else 0.0, text, state)


def error_html(message: str) -> str:
    return f'<div class="easel-error" role="alert"><b>Error:</b> {html.escape(message)}</div>'


PROGRESS_CSS = """
.easel-progress { position: relative; height: 1.8em; border-radius: 6px; overflow: hidden;
  background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
.easel-progress-fill { position: absolute; inset: 0 auto 0 0; background: var(--color-accent); opacity: .35;
  transition: width .2s linear; }
.easel-progress-text { position: relative; padding: 0 .6em; line-height: 1.8em; font-variant-numeric: tabular-nums; }
/* The cheap preview is 1/8 of the image size: scale it up to fill the preview box. */
.easel-preview img { width: 100%; height: 100%; object-fit: contain; }
.easel-error { color: var(--error-text-color, #b91c1c); padding: .4em .6em; border: 1px solid currentColor; border-radius: 6px; }
"""
