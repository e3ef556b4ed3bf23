"""Trains Easel's default upscaler, models/ESRGAN/easel-demo-2x.safetensors: a Real-ESRGAN "compact"
(SRVGGNetCompact, spandrel's `Compact`) 2x model for the pictures the demo model draws.

Like the demo checkpoint it is made here, from nothing downloaded:
1. data: the demo model (models/Stable-diffusion/easel-demo-shapes.safetensors, loaded by Easel's
   own ModelManager) draws pictures of its shapes and colours, 20 steps at CFG 2.5 with three
   samplers, at 64 x 64 and (fewer) 128 x 128, where it draws several shapes. Training and held-out
   pictures come from different prompt streams and seed ranges, both fixed.
2. train: random 64 x 64 crops (flipped and turned) of the training pictures are degraded into
   32 x 32 inputs: a random Gaussian blur, a downscale by 2 with a random resampling filter, light
   Gaussian noise and JPEG at a random quality (each but the downscale with some probability), and
   the network learns to give the crop back: L1 loss plus a small L1 loss on the image gradients
   (edges), Adam with a cosine learning-rate decay, on the CPU.
3. export: the weights, exactly under the keys `Compact.state_dict()` gives (so spandrel detects
   the architecture), written as fp16 `.safetensors` with the training facts as metadata.
4. measure: each held-out picture is downscaled by 2 with plain bicubic and box filters and brought
   back by the written file, loaded through Easel's `Upscalers` (the real loader and tiling), and by
   Lanczos: PSNR against the original, and sharpness as the mean gradient magnitude (and the
   Laplacian variance) relative to the original's. Nothing is written if the model does not beat
   Lanczos on PSNR and come closer to the original's sharpness.

    .venv/bin/python tools/train_upscaler.py                     # ~6 min on 2 CPU cores (1 thread); see its model card
    .venv/bin/python tools/train_upscaler.py --train-small 64 --train-large 8 --held-out-small 8 --held-out-large 0 \
        --steps 50 --out /tmp/u/test-2x.safetensors  # smoke run: too short to beat Lanczos, writes nothing

Deterministic for a seed and thread count: the pictures come from fixed seeds, every batch from a
generator seeded by (seed, step), the weights from `torch.manual_seed(seed)`.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from tools.demo_shapes import COLOURS, POSITIONS, SHAPES

DEFAULT_OUT = ROOT / "models" / "ESRGAN" / "easel-demo-2x.safetensors"
SAMPLERS = ("Euler a", "DPM++ 2M Karras", "Euler")
RESAMPLERS = {
    "box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR, "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
}
EVAL_DOWNSCALES = ("bicubic", "box")  # how a held-out picture is made small before it is upscaled back
HR_CROP = 64  # target crop side during training (input: 32)


# data: pictures drawn by the demo model --------------------------------------------------------


@dataclass(frozen=True)
class DrawJob:
    """One txt2img call: `batch` pictures of one prompt, from seeds seed, seed + 1, ..."""

    prompt: str
    seed: int
    size: int
    batch: int
    sampler: str


def random_prompt(rng: np.random.Generator) -> str:
    """A prompt the demo model follows: a shape of one colour on a background of another, sometimes
    with a position or size word (as in a quarter of its training captions)."""
    names = list(COLOURS)
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour, background = rng.choice(len(names), 2, replace=False)
    size = f"{('small', 'large')[rng.integers(2)]} " if rng.random() < 0.25 else ""
    text = f"a {size}{names[colour]} {shape} on a {names[background]} background"
    if rng.random() < 0.25:
        text += ", " + list(POSITIONS)[rng.integers(len(POSITIONS))]
    return text


def draw_jobs(small: int, large: int, stream: int, first_seed: int) -> list[DrawJob]:
    """`small` pictures at 64 x 64 (8 per prompt) and `large` at 128 x 128 (4 per prompt), prompts
    from generator `stream`, seeds counted up from `first_seed`."""
    rng = np.random.default_rng(stream)
    jobs: list[DrawJob] = []
    seed = first_seed
    for size, count, per_prompt in ((64, small, 8), (128, large, 4)):
        while count > 0:
            batch = min(per_prompt, count)
            jobs.append(DrawJob(random_prompt(rng), seed, size, batch, SAMPLERS[len(jobs) % len(SAMPLERS)]))
            seed += batch
            count -= batch
    return jobs


def training_jobs(small: int, large: int) -> list[DrawJob]:
    return draw_jobs(small, large, stream=1, first_seed=10_000)


def held_out_jobs(small: int, large: int) -> list[DrawJob]:
    """The held-out pictures: their own prompt stream and seed range, never trained on."""
    return draw_jobs(small, large, stream=2, first_seed=900_000)


def load_demo(work: Path | None = None) -> Any:
    """The shipped demo checkpoint as Easel loads it (CPU, fp32): a LoadedModel."""
    from modules.checkpoints.hashing import HashCache
    from modules.checkpoints.manager import ManagerOptions, ModelManager
    from modules.checkpoints.registry import ModelRegistry
    from modules.cmd_args import DEMO_CHECKPOINT

    if not DEMO_CHECKPOINT.is_file():
        raise SystemExit(f"{DEMO_CHECKPOINT} is missing: run tools/train_demo_model.py first.")
    work = Path(work or tempfile.mkdtemp(prefix="easel-upscaler-"))
    registry = ModelRegistry([], [], HashCache(work / "hashes.json"), [DEMO_CHECKPOINT])
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, work / "tokenizers", ManagerOptions())
    return manager.switch_checkpoint(registry.entry_for_path(DEMO_CHECKPOINT))


def draw(demo: Any, jobs: list[DrawJob], log: Callable[[str], None] = print) -> list[Image.Image]:
    """The pictures of `jobs`, in order."""
    from modules.demo_model import DEMO_DEFAULTS
    from modules.generation.request import GenerationRequest
    from modules.generation.txt2img import txt2img

    pictures: list[Image.Image] = []
    started = time.perf_counter()
    for index, job in enumerate(jobs):
        request = GenerationRequest(prompt=job.prompt, seed=job.seed, steps=20, cfg_scale=DEMO_DEFAULTS.cfg_scale, width=job.size, height=job.size,
                                    sampler_name=job.sampler, batch_size=job.batch, preview_every=0, save_samples=False)
        pictures.extend(image.convert("RGB") for image in txt2img(demo, request).images)
        if (index + 1) % 20 == 0 or index + 1 == len(jobs):
            log(f"  drew {len(pictures)} pictures ({index + 1}/{len(jobs)} prompts, {time.perf_counter() - started:.0f} s)")
    return pictures


# degradations ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Degradation:
    blur: float = 0.2  # probability of a Gaussian blur before the downscale
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    noise: float = 0.2  # probability of Gaussian noise after it
    noise_sigma: tuple[float, float] = (1.0, 4.0)  # in 0-255 levels
    jpeg: float = 0.2  # probability of a JPEG round trip at the end
    jpeg_quality: tuple[int, int] = (70, 95)


def degrade(target: Image.Image, rng: np.random.Generator, settings: Degradation) -> Image.Image:
    """A half-size input for `target`: blur?, downscale by 2 with a random filter, noise?, JPEG?"""
    image = target
    if rng.random() < settings.blur:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(*settings.blur_sigma))))
    resample = list(RESAMPLERS.values())[rng.integers(len(RESAMPLERS))]
    image = image.resize((target.width // 2, target.height // 2), resample=resample)
    if rng.random() < settings.noise:
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0.0, rng.uniform(*settings.noise_sigma), (image.height, image.width, 3))
        image = Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8))
    if rng.random() < settings.jpeg:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1] + 1)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image


def to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0


def training_batch(pictures: list[Image.Image], size: int, rng: np.random.Generator, settings: Degradation) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets): `size` random crops, flipped and turned, and their degraded half-size inputs."""
    inputs, targets = [], []
    for _ in range(size):
        picture = pictures[rng.integers(len(pictures))]
        left = 2 * int(rng.integers((picture.width - HR_CROP) // 2 + 1))
        top = 2 * int(rng.integers((picture.height - HR_CROP) // 2 + 1))
        crop = picture.crop((left, top, left + HR_CROP, top + HR_CROP))
        turn = int(rng.integers(8))
        if turn:
            crop = crop.transpose(list(Image.Transpose)[turn - 1])
        inputs.append(to_array(degrade(crop, rng, settings)))
        targets.append(to_array(crop))
    return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))


# training ------------------------------------------------------------------------------------------


def gradients(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return images[..., :, 1:] - images[..., :, :-1], images[..., 1:, :] - images[..., :-1, :]


def loss_of(output: torch.Tensor, target: torch.Tensor, edge_weight: float) -> torch.Tensor:
    loss = F.l1_loss(output, target)
    if edge_weight:
        (out_x, out_y), (tgt_x, tgt_y) = gradients(output), gradients(target)
        loss = loss + edge_weight * (F.l1_loss(out_x, tgt_x) + F.l1_loss(out_y, tgt_y))
    return loss


def train(pictures: list[Image.Image], args: argparse.Namespace, settings: Degradation, log: Callable[[str], None] = print) -> torch.nn.Module:
    from modules.upscalers.spandrel_import import import_spandrel

    import_spandrel()  # spandrel via Easel's importer (CPU torch has no torchvision: see that module)
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(args.seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=args.num_feat, num_conv=args.num_conv, upscale=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    warmup = min(100, args.steps // 10)

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    model.train()
    started = time.perf_counter()
    smoothed = None
    for step in range(args.steps):
        inputs, targets = training_batch(pictures, args.batch, np.random.default_rng([args.seed, step]), settings)
        loss = loss_of(model(inputs), targets, args.edge_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        if (step + 1) % 250 == 0 or step + 1 == args.steps:
            elapsed = time.perf_counter() - started
            log(f"  step {step + 1}/{args.steps}: loss {smoothed:.4f}, lr {schedule.get_last_lr()[0]:.2e}, {elapsed:.0f} s ({(step + 1) / elapsed:.1f} it/s)")
    return model.eval()


# measuring -----------------------------------------------------------------------------------------


def psnr(output: np.ndarray, target: np.ndarray) -> float:
    mse = float(np.mean((output.astype(np.float64) - target.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def mean_gradient(image: np.ndarray) -> float:
    """Mean gradient magnitude of the luma (central differences), in levels per pixel."""
    y = luma(image)
    gy, gx = np.gradient(y)
    return float(np.mean(np.hypot(gx, gy)))


def laplacian_variance(image: np.ndarray) -> float:
    y = luma(image)
    lap = y[1:-1, :-2] + y[1:-1, 2:] + y[:-2, 1:-1] + y[2:, 1:-1] - 4 * y[1:-1, 1:-1]
    return float(lap.var())


@dataclass
class Scores:
    """Means over the held-out pictures: PSNR in dB; sharpness as the output's mean gradient
    magnitude and Laplacian variance over the original's (1.0 = as sharp as the original)."""

    psnr: float
    gradient_ratio: float
    laplacian_ratio: float


def score(upscale: Callable[[Image.Image], Image.Image], targets: list[Image.Image], downscale: str) -> Scores:
    psnrs, gradient_ratios, laplacian_ratios = [], [], []
    for target in targets:
        small = target.resize((target.width // 2, target.height // 2), resample=RESAMPLERS[downscale])
        output = np.asarray(upscale(small).convert("RGB"))
        original = np.asarray(target)
        assert output.shape == original.shape, (output.shape, original.shape)
        psnrs.append(psnr(output, original))
        gradient_ratios.append(mean_gradient(output) / max(mean_gradient(original), 1e-9))
        laplacian_ratios.append(laplacian_variance(output) / max(laplacian_variance(original), 1e-9))
    return Scores(float(np.mean(psnrs)), float(np.mean(gradient_ratios)), float(np.mean(laplacian_ratios)))


def compare(model_file: Path, targets: list[Image.Image]) -> dict[str, dict[str, Scores]]:
    """{downscale: {"model": scores, "Lanczos": scores}}, the model loaded from `model_file` through
    Easel's Upscalers (tiles of 192 with 8 overlap, as A1111's defaults)."""
    from modules.upscalers.catalog import UpscalerCatalog
    from modules.upscalers.service import TileSettings, Upscalers

    upscalers = Upscalers(UpscalerCatalog({"ESRGAN": model_file.parent}), torch.device("cpu"), lambda: TileSettings(192, 8))
    results: dict[str, dict[str, Scores]] = {}
    for downscale in EVAL_DOWNSCALES:
        results[downscale] = {
            "model": score(lambda image: upscalers.upscale(image, model_file.stem, 2), targets, downscale),
            "Lanczos": score(lambda image: upscalers.upscale(image, "Lanczos", 2), targets, downscale),
        }
    return results


def beats_lanczos(results: dict[str, dict[str, Scores]]) -> bool:
    """Higher PSNR and sharpness closer to the original's (mean gradient) for every downscale."""
    return all(
        pair["model"].psnr > pair["Lanczos"].psnr and abs(1 - pair["model"].gradient_ratio) < abs(1 - pair["Lanczos"].gradient_ratio)
        for pair in results.values()
    )


def results_table(results: dict[str, dict[str, Scores]]) -> str:
    lines = ["| held-out input | upscaler | PSNR (dB) | mean gradient / original's | Laplacian variance / original's |", "|---|---|---|---|---|"]
    for downscale, pair in results.items():
        for name, scores in pair.items():
            lines.append(f"| {downscale} 2x down | {name} | {scores.psnr:.2f} | {scores.gradient_ratio:.3f} | {scores.laplacian_ratio:.3f} |")
    return "\n".join(lines)


# export ----------------------------------------------------------------------------------------------


def state_of(model: torch.nn.Module, dtype: torch.dtype) -> list[tuple[str, torch.Tensor]]:
    return [(key, value.detach().to(dtype)) for key, value in model.state_dict().items()]


def write_model(path: Path, model: torch.nn.Module, dtype: torch.dtype, metadata: dict[str, str]) -> None:
    from modules.checkpoints.tensor_files import write_safetensors

    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, state_of(model, dtype), metadata)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train-small", type=int, default=480, help="training pictures at 64 x 64")
    parser.add_argument("--train-large", type=int, default=96, help="training pictures at 128 x 128")
    parser.add_argument("--held-out-small", type=int, default=48)
    parser.add_argument("--held-out-large", type=int, default=16)
    parser.add_argument("--num-feat", type=int, default=32)
    parser.add_argument("--num-conv", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--edge-weight", type=float, default=0.1, help="weight of the L1 loss on image gradients")
    parser.add_argument("--blur", type=float, default=Degradation.blur, help="probability of a blur before the downscale")
    parser.add_argument("--noise", type=float, default=Degradation.noise, help="probability of Gaussian noise")
    parser.add_argument("--jpeg", type=float, default=Degradation.jpeg, help="probability of a JPEG round trip")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    print(f"Drawing {args.train_small} + {args.train_large} training and {args.held_out_small} + {args.held_out_large} held-out pictures with the demo model")
    demo = load_demo()
    pictures = draw(demo, training_jobs(args.train_small, args.train_large))
    held_out = draw(demo, held_out_jobs(args.held_out_small, args.held_out_large))
    del demo
    drawn = time.perf_counter() - started

    print(f"Training Compact(num_feat={args.num_feat}, num_conv={args.num_conv}, upscale=2): {args.steps} steps at batch {args.batch}")
    settings = Degradation(blur=args.blur, noise=args.noise, jpeg=args.jpeg)
    model = train(pictures, args, settings)
    trained = time.perf_counter() - started - drawn
    parameters = sum(p.numel() for p in model.parameters())
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32

    with tempfile.TemporaryDirectory() as scratch:  # measured as the file it will be, then moved in place
        candidate = Path(scratch) / args.out.name
        write_model(candidate, model, dtype, {})
        results = compare(candidate, held_out)
    print(results_table(results))
    elapsed = time.perf_counter() - started
    if not beats_lanczos(results):
        print(f"The model does not beat Lanczos on the held-out pictures; nothing written. ({elapsed:.0f} s)")
        sys.exit(1)

    metadata = {
        "easel.upscaler": json.dumps({
            "architecture": "RealESRGAN Compact (SRVGGNetCompact)", "num_feat": args.num_feat, "num_conv": args.num_conv, "scale": 2,
            "parameters": parameters, "dtype": args.dtype,
        }),
        "easel.training": json.dumps({
            "script": "tools/train_upscaler.py", "data": "pictures drawn by easel-demo-shapes (20 steps, CFG 2.5)",
            "train_pictures": {"64x64": args.train_small, "128x128": args.train_large},
            "held_out_pictures": {"64x64": args.held_out_small, "128x128": args.held_out_large},
            "degradations": settings.__dict__ | {"downscale_filters": list(RESAMPLERS)},
            "steps": args.steps, "batch": args.batch, "crop": HR_CROP, "lr": args.lr, "loss": f"L1 + {args.edge_weight} x L1 of image gradients",
            "seed": args.seed, "threads": args.threads, "seconds": round(elapsed),
        }),
        "easel.held_out": json.dumps({down: {name: s.__dict__ for name, s in pair.items()} for down, pair in results.items()}),
        "license": "Apache-2.0",
    }
    write_model(args.out, model, dtype, metadata)
    print(f"Wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, {parameters:,} parameters, {args.dtype})")
    print(f"Time: {elapsed:.0f} s in all (drawing {drawn:.0f} s, training {trained:.0f} s, measuring {elapsed - drawn - trained:.0f} s)")


if __name__ == "__main__":
    main()
