"""TAESD live previews: madebyollin's Tiny AutoEncoder for Stable Diffusion, decoder only.

The decoder is a plain `nn.Sequential` laid out exactly like the published `taesd_decoder.pth`
(SD1/SD2) and `taesdxl_decoder.pth` (SDXL), so their state dicts load with `strict=True` and no key
renaming. It takes the latent as the UNet sees it (already multiplied by the VAE scaling factor; TAESD
was trained on that scale) and returns RGB in [0, 1] at 8x the latent size. About 1.2M parameters:
near the cost of the cheap linear preview on a GPU, with detail close to a full VAE decode.

Weights are the user's: files in models/VAE-approx/, never downloaded. Three layouts are accepted:
- the published decoder file: keys `1.weight`, `3.conv.0.weight`, ... (our layout);
- a whole TAESD (encoder + decoder) file: the same keys under `decoder.`;
- a diffusers `AutoencoderTiny` single file: `decoder.layers.N...`, where N is one less than ours
  because diffusers applies the input clamp in `forward` instead of as layer 0.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from pathlib import Path
from typing import Mapping

import torch
from PIL import Image
from torch import nn

from modules.checkpoints.tensor_files import open_tensor_file
from modules.errors import ModelLoadError

log = logging.getLogger(__name__)

# Stem of the decoder file by latent space; each may be .safetensors or .pth (first found wins).
TAESD_STEMS = {False: "taesd_decoder", True: "taesdxl_decoder"}
TAESD_SUFFIXES = (".safetensors", ".pth")
_DIFFUSERS_KEY = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")


class Clamp(nn.Module):
    """Soft clamp of the input latent to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block: three 3x3 convs beside a skip path, then ReLU."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def _conv(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


def build_taesd_decoder(latent_channels: int = 4, width: int = 64) -> nn.Sequential:
    """An untrained decoder with the published layout (indices are the state-dict keys)."""
    layers: list[nn.Module] = [Clamp(), _conv(latent_channels, width), nn.ReLU()]
    for _ in range(3):  # three x2 upsamplings: 8x in all
        layers += [Block(width, width), Block(width, width), Block(width, width)]
        layers += [nn.Upsample(scale_factor=2), _conv(width, width, bias=False)]
    layers += [Block(width, width), _conv(width, 3)]
    return nn.Sequential(*layers)


def to_taesd_keys(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The decoder's tensors from any accepted layout, under the published keys. Encoder tensors
    and others that are not the decoder's are left out; a file with no decoder keys comes back as is
    (so the strict load names what it holds)."""
    if any(_DIFFUSERS_KEY.match(key) for key in tensors):
        out = {}
        for key, tensor in tensors.items():
            match = _DIFFUSERS_KEY.match(key)
            if match:
                out[f"{int(match.group(1)) + 1}.{match.group(2)}"] = tensor
        return out
    if any(key.startswith("decoder.") for key in tensors):
        return {key.removeprefix("decoder."): t for key, t in tensors.items() if key.startswith("decoder.")}
    return dict(tensors)


def _describe(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_taesd_decoder(path: Path) -> nn.Sequential:
    """Reads a TAESD decoder file (any accepted layout) into a CPU float32 decoder in eval mode.
    Raises ModelLoadError (a UserError) naming the file when it cannot be read or is not a TAESD
    decoder."""
    path = Path(path)
    file = open_tensor_file(path)
    try:
        tensors = {key: file.read(key) for key in file.shapes()}
    finally:
        file.close()
    state = {key: t.float() for key, t in to_taesd_keys(tensors).items()}
    decoder = build_taesd_decoder()  # SD1/SD2/SDXL: 4 latent channels; a 16-channel file fails on shapes
    expected = set(decoder.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {_describe(missing)}")
        if unexpected:
            problems.append(f"unexpected {_describe(unexpected)}")
        raise ModelLoadError(
            f"{path.name} in {path.parent} is not a TAESD decoder ({'; '.join(problems)}). Put madebyollin's "
            "taesd_decoder (SD1/SD2) or taesdxl_decoder (SDXL), .pth or .safetensors, in that folder."
        )
    try:
        decoder.load_state_dict(state, strict=True)
    except RuntimeError as error:  # right keys, wrong shapes
        raise ModelLoadError(f"{path.name} in {path.parent} does not fit the TAESD decoder: {error}") from error
    return decoder.eval().requires_grad_(False)


def find_taesd_file(folder: Path, sdxl: bool) -> Path:
    """The decoder file for a latent space in `folder`; ModelLoadError saying what to put where if none."""
    stem = TAESD_STEMS[sdxl]
    for suffix in TAESD_SUFFIXES:
        candidate = Path(folder) / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    kind = "SDXL" if sdxl else "SD1/SD2"
    raise ModelLoadError(
        f"TAESD previews for {kind} models need {stem}.pth or {stem}.safetensors in {folder} "
        "(madebyollin's Tiny AutoEncoder for Stable Diffusion). Put the file there or choose another preview method."
    )


class TaesdPreview:
    """latent (B, 4, h, w), UNet scale -> PIL images at (8h, 8w) through the TAESD decoder."""

    name = "TAESD"

    def __init__(self, decoder: nn.Module):
        self.decoder = decoder  # CPU float32, shared; copies are placed per device/dtype
        self._placed: dict[tuple[torch.device, torch.dtype], nn.Module] = {}
        self._lock = threading.Lock()

    def _on(self, device: torch.device, dtype: torch.dtype) -> nn.Module:
        if device.type == "cpu":
            dtype = torch.float32  # half-precision convs on a CPU are slow or missing
        with self._lock:
            key = (device, dtype)
            if key not in self._placed:
                self._placed[key] = self.decoder if key == (torch.device("cpu"), torch.float32) else copy.deepcopy(self.decoder).to(device, dtype)
            return self._placed[key]

    @torch.no_grad()
    def rgb(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, 3, 8h, 8w) in [0, 1] (unclamped), float32."""
        decoder = self._on(latent.device, latent.dtype)
        param = next(decoder.parameters())
        return decoder(latent.to(param.dtype)).float()

    def pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, 8h, 8w, 3) uint8 on the latent's device (previews.AsyncPreviews copies it without a sync)."""
        return (self.rgb(latent).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)

    def __call__(self, latent: torch.Tensor) -> list[Image.Image]:
        return [Image.fromarray(a) for a in self.pixels(latent).cpu().numpy()]


class TaesdCache:
    """One TaesdPreview per decoder file, read again only when the file changes (path + mtime)."""

    def __init__(self) -> None:
        self._previews: dict[Path, tuple[tuple[int, int], TaesdPreview]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> TaesdPreview:
        path = Path(path).resolve()
        try:
            stat = path.stat()
        except OSError as error:
            raise ModelLoadError(f"Cannot read {path.name} in {path.parent}: {error.strerror}.") from error
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._previews.get(path)
            if cached is None or cached[0] != stamp:
                log.info("Loading TAESD decoder %s", path)
                cached = (stamp, TaesdPreview(load_taesd_decoder(path)))
                self._previews[path] = cached
            return cached[1]

    def for_latents(self, folder: Path, sdxl: bool) -> TaesdPreview:
        """The preview for SD1/SD2 (`sdxl` False) or SDXL latents from the decoder file in `folder`."""
        return self.get(find_taesd_file(folder, sdxl))
