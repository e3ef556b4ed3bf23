"""A test-side picture classifier from pixel statistics: which named colour is the background, which
is the shape. Simple on purpose, so a failing semantic test points at the generator, not at this.

- background: the median of the pixels on the picture's border (a shape rarely covers half of it)
- foreground: among the pixels clearly unlike the background, the most common nearest named colour
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from tools.demo_shapes import COLOURS

NAMES = list(COLOURS)
PALETTE = np.array([COLOURS[name] for name in NAMES], dtype=np.float32)
BORDER = 3  # pixels of the border sampled for the background
UNLIKE_BACKGROUND = 90.0  # RGB distance from the background beyond which a pixel is foreground
MIN_FOREGROUND = 0.02  # share of the picture a shape must cover to count as drawn


@dataclass(frozen=True)
class Reading:
    """What the classifier sees in a picture."""

    background: str
    foreground: str | None  # None: no shape (too few pixels unlike the background)
    foreground_share: float  # share of the picture in the foreground colour
    background_rgb: tuple[float, float, float]


def nearest(rgb: np.ndarray) -> np.ndarray:
    """Index into NAMES of the nearest named colour, for each RGB row."""
    distances = ((rgb[..., None, :] - PALETTE) ** 2).sum(-1)
    return distances.argmin(-1)


def border_pixels(pixels: np.ndarray, width: int = BORDER) -> np.ndarray:
    """The pixels of a `width`-pixel frame around the picture, as rows of RGB."""
    mask = np.zeros(pixels.shape[:2], dtype=bool)
    mask[:width], mask[-width:], mask[:, :width], mask[:, -width:] = True, True, True, True
    return pixels[mask]


def read(image: Image.Image) -> Reading:
    """The background and foreground colour names of a picture."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    background_rgb = np.median(border_pixels(pixels), axis=0)
    background = NAMES[int(nearest(background_rgb))]
    flat = pixels.reshape(-1, 3)
    unlike = np.sqrt(((flat - background_rgb) ** 2).sum(-1)) > UNLIKE_BACKGROUND
    names = nearest(flat[unlike])
    names = names[names != NAMES.index(background)]
    counts = np.bincount(names, minlength=len(NAMES))
    share = counts.max() / len(flat) if len(names) else 0.0
    foreground = NAMES[int(counts.argmax())] if share >= MIN_FOREGROUND else None
    return Reading(background, foreground, float(share), tuple(float(v) for v in background_rgb))


def share_of(image: Image.Image, colour: str, box: tuple[int, int, int, int] | None = None) -> float:
    """The share of the pixels (in `box`, left-top-right-bottom, or all) nearest to `colour`."""
    region = image.convert("RGB") if box is None else image.convert("RGB").crop(box)
    pixels = np.asarray(region, dtype=np.float32).reshape(-1, 3)
    return float((nearest(pixels) == NAMES.index(colour)).mean())
