"""Benchmark: txt2img speed on a GPU — plain diffusers fp16, Easel default, Easel fast mode — and peak VRAM.

    .venv/bin/python bench/gpu_speed.py                       # CUDA: SD1.5-shaped, 512x512, batch 1, 20 steps, Euler a
    .venv/bin/python bench/gpu_speed.py --device cpu --quick  # the same code path on the CPU, tiny model, 64x64
                                                              # (checks the script, not a speed figure)

All three contenders use the very same modules (UNet, VAE, text encoder) loaded once by Easel's
ModelManager from the SD1.5-shaped random-weight checkpoint bench/model_switch.py writes (same
compute as real weights): diffusers' StableDiffusionPipeline with EulerAncestralDiscreteScheduler,
Easel's txt2img with the automatic choices for the device (modules/device/optimizations.py: channels_last,
fused QKV on CUDA), and Easel with fast mode on top (torch.compile; its first run, the compile, is
timed separately and excluded). Alternating runs after one warm-up each, medians. it/s is steps /
wall time of the whole image (text encoding and VAE decode included, for both sides alike); peak
VRAM is torch.cuda.max_memory_allocated during a run. Ratios are against plain diffusers (goals:
default >= 1.0, fast mode >= 1.5). Records the GPU, driver and library versions. Writes
bench/results/gpu_speed[.quick].json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402
from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline  # noqa: E402

from _common import SD15_SHAPED, alternate, machine_info, markdown_table, write_json  # noqa: E402
from modules.checkpoints.hashing import HashCache  # noqa: E402
from modules.checkpoints.manager import ManagerOptions, ModelManager  # noqa: E402
from modules.checkpoints.registry import ModelRegistry  # noqa: E402
from modules.generation.request import GenerationRequest  # noqa: E402
from modules.generation.txt2img import txt2img  # noqa: E402
from modules.device.memory_plan import cuda_free_bytes  # noqa: E402
from modules.device.optimizations import choose_optimizations  # noqa: E402

PROMPT = "a red circle on a blue background"
NEGATIVE = "blurry"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny test model at 64x64 (a check of the script)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, help="default 512 (64 with --quick)")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode for fast mode (default: its default)")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here: run with --device cpu --quick to check the script.")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    size = args.size or (64 if args.quick else 512)
    work = args.cache_dir / "gpu_speed"
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        from tools.make_test_models import write_test_checkpoint

        path = work / "models" / "tiny-sd1.safetensors"
        if not path.exists():
            write_test_checkpoint(path, "sd1", "small", seed=0)
    else:
        path = args.cache_dir / SD15_SHAPED
        if not path.exists():
            raise SystemExit("Run bench/model_switch.py once first: it writes the SD1.5-shaped checkpoint this uses.")

    registry = ModelRegistry([path.parent], [], HashCache(work / "cache.json"))
    manager = ModelManager(registry, device, dtype, work / "tokenizers", ManagerOptions(checkpoint_cache_size=1))
    plain_model = manager.switch_checkpoint(registry.entry_for_path(path))
    model_bytes = sum(p.numel() * p.element_size() for m in plain_model.modules.values() for p in m.parameters())
    default = choose_optimizations(device, dtype, cuda_free_bytes(device), model_bytes)
    fast = replace(default, compile=True, compile_backend=args.compile_backend, compile_mode=args.compile_mode)
    ours = replace(plain_model, optimizations=default, caches={})
    ours_fast = replace(plain_model, optimizations=fast, caches={})

    scheduler = EulerAncestralDiscreteScheduler.from_config(plain_model.spec.scheduler_config, timestep_spacing="linspace", steps_offset=0)
    pipe = StableDiffusionPipeline(
        vae=plain_model.modules["vae"], text_encoder=plain_model.modules["text_encoder"], tokenizer=plain_model.tokenizers["tokenizer"],
        unet=plain_model.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, sampler_name="Euler a", steps=args.steps, width=size, height=size,
                                seed=1, preview_every=0)
    peaks: dict[str, int] = {}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(name: str, fn):
        def run() -> None:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            fn()
            sync()
            if device.type == "cuda":
                peaks[name] = max(peaks.get(name, 0), torch.cuda.max_memory_allocated(device))
        return run

    def diffusers_run() -> None:
        with torch.no_grad():
            pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=args.steps, height=size, width=size, guidance_scale=7.0,
                 generator=torch.Generator(device).manual_seed(1), output_type="pil")

    compile_started = time.perf_counter()
    txt2img(ours_fast, request)  # the compile (fast mode's warm-up), excluded from the timed runs
    sync()
    compile_seconds = time.perf_counter() - compile_started
    times = alternate({
        "plain diffusers": timed("plain diffusers", diffusers_run),
        "Easel default": timed("Easel default", lambda: txt2img(ours, request)),
        "Easel fast mode": timed("Easel fast mode", lambda: txt2img(ours_fast, request)),
    }, args.repeats)
    med = {name: statistics.median(values) for name, values in times.items()}
    base = med["plain diffusers"]
    rows = []
    for name, seconds in med.items():
        peak = f"{peaks[name] / 2**30:.2f} GiB" if name in peaks else "n/a (CPU)"
        rows.append([name, f"{args.steps / seconds:.2f}", f"{seconds:.3f} s", f"{base / seconds:.3f}", peak])
    table = markdown_table(["contender", "it/s (whole image)", "median per image", "speed vs plain diffusers", "peak VRAM"], rows)
    gpu = {}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gpu = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version(), "capability": f"{props.major}.{props.minor}"}
    print(table)
    print(f"\n- {'tiny test model' if args.quick else 'SD1.5-shaped random weights'}, {size}x{size}, batch 1, {args.steps} steps, Euler a, "
          f"CFG 7, {str(dtype).removeprefix('torch.')} on {device}; Easel default = {default.describe()}")
    print(f"- fast mode compile (first run, excluded): {compile_seconds:.1f} s; GPU: {gpu or 'none'}")
    print(f"- {machine_info()}\n- medians of {args.repeats} alternating runs after one warm-up each")
    path = write_json(ROOT / "bench" / "results" / ("gpu_speed.quick.json" if args.quick else "gpu_speed.json"), {
        "benchmark": "gpu_speed", "machine": machine_info(), "gpu": gpu, "device": str(device), "dtype": str(dtype), "size": size,
        "steps": args.steps, "times": times, "median": med, "peak_vram": peaks, "compile_seconds": compile_seconds,
        "optimizations": default.describe(), "table": table,
    })
    print(f"JSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
