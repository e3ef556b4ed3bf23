"""Upscaling a picture by name: A1111's loop (`modules/upscaler.py`) over the built-in resizers and
the installed models, the models kept loaded (two, least recently used dropped) for the next job.

The loop: the target is the size times the scale, rounded down to a multiple of 8; the model is
applied until the picture covers the target (at most 3 times: a 2x model runs twice for 4x), then
Lanczos resizes to the exact target. Models run in tiles (settings `ESRGAN_tile`, `ESRGAN_tile_overlap`)
with a callback after each tile for progress and interruption.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from modules.upscalers.catalog import LANCZOS, NEAREST, NONE, UpscalerCatalog, UpscalerEntry
from modules.upscalers.model_files import load_model
from modules.upscalers.progress import OnProgress, TileProgress
from modules.upscalers.tiling import run_tiled

MAX_PASSES = 3  # A1111's limit on model applications per upscale
MODELS_KEPT = 2


@dataclass(frozen=True)
class TileSettings:
    tile: int = 192  # input pixels per tile side; 0: the whole picture at once
    overlap: int = 8


def tile_settings(settings: Any) -> TileSettings:
    """The tile size and overlap from Easel's settings (A1111's option names)."""
    return TileSettings(int(settings.ESRGAN_tile), int(settings.ESRGAN_tile_overlap))


def to_tensor(image: Image.Image, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].to(device=device, dtype=dtype)


def to_image(tensor: torch.Tensor) -> Image.Image:
    array = (tensor[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array)


def target_size(image: Image.Image, scale: float) -> tuple[int, int]:
    return int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8)


def planned_passes(size: tuple[int, int], dest: tuple[int, int], scale: int) -> int:
    """How many times A1111's loop applies a model of `scale` to cover `dest` (at most 3; a 1x
    model once)."""
    width, height = size
    passes = 0
    while passes < MAX_PASSES and not (width >= dest[0] and height >= dest[1]):
        passes += 1
        if scale <= 1:
            break
        width, height = width * scale, height * scale
    return passes


class Upscalers:
    """The installed upscalers and the models loaded for them."""

    def __init__(self, catalog: UpscalerCatalog, device: torch.device, tiles: Callable[[], TileSettings], half: bool = False):
        self.catalog = catalog
        self.device = device
        self.tiles = tiles  # read at each upscale, so a settings change applies to the next
        self.dtype = torch.float16 if half and device.type == "cuda" else torch.float32
        self._models: OrderedDict[tuple[Path, float], Any] = OrderedDict()
        self._lock = threading.Lock()  # one model load/eviction at a time; runs are per job

    def names(self) -> list[str]:
        return self.catalog.names()

    def loaded(self) -> list[Path]:
        """The model files held in memory, least recently used first."""
        with self._lock:
            return [path for path, _ in self._models]

    def model(self, entry: UpscalerEntry) -> Any:
        """The loaded model of a file entry (read once, then kept while among the last used)."""
        assert entry.path is not None
        key = (entry.path, entry.path.stat().st_mtime if entry.path.exists() else 0.0)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        descriptor = load_model(entry.path)
        dtype = self.dtype if (self.dtype != torch.float16 or descriptor.supports_half) else torch.float32
        descriptor = descriptor.to(self.device).to(dtype)
        with self._lock:
            self._models[key] = descriptor
            self._models.move_to_end(key)
            while len(self._models) > MODELS_KEPT:
                self._models.popitem(last=False)
        return descriptor

    def upscale(self, image: Image.Image, name: str, scale: float, on_progress: OnProgress | None = None) -> Image.Image:
        """`image` upscaled by `scale` with the upscaler `name`, at the size rounded down to 8."""
        entry = self.catalog.find(name)
        dest = target_size(image, scale)
        image = image.convert("RGB")
        if entry.name == NONE:
            pass
        elif not entry.is_model:
            if not (image.width >= dest[0] and image.height >= dest[1] and scale != 1):
                resample = Image.Resampling.LANCZOS if entry.name == LANCZOS else Image.Resampling.NEAREST
                assert entry.name in (LANCZOS, NEAREST)
                image = image.resize((int(image.width * scale), int(image.height * scale)), resample=resample)
        else:
            model = self.model(entry)
            planned = planned_passes(image.size, dest, model.scale)
            for step in range(1, planned + 1):
                image = self._apply(model, entry.name, image, step, planned, on_progress)
        if image.size != dest:
            image = image.resize(dest, resample=Image.Resampling.LANCZOS)
        return image

    def _apply(self, model: Any, name: str, image: Image.Image, step: int, passes: int, on_progress: OnProgress | None) -> Image.Image:
        settings = self.tiles()
        tile = 0 if model.tiling.name == "INTERNAL" else settings.tile
        started = time.perf_counter()

        def tile_done(done: int, total: int) -> None:
            if on_progress is not None:
                elapsed = time.perf_counter() - started
                on_progress(TileProgress(name, step, passes, done, total, elapsed / done * (total - done)))

        with torch.inference_mode():
            pixels = to_tensor(image, self.device, model.dtype)
            result = run_tiled(model, pixels, model.scale, tile, settings.overlap, tile_done)
        return to_image(result)
