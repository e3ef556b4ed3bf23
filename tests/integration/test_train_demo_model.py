"""tools/train_demo_model.py end to end at toy size: every stage runs, the checkpoint it writes
loads through Easel's loader and draws, a longer run resumes where the last one stopped, and a
changed setting is refused rather than silently mixed into old state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.generation.request import GenerationRequest
from modules.generation.txt2img import txt2img

ROOT = Path(__file__).resolve().parents[2]
TOY = ["--images", "48", "--blend-images", "16", "--vae-steps", "3", "--vae-batch", "4", "--decoder-steps", "3",
       "--unet-steps", "3", "--unet-batch", "4", "--reading-steps", "3", "--sequential"]


def train(work: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "tools" / "train_demo_model.py"), *TOY, "--work-dir", str(work), "--out", str(work / "demo.safetensors"), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def test_a_toy_run_writes_a_loadable_checkpoint_and_resumes(tmp_path, tokenizer_cache):
    first = train(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in ("vae", "decoder", "unet", "reading"):
        assert f"[{stage}] step 3/3" in first.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["final_loss"]) == {"vae", "unet", "reading"}
    assert summary["config"]["blend_images"] == 16

    out = tmp_path / "demo.safetensors"
    registry = ModelRegistry([], [], HashCache(tmp_path / "hashes.json"), [out])
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions())
    model = manager.switch_checkpoint(registry.entry_for_path(out))
    # the reading stage's mean offset is in the file: the encoder's hidden states average about 1
    hidden = model.modules["text_encoder"](input_ids=torch.tensor([[49406, 736, 7117, 49407] + [49407] * 73])).last_hidden_state
    assert 0.8 < hidden.mean().item() < 1.2
    request = GenerationRequest(prompt="a red circle", seed=5, steps=3, width=64, height=64, preview_every=0, save_samples=False)
    [image] = txt2img(model, request).images
    assert image.size == (64, 64) and np.asarray(image).std() > 0

    longer = train(tmp_path, "--reading-steps", "5")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert "[unet] resuming at step 3" in longer.stdout and "[reading] resuming at step 3" in longer.stdout
    assert "[reading] step 5/5" in longer.stdout and "[unet] step" not in longer.stdout

    changed = train(tmp_path, "--reading-steps", "5", "--context-swap", "0.2")
    assert changed.returncode != 0
    assert "reading-state.pt was made with other settings (context_swap)" in changed.stderr
