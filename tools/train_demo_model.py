"""Trains Easel's demo model: a tiny SD1-architecture text-to-image model of coloured shapes.

No real Stable Diffusion weights can be fetched here, and a first-time user should see Easel draw
something that matches the prompt before downloading gigabytes. This script trains one from scratch
on procedurally drawn pictures (tools/demo_shapes.py: "a red circle on a blue background, top
left") in the exact SD1.x family layout: an AutoencoderKL (8x downsampling, 4 latent channels), a
CLIPTextModel fed by the real CLIP tokenizer, and a UNet2DConditionModel with cross-attention,
trained with SD's noise schedule (scaled_linear 0.00085-0.012, 1000 steps) and epsilon prediction,
with caption dropout so classifier-free guidance works. It is written with Easel's own LDM writer,
so it loads like any downloaded single-file checkpoint.

Stages, each resumable from the work dir (a state file is saved every `--save-every` seconds):
1. data: `--images` pictures with their scenes, fixed by `--seed`
2. vae: the autoencoder (L1 + MSE + a small KL term) on 32 x 32 crops of the pictures
3. latents: every picture encoded once with the frozen encoder; the scaling factor is 1 / their std
4. decoder: the decoder alone, further, on whole pictures (the latent space does not change)
5. unet: text encoder + UNet jointly on the latents (min-SNR weighted epsilon loss, EMA weights)
5b. reading: a fine-tune of stage 5's EMA weights that teaches the model to read each word where it
   stands, so prompt emphasis works on it (tools/demo_reading.py)
6. export: the EMA weights written as fp16 `.safetensors`, the live-preview factors fitted

    python tools/train_demo_model.py              # ~75 min on an idle 2-core CPU; a GPU is used if present
    python tools/train_demo_model.py --images 300 --vae-steps 20 --decoder-steps 20 --unet-steps 20 --reading-steps 20 \
        --work-dir /tmp/t --out /tmp/t/m.safetensors  # smoke run

Stages 4 and 5 depend only on stage 3, so `--until decoder` in a second process can run stage 4
beside a first one in stage 5. Deterministic for a seed on one device and thread count: every
step's batch and noise come from generators seeded by (seed, stage, step), so a resumed run
continues exactly where it stopped; a stage's state file is reused only if the settings it
depends on are unchanged.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from modules.checkpoints.architecture import FAMILIES, ComponentSpec, ModelSpec, family_config  # noqa: E402
from modules.checkpoints.ldm_keys import TEXT_ENCODER_PREFIXES  # noqa: E402
from modules.checkpoints.tokenizer import load_clip_tokenizer  # noqa: E402
from modules.checkpoints.weights import normalize_spec, write_ldm_checkpoint  # noqa: E402
from tools.demo_reading import content_token_ids, install_mean_offset, jitter_emphasis, swap_context  # noqa: E402
from tools.demo_shapes import Scene, caption, scene_batch  # noqa: E402

DEFAULT_OUT = ROOT / "models" / "Stable-diffusion" / "easel-demo-shapes.safetensors"
DEFAULT_WORK = ROOT / "bench" / ".cache" / "demo-train"
IMAGE_SIZE = 64
TEXT_WIDTH = 64


@dataclass
class TrainConfig:
    """Everything that decides the result; stored in each state file so a resume uses the same."""

    seed: int = 0
    images: int = 6000
    vae_steps: int = 1600
    vae_batch: int = 16
    vae_crop: int = 32  # the VAE is fully convolutional: training on crops is 4x cheaper
    vae_lr: float = 3e-3
    kl_weight: float = 1e-4
    decoder_steps: int = 1500  # then the decoder alone, on whole pictures from the frozen latents
    decoder_lr: float = 1e-3
    unet_steps: int = 3000
    unet_batch: int = 48
    unet_lr: float = 1e-3
    warmup: int = 100
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.998
    # the reading stage (tools/demo_reading.py): a fine-tune of the UNet stage's EMA weights
    reading_steps: int = 2000
    blend_images: int = 1500  # extra pictures for the reading stage: shapes in a mix of two colours
    reading_lr: float = 5e-4
    context_swap: float = 0.5  # share of captions whose non-content positions are emptied
    emphasis_jitter: float = 0.5  # share of captions whose content words get random emphasis
    jitter_low: float = 0.5
    jitter_high: float = 1.5
    mean_offset: float = 1.0


# 1. models ------------------------------------------------------------------------------------


def model_configs() -> dict[str, ComponentSpec]:
    """The three components: SD1's configs with every width shrunk (SD1 layout and block types)."""
    unet = family_config("sd1", "unet")
    unet.update(
        block_out_channels=[32, 64, 128],
        layers_per_block=1,
        down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=2,  # SD1 configs mean "heads" here (diffusers' historical naming)
        norm_num_groups=8,  # at least 4 channels per group: a flat colour must survive the norms
        sample_size=IMAGE_SIZE // 8,
    )
    unet.pop("num_attention_heads", None)
    text = family_config("sd1", "text_encoder")
    text.update(hidden_size=TEXT_WIDTH, intermediate_size=TEXT_WIDTH * 4, num_hidden_layers=2, num_attention_heads=2, projection_dim=TEXT_WIDTH)
    vae = family_config("sd1", "vae")
    vae.update(
        block_out_channels=[16, 32, 64, 64],  # four levels: three downsamples, 8x like SD
        layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=4,  # 4+ channels per group: with 2, a flat colour's norm leaves only signs
        mid_block_add_attention=False,  # fully convolutional, so it can be trained on crops
        sample_size=IMAGE_SIZE,
    )
    return {
        "unet": ComponentSpec("UNet2DConditionModel", unet),
        "text_encoder": ComponentSpec("CLIPTextModel", text),
        "vae": ComponentSpec("AutoencoderKL", vae),
    }


def build(component: ComponentSpec, seed: int) -> torch.nn.Module:
    """A freshly initialised module (the library's own init, seeded)."""
    import diffusers
    import transformers

    torch.manual_seed(seed)
    config = {k: v for k, v in component.config.items() if not k.startswith("_") and k != "architectures"}
    if component.class_name == "CLIPTextModel":
        return transformers.CLIPTextModel(transformers.CLIPTextConfig(**config))
    return getattr(diffusers, component.class_name).from_config(config)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# 2. state files and progress ------------------------------------------------------------------


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Writes a state file atomically (a crash never leaves half a file to resume from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


# The settings each stage's result depends on: a state file is resumed only if they are unchanged.
_DATA = ("seed", "images")
_VAE = (*_DATA, "vae_steps", "vae_batch", "vae_crop", "vae_lr", "kl_weight")
_UNET = (*_VAE, "unet_batch", "unet_lr", "warmup", "caption_dropout", "min_snr_gamma", "ema_decay")
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "vae": _VAE,
    "decoder": (*_VAE, "decoder_steps", "decoder_lr"),
    # not unet_steps: the UNet's learning rate is constant after warm-up, so training longer is
    # exactly continuing a shorter run (resume it with a larger --unet-steps)
    "unet": _UNET,
    # it starts from the UNet stage's last step, so that stage's length matters here
    "reading": (*_UNET, "unet_steps", "blend_images", "reading_lr", "context_swap", "emphasis_jitter", "jitter_low", "jitter_high", "mean_offset"),
}


def load_state(path: Path, config: TrainConfig, stage: str) -> dict[str, Any] | None:
    """The saved state of a stage, if there is one made with the same settings for that stage."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved, wanted = state.get("config", {}), asdict(config)
    changed = [key for key in STAGE_FIELDS[stage] if saved.get(key) != wanted[key]]
    if changed:
        raise SystemExit(f"{path} was made with other settings ({', '.join(changed)}); delete it or pass the same options.")
    return state


class Progress:
    """Prints step, smoothed loss, elapsed time and rate every `every` steps."""

    def __init__(self, stage: str, total: int, start: int, every: int = 50):
        self.stage, self.total, self.start, self.every = stage, total, start, every
        self.began = time.perf_counter()
        self.loss: float | None = None

    def update(self, step: int, loss: float) -> None:
        self.loss = loss if self.loss is None else 0.98 * self.loss + 0.02 * loss
        if step % self.every == 0 or step == self.total:
            elapsed = time.perf_counter() - self.began
            rate = (step - self.start) / max(elapsed, 1e-9)
            eta = (self.total - step) / max(rate, 1e-9)
            print(f"[{self.stage}] step {step}/{self.total}  loss {self.loss:.4f}  elapsed {elapsed:.0f}s  {rate:.2f} it/s  eta {eta:.0f}s", flush=True)


def step_generator(seed: int, stage: int, step: int, device: torch.device) -> tuple[torch.Generator, np.random.Generator]:
    """The torch and numpy generators of one step: a resumed run draws exactly the same."""
    key = (seed * 1009 + stage) * 10_000_019 + step
    return torch.Generator(device).manual_seed(key), np.random.default_rng(key)


def lr_at(step: int, total: int | None, warmup: int, peak: float) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak over `total` steps (None: constant)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if total is None:
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# 3. data ----------------------------------------------------------------------------------------


def load_data(work: Path, config: TrainConfig, blend: bool = False) -> tuple[list[Scene], torch.Tensor]:
    """The training pictures ([-1, 1], N x 3 x 64 x 64) and scenes, drawn once and cached. With
    `blend`, the reading stage's extra pictures of two-colour mixes ("a red blue circle")."""
    count, seed = (config.blend_images, config.seed + 1) if blend else (config.images, config.seed)
    path = work / f"data-{'blend-' if blend else ''}{seed}-{count}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        scenes, pixels = [Scene(**s) for s in saved["scenes"]], saved["pixels"]
    else:
        began = time.perf_counter()
        scenes, array = scene_batch(count, seed, IMAGE_SIZE, blend)
        pixels = torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()
        save_state(path, {"scenes": [asdict(s) for s in scenes], "pixels": pixels})
        print(f"[data] drew {len(scenes)} {'blend ' if blend else ''}pictures in {time.perf_counter() - began:.0f}s", flush=True)
    return scenes, pixels.float() / 127.5 - 1


# 4. VAE -----------------------------------------------------------------------------------------


def train_vae(work: Path, config: TrainConfig, pixels: torch.Tensor, device: torch.device, save_every: float) -> torch.nn.Module:
    """Trains the autoencoder; returns it frozen, in eval mode."""
    vae = build(model_configs()["vae"], config.seed).to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    path = work / "vae-state.pt"
    state = load_state(path, config, "vae")
    start = 0
    if state is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        print(f"[vae] resuming at step {start}", flush=True)
    progress = Progress("vae", config.vae_steps, start)
    last_save = time.perf_counter()
    vae.train()
    for step in range(start, config.vae_steps):
        gen, rng = step_generator(config.seed, 1, step, device)
        x, y = rng.integers(0, (IMAGE_SIZE - config.vae_crop) // 8 + 1, size=2) * 8
        batch = pixels[rng.integers(len(pixels), size=config.vae_batch), :, y : y + config.vae_crop, x : x + config.vae_crop].to(device)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.vae_steps, 50, config.vae_lr)
        posterior = vae.encode(batch).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen, device=device)
        recon = vae.decode(z).sample
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1 - posterior.logvar).mean()
        loss = F.l1_loss(recon, batch) + F.mse_loss(recon, batch) + config.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        progress.update(step + 1, loss.item())
        if time.perf_counter() - last_save > save_every or step + 1 == config.vae_steps:
            save_state(path, {"config": asdict(config), "step": step + 1, "model": vae.state_dict(), "optimizer": optimizer.state_dict(), "loss": progress.loss})
            last_save = time.perf_counter()
    vae.requires_grad_(False)
    return vae.eval()


@torch.no_grad()
def encode_pictures(vae: torch.nn.Module, pixels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The latent means and stds of pictures, with the frozen encoder."""
    means, stds = [], []
    for i in range(0, len(pixels), 256):
        dist = vae.encode(pixels[i : i + 256].to(device)).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


def encode_all(work: Path, config: TrainConfig, vae: torch.nn.Module, pixels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Latent means and stds of every picture, and the scaling factor (1 / std of the latents)."""
    path = work / "latents.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        return saved["mean"], saved["std"], saved["scaling_factor"]
    mean, std = encode_pictures(vae, pixels, device)
    scaling = float(1.0 / mean.std())
    save_state(path, {"mean": mean, "std": std, "scaling_factor": scaling})
    print(f"[latents] {tuple(mean.shape)}, scaling factor {scaling:.5f}", flush=True)
    return mean, std, scaling


def encode_blends(work: Path, config: TrainConfig, vae: torch.nn.Module, pixels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The blend pictures' latents (cached like the others; the scaling factor stays the main one's)."""
    path = work / f"latents-blend-{config.seed + 1}-{config.blend_images}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        return saved["mean"], saved["std"]
    mean, std = encode_pictures(vae, pixels, device)
    save_state(path, {"mean": mean, "std": std})
    return mean, std


def refine_decoder(work: Path, config: TrainConfig, vae: torch.nn.Module, pixels: torch.Tensor, latents: tuple[torch.Tensor, torch.Tensor, float], device: torch.device, save_every: float) -> torch.nn.Module:
    """Trains the decoder further with the encoder frozen: the latent space (what the UNet learns)
    stays exactly the same, while the pictures decoded from it get sharper and truer in colour.
    Whole 64 x 64 pictures from the stored latents, so no encoder pass is needed."""
    decoder_params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    optimizer = torch.optim.AdamW(decoder_params, lr=config.decoder_lr, weight_decay=0.0)
    path = work / "decoder-state.pt"
    state = load_state(path, config, "decoder")
    start = 0
    if state is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        print(f"[decoder] resuming at step {start}", flush=True)
    mean, std, _ = latents
    progress = Progress("decoder", config.decoder_steps, start)
    last_save = time.perf_counter()
    vae.decoder.train()
    for p in decoder_params:
        p.requires_grad_(True)
    for step in range(start, config.decoder_steps):
        gen, rng = step_generator(config.seed, 3, step, device)
        index = rng.integers(len(pixels), size=config.vae_batch)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.decoder_steps, 20, config.decoder_lr)
        m, s = mean[index].to(device), std[index].to(device)
        z = m + s * torch.randn(m.shape, generator=gen, device=device)
        batch = pixels[index].to(device)
        recon = vae.decode(z).sample
        loss = F.l1_loss(recon, batch) + F.mse_loss(recon, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder_params, 1.0)
        optimizer.step()
        progress.update(step + 1, loss.item())
        if time.perf_counter() - last_save > save_every or step + 1 == config.decoder_steps:
            save_state(path, {"config": asdict(config), "step": step + 1, "model": vae.state_dict(), "optimizer": optimizer.state_dict(), "loss": progress.loss})
            last_save = time.perf_counter()
    vae.requires_grad_(False)
    return vae.eval()


# 5. text encoder + UNet -------------------------------------------------------------------------


def pick_caption(scene: Scene, rng: np.random.Generator, dropout: float) -> str:
    """One caption of a scene: empty with probability `dropout` (for classifier-free guidance),
    else the colour and shape, usually the background, sometimes the position words. (Size words
    are left out: every extra variant slows the learning of the colours, which matter most.)"""
    if rng.random() < dropout:
        return ""
    return caption(scene, background=rng.random() < 0.85, position=rng.random() < 0.25)


class TextEncoding:
    """Caption -> the 77 token ids Easel feeds the text encoder (BOS, tokens, EOS, EOS padding)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.cache: dict[str, list[int]] = {}

    def ids(self, captions: list[str], device: torch.device) -> torch.Tensor:
        for text in captions:
            if text not in self.cache:
                self.cache[text] = self.tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids
        return torch.tensor([self.cache[text] for text in captions], device=device)


def sd_alphas_cumprod() -> torch.Tensor:
    """SD's training schedule: betas scaled_linear from 0.00085 to 0.012 over 1000 steps."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0).float()


class Ema:
    """Exponential moving average of parameters (with the usual warm-up of the decay)."""

    def __init__(self, modules: dict[str, torch.nn.Module], decay: float):
        self.decay = decay
        self.shadow = {f"{n}.{k}": p.detach().clone() for n, m in modules.items() for k, p in m.named_parameters()}

    @torch.no_grad()
    def update(self, modules: dict[str, torch.nn.Module], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for n, m in modules.items():
            for k, p in m.named_parameters():
                self.shadow[f"{n}.{k}"].lerp_(p.detach(), 1 - decay)

    def weights(self, name: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The module's state dict with its parameters replaced by their averages."""
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        for key in list(state):
            if f"{name}.{key}" in self.shadow:
                state[key] = self.shadow[f"{name}.{key}"].clone()
        return state


class DenoisingLoss:
    """One step's loss for the text encoder + UNet: a batch of latents and captions fixed by
    (seed, stage, step), SD's noising, min-SNR weighted epsilon MSE. `condition` may change the
    text encoder's output before the UNet sees it (the reading stage does)."""

    def __init__(self, config: TrainConfig, stage_index: int, scenes: list[Scene], latents: tuple[torch.Tensor, torch.Tensor, float], tokenizer: Any, device: torch.device,
                 condition: Callable[[dict[str, torch.nn.Module], torch.Tensor, torch.Tensor, list[Scene], np.random.Generator], torch.Tensor] | None = None):
        self.config, self.stage_index, self.scenes, self.latents, self.device = config, stage_index, scenes, latents, device
        self.text = TextEncoding(tokenizer)
        self.acp = sd_alphas_cumprod().to(device)
        self.snr = self.acp / (1 - self.acp)
        self.condition = condition

    def __call__(self, modules: dict[str, torch.nn.Module], step: int) -> torch.Tensor:
        config, device = self.config, self.device
        gen, rng = step_generator(config.seed, self.stage_index, step, device)
        index = rng.integers(len(self.scenes), size=config.unet_batch)
        captions = [pick_caption(self.scenes[i], rng, config.caption_dropout) for i in index]
        mean, std, scaling = self.latents
        m, s = mean[index].to(device), std[index].to(device)
        x0 = (m + s * torch.randn(m.shape, generator=gen, device=device)) * scaling
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.randint(0, 1000, (len(index),), generator=gen, device=device)
        a = self.acp[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        ids = self.text.ids(captions, device)
        if self.condition is None:
            context = modules["text_encoder"](input_ids=ids).last_hidden_state
        else:
            context = self.condition(modules, ids, self.text.ids([""], device), [self.scenes[i] for i in index], rng)
        pred = modules["unet"](noisy, t, encoder_hidden_states=context).sample
        weight = torch.clamp(self.snr[t], max=config.min_snr_gamma) / self.snr[t]  # min-SNR-gamma for epsilon
        return (weight * F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))).mean()


def fit(stage: str, path: Path, config: TrainConfig, modules: dict[str, torch.nn.Module], steps: int, lr: float, loss_at: DenoisingLoss, save_every: float) -> Ema:
    """Trains `modules` for `steps` (resuming from `path`), saving state as it goes; returns the EMA."""
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    ema = Ema(modules, config.ema_decay)
    state = load_state(path, config, stage)
    start = 0
    if state is not None:
        for name, module in modules.items():
            module.load_state_dict(state[name])
        optimizer.load_state_dict(state["optimizer"])
        ema.shadow = state["ema"]
        start = state["step"]
        print(f"[{stage}] resuming at step {start}", flush=True)
    progress = Progress(stage, steps, start)
    last_save = time.perf_counter()
    for module in modules.values():
        module.train()
    for step in range(start, steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, None, config.warmup, lr)
        loss = loss_at(modules, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.update(modules, step)
        progress.update(step + 1, loss.item())
        if time.perf_counter() - last_save > save_every or step + 1 == steps:
            saved = {name: module.state_dict() for name, module in modules.items()}
            save_state(path, {"config": asdict(config), "step": step + 1, **saved, "optimizer": optimizer.state_dict(), "ema": ema.shadow, "loss": progress.loss})
            last_save = time.perf_counter()
    return ema


def train_unet(
    work: Path, config: TrainConfig, scenes: list[Scene], latents: tuple[torch.Tensor, torch.Tensor, float], tokenizer: Any, device: torch.device, save_every: float
) -> tuple[dict[str, torch.nn.Module], Ema]:
    """Trains the text encoder and UNet together on the latents; returns them and their EMA."""
    specs = model_configs()
    modules = {"unet": build(specs["unet"], config.seed + 1).to(device), "text_encoder": build(specs["text_encoder"], config.seed + 2).to(device)}
    loss = DenoisingLoss(config, 2, scenes, latents, tokenizer, device)
    return modules, fit("unet", work / "unet-state.pt", config, modules, config.unet_steps, config.unet_lr, loss, save_every)


def train_reading(
    work: Path, config: TrainConfig, base: tuple[dict[str, torch.nn.Module], Ema], scenes: list[Scene], latents: tuple[torch.Tensor, torch.Tensor, float],
    tokenizer: Any, device: torch.device, save_every: float,
) -> tuple[dict[str, torch.nn.Module], Ema]:
    """Fine-tunes the UNet stage's EMA weights so the model reads each word where it stands
    (tools/demo_reading.py): the mean offset first, then training with context swap and emphasis
    jitter. Returns the modules and their EMA."""
    specs = model_configs()
    modules = {name: build(specs[name], config.seed).to(device) for name in base[0]}
    for name, module in modules.items():
        module.load_state_dict(base[1].weights(name, base[0][name]))
    install_mean_offset(modules["text_encoder"], modules["unet"], config.mean_offset)
    content = content_token_ids(tokenizer).to(device)

    def condition(modules: dict[str, torch.nn.Module], ids: torch.Tensor, empty_ids: torch.Tensor, batch: list[Scene], rng: np.random.Generator) -> torch.Tensor:
        hidden = modules["text_encoder"](input_ids=torch.cat([ids, empty_ids])).last_hidden_state
        context, empty = hidden[:-1], hidden[-1:]
        keep = torch.isin(ids, content)
        keep[:, 0] = True  # the start token: the same in every caption
        swap = torch.from_numpy(rng.random(len(ids)) < config.context_swap).to(device)
        context = swap_context(context, empty, keep, swap)
        # not on blends: their two words' weights are what says how much of each colour to mix
        single = torch.tensor([not scene.blend for scene in batch], device=device)
        jitter = torch.from_numpy(rng.random(len(ids)) < config.emphasis_jitter).to(device) & single
        return jitter_emphasis(context, keep, jitter, rng, config.jitter_low, config.jitter_high)

    loss = DenoisingLoss(config, 4, scenes, latents, tokenizer, device, condition)  # scenes and latents include the blends
    return modules, fit("reading", work / "reading-state.pt", config, modules, config.reading_steps, config.reading_lr, loss, save_every)


# 6. export --------------------------------------------------------------------------------------


def export_spec(scaling: float) -> ModelSpec:
    """The SD1-family spec of the demo model, as the loader will infer it from the file."""
    components = model_configs()
    vae = ComponentSpec("AutoencoderKL", {**components["vae"].config, "scaling_factor": scaling})
    scheduler = family_config("sd1", "scheduler")
    spec = ModelSpec(
        family=FAMILIES["sd1"],
        components={"unet": components["unet"], "text_encoder": components["text_encoder"], "vae": vae},
        prediction_type="epsilon",
        scheduler_config=scheduler,
        text_sources=dict(TEXT_ENCODER_PREFIXES["sd1"]),
    )
    return normalize_spec(spec)


@torch.no_grad()
def fit_preview_factors(vae: torch.nn.Module, pixels: torch.Tensor, scaling: float, count: int = 512) -> tuple[list[list[float]], list[float]]:
    """Least-squares latent -> RGB factors (4 x 3) and bias for "Approx cheap" previews, fitted on
    training pictures: the scaled latent of each 8x8 block against the block's mean decoded colour."""
    batch = pixels[:count].to(next(vae.parameters()).device)
    raw = vae.encode(batch).latent_dist.mean
    decoded = vae.decode(raw).sample.float().cpu()
    latents = raw.float().cpu() * scaling
    targets = F.adaptive_avg_pool2d(decoded, latents.shape[-2:])
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    y = targets.permute(0, 2, 3, 1).reshape(-1, 3)
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    solution = torch.linalg.lstsq(design.double(), y.double()).solution.float()
    residual = (design @ solution - y).abs().mean().item()
    print(f"[export] preview factors fitted; mean abs error {residual:.3f} (colours in [-1, 1])", flush=True)
    return [[round(v, 4) for v in row] for row in solution[:-1].tolist()], [round(v, 4) for v in solution[-1].tolist()]


def export(out: Path, spec: ModelSpec, weights: dict[str, dict[str, torch.Tensor]]) -> None:
    """Writes the checkpoint in fp16 with Easel's LDM writer."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cpu = {name: {k: v.detach().float().cpu() for k, v in tensors.items()} for name, tensors in weights.items()}
    write_ldm_checkpoint(out, spec, cpu, torch.float16)
    print(f"[export] wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", flush=True)


def loaded_vae_fingerprint(out: Path, tokenizer_cache: Path) -> tuple[torch.nn.Module, str]:
    """The VAE as Easel loads the written file (fp32 on CPU) and its preview fingerprint: the key
    under which modules/generation/previews.py ships the fitted factors."""
    from modules.checkpoints.hashing import HashCache
    from modules.checkpoints.manager import ManagerOptions, ModelManager
    from modules.checkpoints.registry import ModelRegistry
    from modules.generation.previews import vae_fingerprint

    registry = ModelRegistry([], [], HashCache(tokenizer_cache / "hashes.json"), [out])
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions())
    loaded = manager.switch_checkpoint(registry.entry_for_path(out))
    return loaded.vae_module, vae_fingerprint(loaded.vae_module)


# 7. main ----------------------------------------------------------------------------------------


def config_problems(config: TrainConfig) -> list[str]:
    """What is wrong with a configuration, in words (empty: nothing). Checked before any work, so a
    typo does not surface as a crash an hour in, or as a stage that trains nothing and saves no state."""
    problems = []
    counts = ("images", "vae_steps", "vae_batch", "decoder_steps", "unet_steps", "unet_batch", "reading_steps", "blend_images")
    problems += [f"--{name.replace('_', '-')} must be at least 1 (got {getattr(config, name)})" for name in counts if getattr(config, name) < 1]
    if config.warmup < 0:
        problems.append(f"--warmup must be 0 or more (got {config.warmup})")
    if not (8 <= config.vae_crop <= IMAGE_SIZE and config.vae_crop % 8 == 0):
        problems.append(f"--vae-crop must be a multiple of 8 from 8 to {IMAGE_SIZE} (got {config.vae_crop})")
    rates = ("vae_lr", "decoder_lr", "unet_lr", "reading_lr", "min_snr_gamma")
    problems += [f"--{name.replace('_', '-')} must be above 0 (got {getattr(config, name)})" for name in rates if not getattr(config, name) > 0]
    shares = ("caption_dropout", "context_swap", "emphasis_jitter")
    problems += [f"--{name.replace('_', '-')} is a share: 0 to 1 (got {getattr(config, name)})" for name in shares if not 0 <= getattr(config, name) <= 1]
    if not 0 <= config.ema_decay < 1:
        problems.append(f"--ema-decay must be from 0 up to (not including) 1 (got {config.ema_decay})")
    if config.kl_weight < 0:
        problems.append(f"--kl-weight must be 0 or more (got {config.kl_weight})")
    if not 0 < config.jitter_low <= config.jitter_high:
        problems.append(f"--jitter-low must be above 0 and at most --jitter-high (got {config.jitter_low} and {config.jitter_high})")
    return problems


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="checkpoint to write")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="data, state files and logs (resumed from)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (1 is fastest on a busy 2-core machine)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--save-every", type=float, default=60.0, help="seconds between state files")
    parser.add_argument("--until", choices=("decoder", "export"), default="export", help="stop after this stage (the VAE is final after 'decoder')")
    parser.add_argument("--sequential", action="store_true", help="train the decoder before the UNet in this process, not beside it")
    for name, value in asdict(TrainConfig()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    config = TrainConfig(**{name: getattr(args, name) for name in asdict(TrainConfig())})
    problems = config_problems(config)
    if args.threads < 1:
        problems.append(f"--threads must be at least 1 (got {args.threads})")
    if problems:
        parser.error("; ".join(problems))
    return args, config


def wants_parallel(args: argparse.Namespace, device: torch.device) -> bool:
    """Whether to train the decoder in a second process: on a CPU with cores for both."""
    return not args.sequential and device.type == "cpu" and (os.cpu_count() or 1) >= 2 * args.threads


def start_decoder_process(argv: list[str] | None, work: Path) -> subprocess.Popen:
    """This script again with `--until decoder`, logging to <work>/decoder.log."""
    command = [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv), "--until", "decoder"]
    print(f"[decoder] training in a second process; progress in {work / 'decoder.log'}", flush=True)
    with open(work / "decoder.log", "a") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def timed(label: str, action: Callable[[], Any], timings: dict[str, float]) -> Any:
    began = time.perf_counter()
    result = action()
    timings[label] = round(time.perf_counter() - began, 1)
    return result


def main(argv: list[str] | None = None) -> None:
    args, config = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    print(f"training on {device} with {args.threads} thread(s); work dir {work}", flush=True)
    timings: dict[str, float] = {}
    tokenizer = load_clip_tokenizer(work / "tokenizer")

    # 1-3. data, VAE, latents
    scenes, pixels = timed("data", lambda: load_data(work, config), timings)
    vae = timed("vae", lambda: train_vae(work, config, pixels, device, args.save_every), timings)
    latents = timed("latents", lambda: encode_all(work, config, vae, pixels, device), timings)
    # 4-5. decoder and UNet: both depend only on the latents, so with a core to spare the decoder
    # trains in a second process beside the UNet
    helper = start_decoder_process(argv, work) if args.until == "export" and wants_parallel(args, device) else None
    if helper is None:
        vae = timed("decoder", lambda: refine_decoder(work, config, vae, pixels, latents, device, args.save_every), timings)
        if args.until == "decoder":
            return
    base = timed("unet", lambda: train_unet(work, config, scenes, latents, tokenizer, device, args.save_every), timings)
    blend_scenes, blend_pixels = load_data(work, config, blend=True)
    blend_mean, blend_std = encode_blends(work, config, vae, blend_pixels, device)
    reading_latents = (torch.cat([latents[0], blend_mean]), torch.cat([latents[1], blend_std]), latents[2])
    modules, ema = timed("reading", lambda: train_reading(work, config, base, scenes + blend_scenes, reading_latents, tokenizer, device, args.save_every), timings)
    if helper is not None:
        if helper.wait() != 0:
            raise SystemExit(f"the decoder process failed; see {work / 'decoder.log'}")
        vae = refine_decoder(work, config, vae, pixels, latents, device, args.save_every)  # its finished state
    # 6. export the EMA weights, then fit the preview factors on the VAE exactly as Easel loads it
    spec = export_spec(latents[2])
    weights = {"vae": vae.state_dict(), **{name: ema.weights(name, module) for name, module in modules.items()}}
    export(args.out, spec, weights)
    loaded_vae, fingerprint = loaded_vae_fingerprint(args.out, work / "tokenizer")
    factors, bias = fit_preview_factors(loaded_vae, pixels, latents[2])
    vae_loss = torch.load(work / "decoder-state.pt", weights_only=False)["loss"]
    unet_loss = torch.load(work / "unet-state.pt", weights_only=False)["loss"]
    reading_loss = torch.load(work / "reading-state.pt", weights_only=False)["loss"]
    summary = {
        "config": asdict(config),
        "device": str(device),
        "threads": args.threads,
        "seconds_this_run": timings,
        "final_loss": {"vae": round(vae_loss, 5), "unet": round(unet_loss, 5), "reading": round(reading_loss, 5)},
        "scaling_factor": latents[2],
        "parameters": {name: parameter_count(m) for name, m in (("vae", vae), *modules.items())},
        "preview": {"fingerprint": fingerprint, "factors": factors, "bias": bias},
        "file_bytes": args.out.stat().st_size,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2), flush=True)


if __name__ == "__main__":
    main()
