"""Benchmark: an X/Y/Z plot through Easel's extension against the plain diffusers way.

    .venv/bin/python bench/xyz_plot.py --quick   # tiny SD1 model, 64x64, about a minute
    .venv/bin/python bench/xyz_plot.py           # + SD1.5-shaped random weights at 256x256 (run model_switch.py first)

The plot: X = CFG 4, 7, 10; Y = sampler Euler, Euler a; 6 cells, the same seed, steps and size.
- "easel": the built-in xyz-plot extension run as a script job (modules/app/script_jobs.py) on the model
  the ModelManager holds (prompt conditioning cached on the model across cells), labelled grid
  included;
- "diffusers": a loop over the cells calling StableDiffusionPipeline on the very same modules,
  swapping its scheduler (EulerDiscrete / EulerAncestralDiscrete, A1111's linspace spacing) per
  cell, as a script using diffusers directly would; it encodes the prompt in every call.
Runs alternate so drift on a shared machine hits both alike; medians of whole plots are reported,
and the ratio easel/diffusers.
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
from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionPipeline  # noqa: E402

from _common import alternate, machine_info, markdown_table, model_cases, side_by_side_arguments, write_json  # noqa: E402
from modules.checkpoints.hashing import HashCache  # noqa: E402
from modules.checkpoints.manager import ManagerOptions, ModelManager  # noqa: E402
from modules.checkpoints.registry import ModelRegistry  # noqa: E402
from modules.config import Settings  # noqa: E402
from modules.extensions.loader import load_extensions  # noqa: E402
from modules.generation.request import GenerationRequest  # noqa: E402
from modules.app import in_process_generation  # noqa: E402
from modules.jobs import JobQueue  # noqa: E402

PROMPT = "a red circle on a blue background, soft light, detailed"
NEGATIVE = "blurry, low quality"
CFGS = (4.0, 7.0, 10.0)
SAMPLERS = {"Euler": EulerDiscreteScheduler, "Euler a": EulerAncestralDiscreteScheduler}


def measure(path: Path, work: Path, size: int, steps: int, repeats: int) -> dict[str, list[float]]:
    registry = ModelRegistry([path.parent], [], HashCache(work / "cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, work / "tokenizers", ManagerOptions(checkpoint_cache_size=1))
    model = manager.switch_checkpoint(registry.entry_for_path(path))
    queue = JobQueue(max_pending=4)
    queue.start()
    extensions = load_extensions(ROOT / "extensions", {}, lambda key: None)
    service = in_process_generation(manager, queue, settings=Settings(samples_save=False), extensions=extensions)
    script = extensions.find_script("X/Y/Z plot", "txt2img")
    values = script.values_from(["CFG Scale", ", ".join(f"{c:g}" for c in CFGS), "Sampler", ", ".join(SAMPLERS)])
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, steps=steps, width=size, height=size, seed=1,
                                sampler_name="Euler", preview_every=0)
    pipe = StableDiffusionPipeline(
        vae=model.modules["vae"], text_encoder=model.modules["text_encoder"], tokenizer=model.tokenizers["tokenizer"],
        unet=model.unet, scheduler=EulerDiscreteScheduler.from_config(model.spec.scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    schedulers = {name: kind.from_config(model.spec.scheduler_config, timestep_spacing="linspace", steps_offset=0) for name, kind in SAMPLERS.items()}

    def ours() -> None:
        result = service.submit_script(request, script, values).result(timeout=3600)
        assert len(result.images) == len(CFGS) * len(SAMPLERS) and result.grid is not None

    def plain() -> None:
        with torch.no_grad():
            for sampler in SAMPLERS:
                pipe.scheduler = schedulers[sampler]
                for cfg in CFGS:
                    pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, height=size, width=size, guidance_scale=cfg,
                         generator=torch.Generator().manual_seed(1), output_type="pil")

    try:
        return alternate({"easel": ours, "diffusers": plain}, repeats)
    finally:
        queue.close()


def main() -> None:
    args = side_by_side_arguments(__doc__, repeats=3)
    torch.set_num_threads(os.cpu_count() or 1)
    work = args.cache_dir / "xyz"
    work.mkdir(parents=True, exist_ok=True)
    rows, raw = [], {}
    for label, path, size, steps, repeats in model_cases(args, work, full_repeats_floor=1):
        times = measure(path, work, size, steps, repeats)
        med = {name: statistics.median(values) for name, values in times.items()}
        rows.append([label, f"3 CFG x 2 samplers, {size}x{size}, {steps} steps", f"{med['diffusers']:.2f} s",
                     f"{med['easel']:.2f} s", f"{med['easel'] / med['diffusers']:.3f}"])
        raw[label] = {"times": times, "median": med}
    table = markdown_table(["model", "plot", "diffusers loop", "Easel X/Y/Z plot (with grid)", "ratio Easel/diffusers"], rows)
    print(table)
    print(f"\n- {machine_info()}\n- medians of alternating whole plots after one warm-up each")
    path = write_json(ROOT / "bench" / "results" / ("xyz_plot.quick.json" if args.quick else "xyz_plot.json"),
                      {"benchmark": "xyz_plot", "machine": machine_info(), "results": raw, "table": table})
    print(f"JSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
