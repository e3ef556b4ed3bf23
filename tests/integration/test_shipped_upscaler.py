"""The upscaler Easel ships (models/ESRGAN/easel-demo-2x.safetensors): listed by the default
models folder, read by the real loader as a 2x Real-ESRGAN compact model, and better than Lanczos
on pictures the demo model draws that it never saw (its card has the full held-out figures)."""

from __future__ import annotations

import torch

from modules.cmd_args import REPO_ROOT
from modules.upscalers.catalog import UpscalerCatalog
from modules.upscalers.model_files import load_model
from tools.train_upscaler import beats_lanczos, compare, draw, held_out_jobs, load_demo

SHIPPED = REPO_ROOT / "models" / "ESRGAN" / "easel-demo-2x.safetensors"


def test_the_shipped_upscaler_is_listed_and_loads():
    entry = UpscalerCatalog({"ESRGAN": SHIPPED.parent}).find("easel-demo-2x")
    assert entry.path == SHIPPED and entry.scale == 2
    descriptor = load_model(SHIPPED)
    assert (descriptor.architecture.id, descriptor.scale, descriptor.dtype) == ("Compact", 2, torch.float32)


def test_the_shipped_upscaler_beats_lanczos_on_unseen_demo_pictures(tmp_path):
    pictures = draw(load_demo(tmp_path), held_out_jobs(6, 0), log=lambda _: None)
    results = compare(SHIPPED, pictures)
    assert beats_lanczos(results), {k: {n: vars(s) for n, s in v.items()} for k, v in results.items()}
