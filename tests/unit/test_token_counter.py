"""The prompt box's `N/75` counter: what A1111's UI shows for the same prompt."""

from __future__ import annotations

import pytest
import torch

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


def test_first_tokenizer_load_waits_for_a_model_load_holding_the_lock(tmp_path, tokenizer_cache):
    """transformers' lazy imports are not thread-safe: the counter must not import it while a model
    load does (a real pop-up error seen in the browser before this)."""
    import threading
    import time

    from modules.checkpoints.hashing import HashCache
    from modules.checkpoints.manager import ManagerOptions, ModelManager
    from modules.checkpoints.registry import ModelRegistry

    manager = ModelManager(ModelRegistry([tmp_path], [], HashCache(tmp_path / "c.json")), torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions())
    held = threading.Event()

    def load_like_a_model():
        with manager.lock:
            held.set()
            time.sleep(0.5)

    thread = threading.Thread(target=load_like_a_model)
    thread.start()
    held.wait()
    started = time.monotonic()
    tokenizer = manager.clip_tokenizer()
    assert time.monotonic() - started >= 0.4  # it waited for the lock
    assert count_prompt_tokens(tokenizer, "a red circle") == (3, 75)
    thread.join()
    with manager.lock:  # loaded now: later calls never wait, even while the lock is held
        other = threading.Thread(target=lambda: manager.clip_tokenizer())
        other.start()
        other.join(timeout=2)
        assert not other.is_alive()
