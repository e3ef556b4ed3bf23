"""Benchmark: Easel's txt2img loop against a plain diffusers StableDiffusionPipeline.

    .venv/bin/python bench/engine_overhead.py --quick   # tiny SD1 model, 64x64, seconds
    .venv/bin/python bench/engine_overhead.py           # + SD1.5-shaped random weights at 256x256

Both contenders use the very same modules (UNet, VAE, text encoder, tokenizer) loaded once by
Easel's ModelManager, the same sampler (Euler; diffusers' EulerDiscreteScheduler set up with
A1111's "linspace" spacing), steps, CFG and size. Runs alternate (ours, ours with cheap previews
every step, diffusers) so drift on a shared machine hits all three alike; the table reports medians
and the ratios ours/diffusers. Goals: <= 1.03 without previews, <= 1.05 with previews every step.
The SD1.5-shaped files are the ones bench/model_switch.py writes (run it once first).
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline  # noqa: E402

from _common import alternate, machine_info, markdown_table, model_cases, side_by_side_arguments, write_json  # noqa: E402
from modules.checkpoints.hashing import HashCache  # noqa: E402
from modules.checkpoints.manager import ManagerOptions, ModelManager  # noqa: E402
from modules.checkpoints.registry import ModelRegistry  # noqa: E402
from modules.generation.previews import LinearFactorCache  # noqa: E402
from modules.generation.request import GenerationRequest  # noqa: E402
from modules.generation.txt2img import txt2img  # noqa: E402

PROMPT = "a red circle on a blue background"
NEGATIVE = "blurry"


def load(path: Path, work: Path):
    registry = ModelRegistry([path.parent], [], HashCache(work / "cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, work / "tokenizers", ManagerOptions(checkpoint_cache_size=1))
    return manager.switch_checkpoint(registry.entry_for_path(path))


def diffusers_pipeline(model) -> StableDiffusionPipeline:
    scheduler = EulerDiscreteScheduler.from_config(model.spec.scheduler_config, timestep_spacing="linspace", steps_offset=0)
    pipe = StableDiffusionPipeline(
        vae=model.modules["vae"], text_encoder=model.modules["text_encoder"], tokenizer=model.tokenizers["tokenizer"],
        unet=model.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def measure(model, size: int, steps: int, repeats: int, factors: Path) -> dict[str, list[float]]:
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, sampler_name="Euler", steps=steps, width=size, height=size, seed=1, preview_every=0)
    previewing = GenerationRequest(**{**request.__dict__, "preview_every": 1})
    preview = LinearFactorCache(factors).get(model.vae_module)
    pipe = diffusers_pipeline(model)

    def ours() -> None:
        txt2img(model, request)

    def ours_preview() -> None:
        txt2img(model, previewing, on_step=lambda e: None, preview=preview)

    def plain() -> None:
        with torch.no_grad():
            pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, height=size, width=size, guidance_scale=7.0,
                 generator=torch.Generator().manual_seed(1), output_type="pil")

    return alternate({"easel": ours, "easel + cheap previews every step": ours_preview, "diffusers": plain}, repeats)


def main() -> None:
    args = side_by_side_arguments(__doc__, repeats=5)
    torch.set_num_threads(os.cpu_count() or 1)
    work = args.cache_dir / "engine"
    work.mkdir(parents=True, exist_ok=True)
    rows, raw = [], {}
    for label, path, size, steps, repeats in model_cases(args, work):
        model = load(path, work)
        times = measure(model, size, steps, repeats, work / "factors.json")
        med = {name: statistics.median(values) for name, values in times.items()}
        base = med["diffusers"]
        rows.append([label, f"{size}x{size}, {steps} steps, CFG 7, Euler", f"{base:.3f} s", f"{med['easel']:.3f} s",
                     f"{med['easel'] / base:.3f}", f"{med['easel + cheap previews every step'] / base:.3f}"])
        raw[label] = {"times": times, "median": med}
        del model
    table = markdown_table(
        ["model", "run", "diffusers", "Easel", "ratio Easel/diffusers (goal <= 1.03)", "ratio with cheap previews every step (goal <= 1.05)"],
        rows,
    )
    print(table)
    print(f"\n- {machine_info()}\n- medians of alternating runs after one warm-up each")
    path = write_json(ROOT / "bench" / "results" / ("engine_overhead.quick.json" if args.quick else "engine_overhead.json"),
                      {"benchmark": "engine_overhead", "machine": machine_info(), "results": raw, "table": table})
    print(f"JSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
