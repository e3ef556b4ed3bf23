"""Trains Easel's demo ControlNet: a canny ControlNet for the demo model (easel-demo-shapes), so
ControlNet works out of the box and its effect can be measured (tests/semantic/test_demo_controlnet.py).

The network is the standard ControlNet: `ControlNetModel.from_unet(demo_unet)`, its encoder copied
from the demo UNet's, its zero convolutions at zero, so at step 0 it changes nothing. Only the
ControlNet trains; the demo's UNet, VAE and text encoder are frozen, loaded through Easel's own
loader (so prompts are encoded exactly as Easel encodes them).

Data: pictures drawn by tools/demo_shapes.py (the generator the demo model was trained on), one
shape in one of 8 colours on a plain background of another, but at *any* position and a continuous
range of sizes (the demo saw 9 grid positions); the caption is the demo's ("a red circle on a blue
background"), empty for a share of them. The control map is Easel's canny preprocessor output
(modules/controlnet/preprocess.py, thresholds 100/200), computed at processor resolution 64 (what
Pixel Perfect picks for a 64 x 64 picture); a share of the maps are made as the UI's defaults make
them instead, at resolution 512 and fitted down to 64 (faint, thin lines), so both work. Loss: plain
epsilon MSE on the VAE latents, noised with SD's schedule exactly as tools/train_demo_model.py
noises them (scaled_linear 0.00085-0.012, 1000 steps, latents sampled from the encoder's
distribution and scaled).

    python tools/train_demo_controlnet.py             # the shipped file: ~11 min on a 2-core CPU (1 thread)
    python tools/train_demo_controlnet.py --threads 2 # ~9 min on an idle 2-core CPU (slightly different weights)
    python tools/train_demo_controlnet.py --steps 20 --images 200 --out /tmp/c.safetensors  # smoke run

Deterministic for a seed, device and thread count: every step's batch, captions and noise come
from generators seeded by (seed, step) (tools/train_demo_model.py's `step_generator`). The written
file is checked to load through Easel's ControlNet loader for the demo UNet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from modules.controlnet.preprocess import detect, find_preprocessor, fit  # noqa: E402
from tools.demo_shapes import COLOURS, POSITIONS, SHAPES, SIZES, Scene, caption, render  # noqa: E402
from tools.train_demo_model import lr_at, sd_alphas_cumprod, step_generator  # noqa: E402

DEFAULT_OUT = ROOT / "models" / "ControlNet" / "easel-demo-canny.safetensors"
IMAGE_SIZE = 64
STAGE = 11  # this script's stage number in step_generator's keys (the demo trainer uses 0-4)


@dataclass
class ControlConfig:
    seed: int = 0
    images: int = 4000
    steps: int = 2000
    batch: int = 24
    lr: float = 1e-3
    warmup: int = 50
    caption_dropout: float = 0.3  # share of empty captions: the map alone must carry the layout
    default_res_share: float = 0.25  # share of maps made at the UI's default resolution (512), fitted to 64
    radius_low: float = 0.12  # half-width of the shape, fraction of the picture
    radius_high: float = 0.3


# data -------------------------------------------------------------------------------------------


def random_placed_scene(rng: np.random.Generator, config: ControlConfig) -> Scene:
    """One shape and colour pair (never equal), anywhere on the picture, of any size in the range.
    The position and size words are the nearest of the demo's (for captions that use them)."""
    names = list(COLOURS)
    colour, background = (names[i] for i in rng.choice(len(names), size=2, replace=False))
    radius = float(rng.uniform(config.radius_low, config.radius_high))
    centre = (float(rng.uniform(radius, 1 - radius)), float(rng.uniform(radius, 1 - radius)))
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - centre[0]) ** 2 + (POSITIONS[p][1] - centre[1]) ** 2)
    size = "small" if radius < (SIZES["small"][1] + SIZES["large"][0]) / 2 else "large"
    return Scene(SHAPES[rng.integers(len(SHAPES))], colour, background, position, size, centre, radius)


def canny_map(picture: Image.Image, resolution: int = IMAGE_SIZE) -> np.ndarray:
    """Easel's canny map of a picture (default thresholds), fitted to 64 x 64 as a unit fits it."""
    detected = detect(find_preprocessor("canny", "demo ControlNet"), picture, resolution, -1, -1)
    return fit(detected, IMAGE_SIZE, IMAGE_SIZE, "Crop and Resize")


def make_data(config: ControlConfig) -> tuple[list[Scene], torch.Tensor, torch.Tensor]:
    """Scenes, pictures ([-1, 1], N x 3 x 64 x 64) and control maps ([0, 1], N x 3 x 64 x 64)."""
    rng = np.random.default_rng(config.seed)
    scenes = [random_placed_scene(rng, config) for _ in range(config.images)]
    default_res = rng.random(config.images) < config.default_res_share
    pictures, maps = [], []
    for scene, low_res in zip(scenes, default_res):
        picture = render(scene, IMAGE_SIZE)
        pictures.append(np.asarray(picture))
        maps.append(canny_map(picture, 512 if low_res else IMAGE_SIZE))
    pixels = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float() / 127.5 - 1
    hints = torch.from_numpy(np.stack(maps)).permute(0, 3, 1, 2).float() / 255.0
    return scenes, pixels, hints


@torch.no_grad()
def encode_latents(vae: torch.nn.Module, pixels: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen encoder's latent distribution (mean, std) of every picture."""
    means, stds = [], []
    for start in range(0, len(pixels), chunk):
        dist = vae.encode(pixels[start:start + chunk]).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


# model ------------------------------------------------------------------------------------------


def load_demo(work: Path) -> Any:
    """The shipped demo checkpoint as Easel loads it (CPU, fp32): a LoadedModel."""
    from tools.train_upscaler import load_demo as load

    return load(work)


def new_controlnet(unet: torch.nn.Module, seed: int) -> torch.nn.Module:
    """The standard ControlNet init: the UNet's encoder copied, zero convolutions at zero."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)  # the hint encoder's first layers are randomly initialised
    return ControlNetModel.from_unet(unet)


# training ---------------------------------------------------------------------------------------


def train(config: ControlConfig, out: Path, threads: int, work: Path) -> dict[str, Any]:
    torch.set_num_threads(threads)
    began = time.perf_counter()
    demo = load_demo(work)
    unet, vae = demo.unet, demo.vae_module
    for module in (unet, vae, demo.text_encoder("text_encoder")):
        module.requires_grad_(False).eval()
    scaling = float(vae.config.scaling_factor)

    scenes, pixels, hints = make_data(config)
    mean, std = encode_latents(vae, pixels)
    print(f"[data] {len(scenes)} pictures, maps and latents in {time.perf_counter() - began:.0f} s", flush=True)

    from modules.generation.text import build_prompt_encoder

    prompts = build_prompt_encoder(demo, 1)  # Easel's own prompt encoding (clip skip 1)
    contexts: dict[str, torch.Tensor] = {}

    def context(text: str) -> torch.Tensor:
        if text not in contexts:
            contexts[text] = prompts.encode(text).hidden[0]
        return contexts[text]

    network = new_controlnet(unet, config.seed + 1)
    network.train()
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    acp = sd_alphas_cumprod()
    smoothed: float | None = None
    train_began = time.perf_counter()
    for step in range(config.steps):
        gen, rng = step_generator(config.seed, STAGE, step, torch.device("cpu"))
        index = rng.integers(len(scenes), size=config.batch)
        texts = ["" if rng.random() < config.caption_dropout else caption(scenes[i], background=rng.random() < 0.85) for i in index]
        x0 = (mean[index] + std[index] * torch.randn(mean[index].shape, generator=gen)) * scaling
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (len(index),), generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        hidden = torch.stack([context(text) for text in texts])
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.steps, config.warmup, config.lr)
        down, mid = network(noisy, t, encoder_hidden_states=hidden, controlnet_cond=hints[index], return_dict=False)
        pred = unet(noisy, t, encoder_hidden_states=hidden, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        loss = F.mse_loss(pred, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        if (step + 1) % 50 == 0 or step + 1 == config.steps:
            elapsed = time.perf_counter() - train_began
            rate = (step + 1) / elapsed
            print(f"[controlnet] step {step + 1}/{config.steps}  loss {smoothed:.4f}  {elapsed:.0f} s  {rate:.2f} it/s  "
                  f"eta {(config.steps - step - 1) / rate:.0f} s", flush=True)
    train_seconds = time.perf_counter() - train_began

    network.eval()
    summary = {
        "config": asdict(config),
        "threads": threads,
        "torch": torch.__version__,
        "final_loss": round(float(smoothed or 0.0), 5),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - began, 1),
        "parameters": sum(p.numel() for p in network.parameters()),
    }
    metadata = {
        "easel.kind": "controlnet",
        "easel.base_model": "easel-demo-shapes",
        "easel.preprocessor": "canny (thresholds 100/200, processor resolution 64 or the default 512)",
        "easel.trained_by": "tools/train_demo_controlnet.py",
        "easel.training": json.dumps(summary),
        "license": "Apache-2.0",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    from modules.checkpoints.tensor_files import write_safetensors

    write_safetensors(out, ((k, v.half()) for k, v in network.state_dict().items()), metadata)
    check_loads(unet, out)
    summary["file_bytes"] = out.stat().st_size
    return summary


def check_loads(unet: torch.nn.Module, path: Path) -> None:
    """The written file loads through Easel's ControlNet loader for the demo UNet."""
    from modules.controlnet.models import build_for, read_state

    build_for(unet, read_state(path), path.name)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, ControlConfig]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="ControlNet file to write (diffusers layout, fp16)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (the shipped file: 1; results differ slightly with the count)")
    parser.add_argument("--work-dir", type=Path, default=None, help="hash cache and tokenizer for loading the demo (default: a temp dir)")
    for name, value in asdict(ControlConfig()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    config = ControlConfig(**{name: getattr(args, name) for name in asdict(ControlConfig())})
    problems = [f"--{name} must be at least 1" for name in ("images", "steps", "batch", "threads")
                if getattr(config if name != "threads" else args, name) < 1]
    if not config.lr > 0:
        problems.append("--lr must be above 0")
    for name in ("caption_dropout", "default_res_share"):
        if not 0 <= getattr(config, name) <= 1:
            problems.append(f"--{name.replace('_', '-')} is a share: 0 to 1")
    if not 0 < config.radius_low <= config.radius_high < 0.5:
        problems.append("need 0 < --radius-low <= --radius-high < 0.5")
    if problems:
        parser.error("; ".join(problems))
    return args, config


def main(argv: list[str] | None = None) -> None:
    args, config = parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="easel-controlnet-"))
    summary = train(config, args.out, args.threads, work)
    print(json.dumps(summary, indent=2), flush=True)


if __name__ == "__main__":
    main()
