"""The prompt box's `N/75` counter: what A1111's UI shows for the same prompt."""

from __future__ import annotations

import pytest

from modules.checkpoints.tokenizer import load_clip_tokenizer
from modules.prompts.conditioning import count_prompt_tokens
from modules.ui.progress_view import format_eta, queued_html, step_html
from modules.jobs import ProgressEvent


@pytest.fixture(scope="module")
def tokenizer(tokenizer_cache):
    return load_clip_tokenizer(tokenizer_cache)


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("", (0, 75)),
        ("a red circle", (3, 75)),
        ("(a red circle:1.3)", (3, 75)),  # weights are not tokens
        ("a red circle <lora:detail:0.8>", (3, 75)),  # extra networks are removed
        ("a cat AND a very big dog", (4, 75)),  # the longest AND part
        ("a [cat:very big fluffy dog:5]", (5, 75)),  # the longest text over the steps
        ("a cat BREAK a dog", (4, 150)),  # BREAK starts a new chunk
        (", ".join(["red"] * 40), (79, 150)),  # 40 words + 39 commas: past one chunk
    ],
)
def test_counts(tokenizer, prompt, expected):
    assert count_prompt_tokens(tokenizer, prompt) == expected


def test_progress_line_texts():
    event = ProgressEvent(image_index=1, image_count=4, step=5, steps=20, eta_seconds=75.2)
    html = step_html(event)
    assert "Batch 2/4 · Step 5/20 · 31% · ETA 1m15s" in html and 'style="width:31.2%"' in html
    assert "Queued: next to run" in queued_html(0)
    assert "Queued: 2 jobs ahead of yours" in queued_html(2)
    assert format_eta(None) == "ETA --" and format_eta(4.4) == "ETA 4s"
