"""Benchmark: Easel's img2img and inpaint set-ups against diffusers' img2img and inpaint pipelines.

    .venv/bin/python bench/img2img_overhead.py --quick   # tiny SD1 model, 64x64, seconds
    .venv/bin/python bench/img2img_overhead.py           # + SD1.5-shaped random weights at 256x256

Both sides use the same modules (UNet, VAE, text encoder, tokenizer) loaded once by Easel's
ModelManager, Euler on A1111's "linspace" grid, the same steps, strength 0.75, CFG and size.
The step counts differ by rule: A1111 (and Easel) run int(0.75·20) + 1 = 16 steps, diffusers
int(20·0.75) = 15; so the table gives the time per run and per denoising step, and the ratio is
taken per step. Easel's inpaint also blends the latent at every step and composites the original
back; diffusers' StableDiffusionInpaintPipeline does the per-step blend too (4-channel UNet).
Runs alternate so drift on a shared machine hits all contenders alike; medians are reported.
The SD1.5-shaped file is the one bench/model_switch.py writes (run it once first).
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from _common import alternate, machine_info, markdown_table, model_cases, side_by_side_arguments, write_json  # noqa: E402
from engine_overhead import load  # noqa: E402
from modules.generation.img2img import img2img  # noqa: E402
from modules.generation.request import Img2ImgRequest  # noqa: E402

PROMPT = "a red circle on a blue background"
NEGATIVE = "blurry"
STRENGTH = 0.75


def picture(size: int) -> Image.Image:
    x = np.linspace(0, 255, size, dtype=np.float32)
    rgb = np.stack([np.tile(x, (size, 1)), np.tile(x[:, None], (1, size)), np.full((size, size), 90.0)], axis=2)
    image = Image.fromarray(rgb.astype(np.uint8))
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(220, 40, 40))
    return image


def mask(size: int) -> Image.Image:
    image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(image).rectangle((size // 3, size // 3, 2 * size // 3, 2 * size // 3), fill=255)
    return image


def pipeline_parts(model) -> dict:
    scheduler = EulerDiscreteScheduler.from_config(model.spec.scheduler_config, timestep_spacing="linspace", steps_offset=0)
    return dict(vae=model.modules["vae"], text_encoder=model.modules["text_encoder"], tokenizer=model.tokenizers["tokenizer"],
                unet=model.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def measure(model, size: int, steps: int, repeats: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    init, hole = picture(size), mask(size)
    request = Img2ImgRequest(prompt=PROMPT, negative_prompt=NEGATIVE, sampler_name="Euler", steps=steps, width=size, height=size,
                             seed=1, preview_every=0, init_images=[init], denoising_strength=STRENGTH)
    inpaint = Img2ImgRequest(**{**request.__dict__, "mask": hole, "mask_blur": 4})
    img_pipe = StableDiffusionImg2ImgPipeline(**pipeline_parts(model))
    inpaint_pipe = StableDiffusionInpaintPipeline(**pipeline_parts(model))
    for pipe in (img_pipe, inpaint_pipe):
        pipe.set_progress_bar_config(disable=True)
    counted: dict[str, int] = {}

    def counter(name: str):
        def on_step(event) -> None:
            counted[name] = event.step
        return on_step

    def diffusers_counter(name: str):
        def on_step_end(pipe, index, timestep, tensors):
            counted[name] = index + 1
            return tensors
        return on_step_end

    contenders = {
        "easel img2img": lambda: img2img(model, request, on_step=counter("easel img2img")),
        "diffusers img2img": lambda: img_pipe(PROMPT, image=init, strength=STRENGTH, negative_prompt=NEGATIVE, num_inference_steps=steps,
                                              guidance_scale=7.0, generator=torch.Generator().manual_seed(1),
                                              callback_on_step_end=diffusers_counter("diffusers img2img")),
        "easel inpaint": lambda: img2img(model, inpaint, on_step=counter("easel inpaint")),
        "diffusers inpaint": lambda: inpaint_pipe(PROMPT, image=init, mask_image=hole, strength=STRENGTH, negative_prompt=NEGATIVE,
                                                  num_inference_steps=steps, height=size, width=size, guidance_scale=7.0,
                                                  generator=torch.Generator().manual_seed(1),
                                                  callback_on_step_end=diffusers_counter("diffusers inpaint")),
    }
    with torch.no_grad():
        times = alternate(contenders, repeats)  # the warm-up run also sets the step counts
    return times, counted


def main() -> None:
    args = side_by_side_arguments(__doc__, repeats=5)
    torch.set_num_threads(os.cpu_count() or 1)
    work = args.cache_dir / "engine"
    work.mkdir(parents=True, exist_ok=True)
    rows, raw = [], {}
    for label, path, size, steps, repeats in model_cases(args, work):
        model = load(path, work)
        times, counted = measure(model, size, steps, repeats)
        med = {name: statistics.median(values) for name, values in times.items()}
        for task in ("img2img", "inpaint"):
            ours, theirs = f"easel {task}", f"diffusers {task}"
            per_ours, per_theirs = med[ours] / counted[ours], med[theirs] / counted[theirs]
            rows.append([label, task, f"{size}x{size}, {steps} steps x {STRENGTH}", f"{med[theirs]:.3f} s / {counted[theirs]}",
                         f"{med[ours]:.3f} s / {counted[ours]}", f"{per_ours / per_theirs:.3f}"])
        raw[label] = {"times": times, "median": med, "steps": counted}
        del model
    table = markdown_table(["model", "task", "run", "diffusers (time / steps)", "Easel (time / steps)", "ratio per step Easel/diffusers"], rows)
    print(table)
    print(f"\n- {machine_info()}\n- medians of alternating runs after one warm-up each")
    path = write_json(ROOT / "bench" / "results" / ("img2img_overhead.quick.json" if args.quick else "img2img_overhead.json"),
                      {"benchmark": "img2img_overhead", "machine": machine_info(), "results": raw, "table": table})
    print(f"JSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
