"""Benchmark: Easel's shipped 2x upscaler and a real-size ESRGAN against Lanczos, on the CPU.

    .venv/bin/python bench/upscalers.py --quick   # smaller pictures, fewer held-out ones: about 2 min
    .venv/bin/python bench/upscalers.py           # about 5 min on 2 cores

Every upscale goes through Easel's `Upscalers` (the real model loader, tiles of `ESRGAN_tile` 192
with overlap 8, A1111's upscale loop), on a picture of the demo model's kind (a flat shape on a
gradient). It measures, side by side in one run:
- speed: seconds per output megapixel of models/ESRGAN/easel-demo-2x.safetensors (Real-ESRGAN
  Compact, 2x), of an RRDB ESRGAN 4x at real size (spandrel `ESRGAN(in_nc=3, out_nc=3,
  num_filters=64, num_blocks=23, scale=4)`, 16.7M parameters, random weights written to a temporary
  fp32 .safetensors) and of Lanczos at 2x and 4x; alternating runs after one warm-up each, medians;
  the ratio is model / Lanczos at the same scale.
- memory: peak RSS added while the RRDB model upscales one picture (`--memory-sizes`, 256 x 256 ->
  1024 x 1024 and 384 x 384 -> 1536 x 1536 by default) in tiles of 192 and whole (tile 0), each in
  its own subprocess, the model
  loaded and warmed up on a small picture first (so the peak is the upscale's, not the load's; kernel
  VmHWM after a reset, else a 10 ms RSS sampler); the ratio is tiled / untiled. Tiles of 192 with
  overlap 8 cover a 256 picture with 4 tiles of 192 (2.25 times its pixels), so the tiled run also
  takes longer.
- quality: the shipped model's held-out PSNR and sharpness against Lanczos, on the held-out pictures
  of tools/train_upscaler.py (drawn again by the demo model, same prompts and seeds), each
  downscaled 2x with bicubic and box filters and upscaled back (sharpness: mean gradient magnitude
  and Laplacian variance over the original's, 1.000 = as sharp as the original).
Writes bench/results/upscalers[.quick].json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import numpy as np
import torch
from _common import PeakMemory, alternate, machine_info, markdown_table, write_json
from PIL import Image, ImageDraw

from modules.device.hardware import physical_cores
from modules.upscalers.catalog import UpscalerCatalog
from modules.upscalers.service import TileSettings, Upscalers

SHIPPED = ROOT / "models" / "ESRGAN" / "easel-demo-2x.safetensors"
RRDB_NAME = "bench-rrdb-4x"
TILE, OVERLAP = 192, 8  # A1111's ESRGAN_tile and ESRGAN_tile_overlap defaults
MB = 1024 * 1024


def picture(size: int) -> Image.Image:
    """A flat-looking picture like the demo model's: a soft gradient with a red disc and a triangle."""
    x = np.linspace(40, 200, size, dtype=np.float32)
    rgb = np.stack([np.tile(x, (size, 1)), np.tile(x[:, None], (1, size)), np.full((size, size), 120.0)], axis=2)
    image = Image.fromarray(rgb.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 5, size // 5, size // 2, size // 2), fill=(220, 40, 40))
    draw.polygon([(size // 2, 3 * size // 5), (4 * size // 5, 4 * size // 5), (size // 3, 9 * size // 10)], fill=(240, 240, 240))
    return image


def sides(text: str) -> list[int]:
    return [int(value) for value in text.split(",")]


def upscalers_for(folder: Path, tile: int = TILE) -> Upscalers:
    return Upscalers(UpscalerCatalog({"ESRGAN": folder}), torch.device("cpu"), lambda: TileSettings(tile, OVERLAP))


def write_rrdb(path: Path) -> int:
    """A real-size RRDB ESRGAN 4x with random weights (seeded), as an fp32 .safetensors; its parameters."""
    from modules.checkpoints.tensor_files import write_safetensors
    from modules.upscalers.spandrel_import import import_spandrel

    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    model = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
    write_safetensors(path, list(model.state_dict().items()), {"note": "random weights, for bench/upscalers.py"})
    return sum(p.numel() for p in model.parameters())


# speed -------------------------------------------------------------------------------------------------


def measure_speed(shipped: Upscalers, rrdb: Upscalers, sizes: list[int], repeats: int) -> tuple[list[list[str]], dict]:
    rows, raw = [], {}
    for size in sizes:
        image = picture(size)
        contenders = {
            "easel-demo-2x": (lambda image=image: shipped.upscale(image, SHIPPED.stem, 2), 2),
            "Lanczos 2x": (lambda image=image: shipped.upscale(image, "Lanczos", 2), 2),
            "RRDB ESRGAN 4x": (lambda image=image: rrdb.upscale(image, RRDB_NAME, 4), 4),
            "Lanczos 4x": (lambda image=image: rrdb.upscale(image, "Lanczos", 4), 4),
        }
        times = alternate({name: run for name, (run, _) in contenders.items()}, repeats)
        per_mp = {}
        for name, (_, scale) in contenders.items():
            megapixels = (size * scale) ** 2 / 1e6
            per_mp[name] = statistics.median(times[name]) / megapixels
        raw[size] = {"times": times, "seconds_per_output_megapixel": per_mp}
        for name, (_, scale) in contenders.items():
            lanczos = f"Lanczos {scale}x"
            ratio = "" if name == lanczos else f"{per_mp[name] / per_mp[lanczos]:,.0f}x"
            rows.append([f"{size}x{size} -> {size * scale}x{size * scale}", name, f"{statistics.median(times[name]) * 1000:,.1f} ms",
                         f"{per_mp[name]:,.3f}", ratio])
    return rows, raw


# memory (one subprocess per case) ------------------------------------------------------------------------


def memory_child(folder: Path, size: int, tile: int) -> None:
    """Loads the RRDB model, warms it up on a small picture, then prints the peak RSS added while it
    upscales a `size` picture with `tile` (0: whole)."""
    upscalers = upscalers_for(folder, tile)
    upscalers.upscale(picture(32), RRDB_NAME, 4)
    image = picture(size)
    started = time.perf_counter()
    with PeakMemory() as peak:
        upscalers.upscale(image, RRDB_NAME, 4)
    print(json.dumps({**peak.report(), "seconds": time.perf_counter() - started}))


def measure_memory(folder: Path, sizes: list[int], threads: int) -> dict[int, dict[str, dict]]:
    """{input side: {"tiled": report, "untiled": report}}."""
    results: dict[int, dict[str, dict]] = {}
    for size in sizes:
        for label, tile in (("tiled", TILE), ("untiled", 0)):
            command = [sys.executable, __file__, "--memory-child", str(folder), "--memory-sizes", str(size), "--tile", str(tile), "--threads", str(threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"The memory run ({size}, {label}) failed:\n{done.stderr}")
            results.setdefault(size, {})[label] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


# quality ------------------------------------------------------------------------------------------------------


def measure_quality(small: int, large: int) -> dict:
    from tools.train_upscaler import compare, draw, held_out_jobs, load_demo

    demo = load_demo()
    held_out = draw(demo, held_out_jobs(small, large), log=lambda _: None)
    del demo
    return compare(SHIPPED, held_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64x64 speed runs, 256x256 memory runs only and 16 + 4 held-out pictures")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=sides, default=None, help="input sides for the speed runs (default 64,128)")
    parser.add_argument("--memory-sizes", type=sides, default=None, help="input sides of the memory runs (default 256,384; --quick 256)")
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, default=TILE, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.memory_sizes[0], args.tile)
        return
    if not SHIPPED.is_file():
        raise SystemExit(f"{SHIPPED.relative_to(ROOT)} is missing: run tools/train_upscaler.py first.")
    sizes = args.sizes or ([64] if args.quick else [64, 128])
    memory_sizes = args.memory_sizes or ([256] if args.quick else [256, 384])
    held_out = (16, 4) if args.quick else (48, 16)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="easel-bench-upscalers-") as scratch:
        folder = Path(scratch)
        rrdb_parameters = write_rrdb(folder / f"{RRDB_NAME}.safetensors")
        speed_rows, speed = measure_speed(upscalers_for(SHIPPED.parent), upscalers_for(folder), sizes, args.repeats)
        memory = measure_memory(folder, memory_sizes, args.threads)
    quality = measure_quality(*held_out)

    speed_table = markdown_table(["input -> output", "upscaler", "median time", "s / output MP", "vs Lanczos"], speed_rows)
    memory_rows = []
    for size, cases in memory.items():
        for label, m in cases.items():
            memory_rows.append([f"{size}x{size} -> {size * 4}x{size * 4}", label if label == "untiled" else f"tiled {TILE}/{OVERLAP}",
                                f"{m['peak_added'] / MB:,.0f} MiB", f"{m['sampled_peak_anon_added'] / MB:,.0f} MiB", f"{m['seconds']:.1f} s", m["peak_source"]])
        tiled, untiled = cases["tiled"], cases["untiled"]
        memory_rows.append([f"{size}x{size} -> {size * 4}x{size * 4}", "ratio tiled / untiled", f"{tiled['peak_added'] / max(untiled['peak_added'], 1):.2f}",
                            f"{tiled['sampled_peak_anon_added'] / max(untiled['sampled_peak_anon_added'], 1):.2f}", f"{tiled['seconds'] / untiled['seconds']:.2f}", ""])
    memory_table = markdown_table(["RRDB ESRGAN 4x", "tiles", "peak RSS added", "sampled anon peak added", "time", "peak from"], memory_rows)
    quality_rows = []
    for downscale, pair in quality.items():
        for name, scores in pair.items():
            quality_rows.append([f"{downscale} 2x down", name, f"{scores.psnr:.2f}", f"{scores.gradient_ratio:.3f}", f"{scores.laplacian_ratio:.3f}"])
        quality_rows.append([f"{downscale} 2x down", "model - Lanczos", f"{pair['model'].psnr - pair['Lanczos'].psnr:+.2f} dB", "", ""])
    quality_table = markdown_table(["held-out input", "upscaler", "PSNR (dB)", "mean gradient / original's", "Laplacian var. / original's"], quality_rows)

    print("Speed (CPU, seconds per output megapixel)\n")
    print(speed_table)
    print(f"\nPeak memory while upscaling, tiled vs untiled (own subprocess each)\n\n{memory_table}")
    print(f"\nHeld-out quality of {SHIPPED.name} ({held_out[0]} pictures at 64x64 + {held_out[1]} at 128x128 from tools/train_upscaler.py)\n")
    print(quality_table)
    print(f"\n- {machine_info()}\n- {args.threads} torch threads; speed: medians of {args.repeats} alternating runs after one warm-up each; "
          f"RRDB: {rrdb_parameters:,} parameters, random weights; tiles {TILE} with overlap {OVERLAP}\n- {time.perf_counter() - started:.0f} s in all")
    path = write_json(ROOT / "bench" / "results" / ("upscalers.quick.json" if args.quick else "upscalers.json"), {
        "benchmark": "upscalers", "machine": machine_info(), "threads": args.threads,
        "speed": speed, "memory": memory,
        "quality": {down: {name: s.__dict__ for name, s in pair.items()} for down, pair in quality.items()},
        "tables": {"speed": speed_table, "memory": memory_table, "quality": quality_table},
    })
    print(f"JSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
