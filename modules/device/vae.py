"""Safe VAE decodes: tiled above the memory plan's size, and redone in float32 when a half-precision
decode gives NaN (the VAE then stays float32, as A1111's "revert VAE to 32-bit floats")."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import torch

from modules.device.optimizations import Optimizations

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

log = logging.getLogger(__name__)


@contextmanager
def vae_tiling(vae: AutoencoderKL, on: bool) -> Iterator[None]:
    """diffusers' tiled decode/encode on this VAE for a block, its previous state restored after."""
    if not on or not hasattr(vae, "enable_tiling"):
        yield
        return
    before = getattr(vae, "use_tiling", False)
    vae.enable_tiling()
    try:
        yield
    finally:
        if not before:
            vae.disable_tiling()


def tiles(options: Optimizations | None, width: int, height: int) -> bool:
    limit = options.vae_tile_above_pixels if options is not None else None
    return limit is not None and width * height > limit


def decode_checked(vae: AutoencoderKL, latent: torch.Tensor, options: Optimizations | None, notes: list[str] | None = None) -> torch.Tensor:
    """Scaled latents -> pixels in [-1, 1] (float32). A half-precision decode that gives NaN or inf
    is redone in float32; the VAE stays float32 afterwards and `notes` gets a sentence for the user."""
    scale = vae.config["scaling_factor"]  # diffusers' FrozenDict, declared as a plain dict
    param = next(vae.parameters())
    tiled = tiles(options, latent.shape[-1] * 8, latent.shape[-2] * 8)
    with torch.no_grad(), vae_tiling(vae, tiled):
        out = vae.decode(latent.to(param.device, param.dtype) / scale).sample
        retry = options is None or options.vae_nan_retry
        if retry and param.dtype in (torch.float16, torch.bfloat16) and not bool(torch.isfinite(out).all()):
            # diffusers declares ModelMixin.to as @wraps(nn.Module.to), which mypy reads as unbound (wanting self).
            vae.to(torch.float32)  # type: ignore[arg-type]
            if notes is not None:
                notes.append(f"The VAE decode in {str(param.dtype).removeprefix('torch.')} gave NaN; decoded again in float32 "
                             "(the VAE stays in float32 from now on).")
            log.warning("VAE decode gave NaN in %s; switched the VAE to float32", param.dtype)
            out = vae.decode(latent.to(param.device, torch.float32) / scale).sample
    return out.float()
