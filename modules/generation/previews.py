"""Live previews: turning the sampler's predicted clean latent (x0) into a small RGB image.

Methods, one small class each:
- `LinearPreview` ("Approx cheap"): one 4x3 matrix product per pixel at 1/8 size; almost free.
  Published factors exist for the SD and SDXL VAEs; for any other VAE (custom, tiny) the factors are
  fitted once by least squares from a few synthetic images and cached by a fingerprint of the VAE's
  weights. The demo model's VAE is not linear enough for this and small enough to decode in full
  (`FULL_DECODE_VAES`).
- `FullVaePreview` ("Full"): a real VAE decode; exact but costly.
- `TaesdPreview` ("TAESD", in taesd.py): a tiny distilled decoder the user puts in models/VAE-approx/.
The latent is taken as the UNet sees it (already multiplied by the VAE scaling factor).
`PreviewChooser` turns the setting's method name into one of these for the loaded model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from PIL import Image

from modules.config import PREVIEW_METHODS
from modules.errors import UserError
from modules.files import write_atomically
from modules.generation.taesd import TaesdCache

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

log = logging.getLogger(__name__)

# A1111 modules/sd_vae_approx.py (rows: latent channels 0-3; columns R, G, B).
SD_FACTORS = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
SDXL_FACTORS = [[0.3448, 0.4168, 0.4395], [-0.1953, -0.0290, 0.0250], [0.1074, 0.0886, -0.0163], [-0.3730, -0.2499, -0.2088]]
SD_VAE_CHANNELS = [128, 256, 512, 512]
# VAEs of the models Easel ships whose "Approx cheap" preview is a full decode, keyed by
# `vae_fingerprint` (the same whether loaded in fp32 or fp16). The demo model's latents do not code
# colour linearly: the best 4x3 fit tools/train_demo_model.py finds is off by 0.50 on average (colours
# in [-1, 1]; a 2-layer MLP per latent pixel still 0.29), so its previews would show the wrong colours;
# its decoder is so small (0.6M parameters) that decoding every step costs less than a UNet step.
FULL_DECODE_VAES: dict[str, str] = {
    "61122b7b0ed6eacc": "easel-demo-shapes.safetensors",
}

# Names as A1111 shows them (its `show_progress_type` setting); config.py repeats them torch-free.
# The setting's choices (modules/config.py lists them so that reading settings never imports torch).
PREVIEW_APPROX, PREVIEW_FULL, PREVIEW_TAESD, PREVIEW_NONE = PREVIEW_METHODS


class PreviewMethod(Protocol):
    name: str

    def __call__(self, latent: torch.Tensor) -> list[Image.Image]: ...


def to_images(rgb: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> PIL images."""
    array = ((rgb.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]


class LinearPreview:
    """latent (B, 4, h, w) -> RGB by a per-pixel linear map; `factors` (4, 3), `bias` (3,)."""

    name = "Approx cheap"

    def __init__(self, factors: torch.Tensor, bias: torch.Tensor | None = None):
        self.factors = factors.float()
        self.bias = bias.float() if bias is not None else torch.zeros(3)

    def rgb(self, latent: torch.Tensor) -> torch.Tensor:
        factors = self.factors.to(latent.device, latent.dtype)
        bias = self.bias.to(latent.device, latent.dtype)
        return torch.einsum("bchw,cr->brhw", latent, factors) + bias[None, :, None, None]

    def pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 on the latent's device: what `__call__` shows, before the copy to the host."""
        return ((self.rgb(latent).float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)

    def __call__(self, latent: torch.Tensor) -> list[Image.Image]:
        return to_images(self.rgb(latent))


class AsyncPreviews:
    """Live previews without a device->host sync per step.

    On a CUDA device, a method with `pixels()` (Approx cheap, TAESD) computes the small uint8 picture
    on the GPU and copies it into pinned memory without waiting; the picture is handed out at the
    first later step whose copy has finished (`CUDA event.query()`, which does not block), and the
    last step waits for it. So the GPU never idles for a preview, at the price of previews arriving a
    step or so late. Anywhere else (CPU, methods without `pixels()`) `submit` returns the picture at once.
    """

    def __init__(self, method: PreviewMethod):
        self.method = method
        self._pending: tuple[torch.Tensor, torch.cuda.Event] | None = None

    def submit(self, latent: torch.Tensor) -> list[Image.Image] | None:
        pixels = getattr(self.method, "pixels", None)
        if latent.device.type != "cuda" or pixels is None:
            return self.method(latent)
        on_device = pixels(latent)
        host = torch.empty(on_device.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(on_device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending = (host, event)  # a newer preview replaces one not shown yet
        return None

    def poll(self, wait: bool = False) -> list[Image.Image] | None:
        """The submitted picture if its copy is done (or, with `wait`, once it is); else None."""
        if self._pending is None:
            return None
        host, event = self._pending
        if not wait and not event.query():
            return None
        event.synchronize()
        self._pending = None
        return [Image.fromarray(a) for a in host.numpy()]


class FullVaePreview:
    """A full VAE decode of the latent (exact, as slow as the final decode)."""

    name = "Full"

    def __init__(self, vae: AutoencoderKL):
        self.vae = vae

    @torch.no_grad()
    def __call__(self, latent: torch.Tensor) -> list[Image.Image]:
        scale = self.vae.config["scaling_factor"]  # diffusers' FrozenDict, declared as a plain dict
        param = next(self.vae.parameters())
        return to_images(self.vae.decode(latent.to(param.device, param.dtype) / scale).sample)  # where the VAE is (in RAM under offload)


def vae_fingerprint(vae: AutoencoderKL) -> str:
    """A short hash of the VAE decoder's weights: equal weights, equal fitted factors."""
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.decoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def synthetic_images(count: int = 12, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Flat colours, gradients and blobs in [-1, 1]: enough colour variety to fit a linear map."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    images = []
    for i in range(count):
        a, b = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        t = xx if i % 2 else yy
        image = a[:, None, None] * (1 - t) + b[:, None, None] * t
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
        blob = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        image[:, blob] = rng.uniform(-1, 1, 3)[:, None]
        images.append(image)
    return torch.tensor(np.stack(images), dtype=torch.float32)


@torch.no_grad()
def fit_linear_factors(vae: AutoencoderKL, count: int = 12, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares (4, 3) factors and bias mapping the scaled latent to the colours the VAE
    decodes it to (for a well-trained VAE that is the image itself; for any VAE it is what the
    final picture will show, which is what a preview should approximate)."""
    param = next(vae.parameters())
    images = synthetic_images(count, size).to(param.device, param.dtype)
    raw = vae.encode(images).latent_dist.mean
    decoded = vae.decode(raw).sample.float().cpu()
    latents = raw.float().cpu() * vae.config["scaling_factor"]
    h, w = latents.shape[-2:]
    targets = torch.nn.functional.adaptive_avg_pool2d(decoded, (h, w))
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    y = targets.permute(0, 2, 3, 1).reshape(-1, 3)
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    solution = torch.linalg.lstsq(design.double(), y.double()).solution.float()
    return solution[:-1], solution[-1]


class LinearFactorCache:
    """Fitted factors by VAE fingerprint, in memory and in a JSON file in the data dir."""

    def __init__(self, path: Path | None):
        self.path = path
        self._memory: dict[str, tuple[list, list]] = {}
        if path is not None and path.is_file():
            try:
                self._memory = {k: (v[0], v[1]) for k, v in json.loads(path.read_text()).items()}
            except (OSError, ValueError, KeyError, IndexError) as error:
                log.warning("Ignoring unreadable preview factor cache %s: %s", path, error)

    def get(self, vae: AutoencoderKL) -> PreviewMethod:
        config = vae.config  # diffusers' FrozenDict, declared as a plain dict
        if list(config["block_out_channels"]) == SD_VAE_CHANNELS and config["latent_channels"] == 4:
            published = SDXL_FACTORS if abs(config["scaling_factor"] - 0.13025) < 1e-6 else SD_FACTORS
            return LinearPreview(torch.tensor(published))
        key = vae_fingerprint(vae)
        if key in FULL_DECODE_VAES:
            return FullVaePreview(vae)
        if key not in self._memory:
            fitted, fitted_bias = fit_linear_factors(vae)
            self._memory[key] = (fitted.tolist(), fitted_bias.tolist())
            self._save()
        factors, bias = self._memory[key]
        return LinearPreview(torch.tensor(factors), torch.tensor(bias))

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            write_atomically(self.path, json.dumps(self._memory))
        except OSError as error:
            log.warning("Could not save preview factors to %s: %s", self.path, error)


class PreviewChooser:
    """The preview method for a setting's name and the loaded model's VAE.

    Owns what methods keep between jobs: the fitted linear factors and the TAESD decoders read from
    `approx_dir` (models/VAE-approx). A preview must never fail a generation, so TAESD without usable
    weights falls back to "Approx cheap" with one warning per problem (not one per job).
    """

    def __init__(self, approx_dir: Path | None, factor_cache_path: Path | None = None):
        self.approx_dir = Path(approx_dir) if approx_dir is not None else None
        self.factors = LinearFactorCache(factor_cache_path)
        self.taesd = TaesdCache()
        self._warned: set[str] = set()

    def choose(self, method: str, vae: AutoencoderKL, sdxl: bool) -> PreviewMethod | None:
        """`method` is one of PREVIEW_METHODS; `sdxl` says whether the model uses SDXL latents
        (the family's `latent_space`). None means no previews."""
        if method == PREVIEW_NONE:
            return None
        if method == PREVIEW_FULL:
            return FullVaePreview(vae)
        if method == PREVIEW_TAESD:
            try:
                if self.approx_dir is None:
                    raise UserError("No VAE-approx folder is configured, so TAESD weights cannot be found.")
                return self.taesd.for_latents(self.approx_dir, sdxl)
            except UserError as error:
                self._warn_once(f"{error} Using {PREVIEW_APPROX} previews instead.")
        elif method != PREVIEW_APPROX:
            raise UserError(f"Unknown live preview method {method!r}; choose one of {', '.join(PREVIEW_METHODS)}.")
        return self.factors.get(vae)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)
