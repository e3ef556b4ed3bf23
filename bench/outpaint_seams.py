"""Benchmark: how visible the seam is where each outpainting method joins new content to the picture.

    .venv/bin/python bench/outpaint_seams.py --quick   # tiny SD1 model, 3 pictures, about a minute
    .venv/bin/python bench/outpaint_seams.py           # + the 9-channel inpainting model, 6 pictures, 20 steps:
                                                       # about 18 CPU-minutes (10-30 min on 2 cores)

Synthetic pictures (a smooth gradient, stripes, a fine texture, a "photo" of 1/f noise with
shapes, soft blobs, a hard-edged checker) are outpainted by every method in OUTPAINT_METHODS,
on all four sides and on the right only, with the same seed, sampler (Euler a), steps and
denoising strength (0.8, A1111's mk2 hint) and each method's default mask blur. The processing
window is 512x512, larger than every canvas, so A1111's methods see the whole picture as they do
at their usual sizes. The tiny models have random weights, so what they paint is noise: the
numbers judge how a method joins whatever the model paints to the picture, not the content.

For every grown side, looking across the old border, with strips of W = 4 lines on each side:
- seam colour jump: mean |mean colour of the W lines outside - of the W lines inside| (0-255 levels);
- seam gradient jump: mean |gradient across the outer strip - across the inner strip| (levels/px);
- "x inside": the same statistic measured inside the source picture at every line (a picture's own
  content jumps too), summed over all cases and divided: 1.0 means the seam is no more visible
  than any line of the picture itself;
- original altered: mean |output - source| over the source's area, the price of blending into it.
"Ratio to best" divides each method's seam jumps by the best method's. Runs are interleaved per
picture; times are the total over all pictures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from _common import machine_info, markdown_table, write_json  # noqa: E402
from modules.checkpoints.hashing import HashCache  # noqa: E402
from modules.checkpoints.manager import ManagerOptions, ModelManager  # noqa: E402
from modules.checkpoints.registry import ModelRegistry  # noqa: E402
from modules.generation.outpaint import OUTPAINT_METHODS, OutpaintRequest, outpaint, resolve  # noqa: E402
from modules.generation.request import Img2ImgRequest  # noqa: E402
from tools.make_test_models import write_test_checkpoint  # noqa: E402

STRIP = 4  # lines each side of the border
DIRECTION_SETS = (("left", "right", "up", "down"), ("right",))


# pictures ----------------------------------------------------------------------------------------


def synthetic_pictures(size: int, seed: int = 0) -> dict[str, Image.Image]:
    """Six kinds of picture content, each `size` x `size` RGB."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    x, y = np.meshgrid(ramp, ramp)

    def to_image(values: np.ndarray) -> Image.Image:
        return Image.fromarray(np.clip(values * 255, 0, 255).astype(np.uint8), "RGB")

    gradient = np.stack([x, y, 0.3 + 0.4 * x * y], axis=2)
    phase = (x * 0.8 + y * 0.5) * size / 6
    stripes = np.stack([0.5 + 0.4 * np.sin(phase), 0.5 + 0.4 * np.sin(phase + 2), 0.5 + 0.3 * np.cos(phase)], axis=2)
    texture = to_image(rng.random((size, size, 3))).filter(ImageFilter.GaussianBlur(1.2))
    photo = pink_noise(size, rng)
    draw = ImageDraw.Draw(photo)
    draw.ellipse((size // 5, size // 4, size // 2, size * 3 // 5), fill=(200, 60, 50))
    draw.rectangle((size * 3 // 5, size // 2, size - 10, size - 20), fill=(40, 70, 150))
    blobs = to_image(rng.random((8, 8, 3))).resize((size, size), Image.BICUBIC)
    checker = ((np.floor(x * 6) + np.floor(y * 6)) % 2)[..., None] * np.array([0.7, 0.5, 0.2]) + 0.15
    return {
        "gradient": to_image(gradient), "stripes": to_image(stripes), "texture": texture, "photo-like": photo,
        "soft blobs": blobs, "checker": to_image(checker),
    }


def pink_noise(size: int, rng: np.random.Generator) -> Image.Image:
    """Noise with a 1/f spectrum, like the statistics of natural photographs."""
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    falloff = 1 / np.maximum(np.hypot(fx, fy), 1 / size)
    channels = []
    for _ in range(3):
        spectrum = np.fft.fft2(rng.standard_normal((size, size))) * falloff
        values = np.real(np.fft.ifft2(spectrum))
        channels.append((values - values.mean()) / (values.std() * 5) + 0.5)
    return Image.fromarray(np.clip(np.stack(channels, axis=2) * 255, 0, 255).astype(np.uint8), "RGB")


# seam statistics ---------------------------------------------------------------------------------


def turned_left(values: np.ndarray, box: tuple[int, int, int, int], side: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The array flipped/transposed so that `side` becomes the left side, and the box with it."""
    x1, y1, x2, y2 = box
    height, width = values.shape[:2]
    if side == "left":
        return values, box
    if side == "right":
        return values[:, ::-1], (width - x2, y1, width - x1, y2)
    turned = values.transpose(1, 0, 2)
    if side == "up":
        return turned, (y1, x1, y2, x2)
    return turned[:, ::-1], (height - y2, x1, height - y1, x2)


def strip_jumps(outer: np.ndarray, inner: np.ndarray) -> tuple[float, float]:
    """Colour and gradient jump between two strips of lines (lines x length x 3), each listed from
    the border outward (outer) and from the border inward (inner)."""
    colour = np.abs(outer.mean(axis=0) - inner.mean(axis=0)).mean()
    lines = len(outer) - 1
    gradient_out = (outer[-1] - outer[0]) / lines  # outward
    gradient_in = (inner[0] - inner[-1]) / lines  # outward too
    return float(colour), float(np.abs(gradient_out - gradient_in).mean())


def seam_jumps(output: Image.Image, box: tuple[int, int, int, int], side: str) -> tuple[float, float]:
    """Colour and gradient jump across the old border on one side, along the picture's length."""
    values, (x1, y1, x2, y2) = turned_left(np.asarray(output, dtype=np.float32), box, side)
    outer = values[y1:y2, x1 - STRIP : x1][:, ::-1].transpose(1, 0, 2)
    inner = values[y1:y2, x1 : x1 + STRIP].transpose(1, 0, 2)
    return strip_jumps(outer, inner)


def inside_jumps(source: Image.Image, side: str) -> tuple[float, float]:
    """The same statistics between neighbouring strips at every line inside the source, averaged."""
    values, _ = turned_left(np.asarray(source, dtype=np.float32), (0, 0, *source.size), side)
    found = [strip_jumps(values[:, j - STRIP : j][:, ::-1].transpose(1, 0, 2), values[:, j : j + STRIP].transpose(1, 0, 2))
             for j in range(STRIP, values.shape[1] - STRIP + 1)]
    return float(np.mean([f[0] for f in found])), float(np.mean([f[1] for f in found]))


def original_altered(output: Image.Image, source: Image.Image, box: tuple[int, int, int, int]) -> float:
    kept = np.asarray(output.crop(box), dtype=np.float32)
    return float(np.abs(kept - np.asarray(source, dtype=np.float32)).mean())


# running -----------------------------------------------------------------------------------------


def load(path: Path, work: Path):
    registry = ModelRegistry([path.parent], [], HashCache(work / "cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, work / "tokenizers", ManagerOptions(checkpoint_cache_size=1))
    return manager.switch_checkpoint(registry.entry_for_path(path))


def measure(model, pictures: dict[str, Image.Image], args: argparse.Namespace) -> dict[str, dict]:
    """Every method on every picture and direction set; per method the summed statistics."""
    totals = {label: {"colour": 0.0, "gradient": 0.0, "inside_colour": 0.0, "inside_gradient": 0.0, "altered": [],
                      "seconds": 0.0, "sides": 0} for label in OUTPAINT_METHODS}
    for name, source in pictures.items():
        for directions in DIRECTION_SETS:
            for label in OUTPAINT_METHODS:
                base = Img2ImgRequest(prompt="a landscape", negative_prompt="blurry", sampler_name="Euler a", steps=args.steps,
                                      cfg_scale=7.0, width=512, height=512, seed=args.seed, init_images=[source],
                                      denoising_strength=0.8, preview_every=0)
                request = OutpaintRequest(base, method=label, directions=directions, pixels=args.pixels)
                started = time.perf_counter()
                output = outpaint(model, request).images[0]
                row = totals[label]
                row["seconds"] += time.perf_counter() - started
                box = resolve(request, source.size).expansion.box(source.size)
                row["altered"].append(original_altered(output, source, box))
                for side in directions:
                    colour, gradient = seam_jumps(output, box, side)
                    inside_colour, inside_gradient = inside_jumps(source, side)
                    row["colour"] += colour
                    row["gradient"] += gradient
                    row["inside_colour"] += inside_colour
                    row["inside_gradient"] += inside_gradient
                    row["sides"] += 1
                if args.save:
                    args.save.mkdir(parents=True, exist_ok=True)
                    output.save(args.save / f"{name}-{'-'.join(directions)}-{label.replace(' ', '_')}.png")
    return totals


def table_rows(model_label: str, totals: dict[str, dict]) -> list[list[str]]:
    best_colour = min(t["colour"] / t["sides"] for t in totals.values())
    best_gradient = min(t["gradient"] / t["sides"] for t in totals.values())
    rows = []
    for label, t in totals.items():
        colour, gradient = t["colour"] / t["sides"], t["gradient"] / t["sides"]
        rows.append([
            model_label, label,
            f"{colour:.2f}", f"{t['colour'] / t['inside_colour']:.2f}",
            f"{gradient:.2f}", f"{t['gradient'] / t['inside_gradient']:.2f}",
            f"{colour / best_colour:.2f} / {gradient / best_gradient:.2f}",
            f"{np.mean(t['altered']):.2f}", f"{t['seconds']:.1f} s",
        ])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny SD1 model only, 3 pictures, 8 steps")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128, help="source picture size")
    parser.add_argument("--pixels", type=int, default=64, help="pixels to expand per side")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--save", type=Path, default=None, help="folder to write every output picture to")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    args = parser.parse_args()
    if args.quick:
        args.steps = min(args.steps, 8)
    torch.set_num_threads(os.cpu_count() or 1)
    work = args.cache_dir / "outpaint"
    models_dir = work / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = [("tiny SD1", models_dir / "tiny-sd1.safetensors", {})]
    if not args.quick:
        checkpoints.append(("tiny SD1 inpainting (9 ch)", models_dir / "tiny-sd1-inpaint.safetensors", {"in_channels": 9}))
    pictures = synthetic_pictures(args.size)
    if args.quick:
        pictures = {k: pictures[k] for k in ("gradient", "texture", "photo-like")}
    rows, raw = [], {}
    for label, path, extra in checkpoints:
        if not path.exists():
            family = "sd1-inpaint" if extra else "sd1"
            write_test_checkpoint(path, family, "tiny", seed=4 if extra else 1, **extra)
        totals = measure(load(path, work), pictures, args)
        rows += table_rows(label, totals)
        raw[label] = totals
    header = ["model", "method", "seam colour jump", "x inside", "seam gradient jump", "x inside", "ratio to best (colour / gradient)",
              "original altered", "time"]
    table = markdown_table(header, rows)
    print(table)
    print(f"\n- {len(pictures)} pictures of {args.size}x{args.size}, +{args.pixels} px on all four sides and on the right only; "
          f"Euler a, {args.steps} steps, denoising 0.8, seed {args.seed}, each method's default mask blur; lower is better")
    print(f"- {machine_info()}")
    path = write_json(ROOT / "bench" / "results" / ("outpaint_seams.quick.json" if args.quick else "outpaint_seams.json"),
                      {"benchmark": "outpaint_seams", "machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()},
                       "results": raw, "table": table})
    print(f"JSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
