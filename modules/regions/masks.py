"""Colour-coded region masks as the Regional Prompter reads them (scripts/regions.py l.446-592
`deterministic_colours`, `detect_image_colours`, `detect_mask`; l.765-804 `inpaintmaskdealer`).

- The palette: colour n has saturation and value 0.5 and hue 0 for n = 0, else
  (2·(n − 2^(c−1)) + 1) / 2^c with c the bit length of n (0, 1/2, 1/4, 3/4, 1/8, 3/8, ...), each
  channel times 256 and cut to an integer. The extension lists 718 of them.
- A picture's colours whose saturation and value (of RGB/255) are both within 0.49-0.51 are
  snapped to saturation and value 0.5 at their own hue and looked up in the palette; a colour found
  at index n counts when n is at most (the number of colours found) + 20. Other colours (white, the
  painting's background) are no region.
- Region k is the k-th of those colours by palette index. Without a base prompt, region 0 also gets
  every pixel no other region has; with one, that remainder is the base's alone (weight 1).
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
from PIL import Image

from modules.regions.errors import RegionalPromptError

PALETTE_SIZE = 2 * (360 - 1)  # 2 * MAXCOLREG
HSV_RANGE = (0.49, 0.51)
EXTRA_KEYS = 20


def palette_hue(index: int) -> float:
    if index <= 0:
        return 0.0
    cycle = index.bit_length()
    return (2 * (index - 2 ** (cycle - 1)) + 1) / 2**cycle


def palette_colour(index: int) -> tuple[int, int, int]:
    """The colour the extension paints region `index` with."""
    r, g, b = colorsys.hsv_to_rgb(palette_hue(index), 0.5, 0.5)
    return int(r * 256), int(g * 256), int(b * 256)


def _first_indices() -> dict[tuple[int, int, int], int]:
    found: dict[tuple[int, int, int], int] = {}
    for index in range(PALETTE_SIZE):
        found.setdefault(palette_colour(index), index)
    return found


def as_rgb_array(mask: Any) -> np.ndarray:
    """A mask picture (PIL image or H×W×C array) as an H×W×3 uint8 array (alpha dropped, as the extension's `convert('RGB')`)."""
    if isinstance(mask, Image.Image):
        return np.array(mask.convert("RGB"))
    array = np.asarray(mask)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] < 3:
        raise RegionalPromptError(f"Regional Prompter mask: expected a colour picture, got an array of shape {array.shape}.")
    return np.ascontiguousarray(array[..., :3]).astype(np.uint8)


def region_indices(mask: Any) -> tuple[np.ndarray, list[int]]:
    """(palette index of each pixel, −1 where none; the region colours' palette indices in region order)."""
    rgb = as_rgb_array(mask)
    height, width, _ = rgb.shape
    colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    lookup = _first_indices()
    low, high = HSV_RANGE
    index_of_colour = np.full(len(colours), -1, dtype=np.int64)
    for position, colour in enumerate(colours):
        hue, saturation, value = colorsys.rgb_to_hsv(*(colour / 255))
        if low <= saturation <= high and low <= value <= high:
            r, g, b = colorsys.hsv_to_rgb(hue, 0.5, 0.5)
            index_of_colour[position] = lookup.get((int(r * 256), int(g * 256), int(b * 256)), -1)
    found = sorted({int(i) for i in index_of_colour if i >= 0})
    kept = [i for i in found if i <= len(found) + EXTRA_KEYS]
    index_of_colour[~np.isin(index_of_colour, kept)] = -1
    return index_of_colour[inverse.reshape(-1)].reshape(height, width), kept


def mask_assignment(mask: Any, use_base: bool) -> tuple[np.ndarray, int]:
    """(region number of every pixel of the mask picture, −1: the base's alone; the number of regions)."""
    indices, kept = region_indices(mask)
    if not kept:
        raise RegionalPromptError("Regional Prompter mask: no region colour found. Paint each region with the colour of its number "
                                  "(saturation and value 50%, e.g. the first region = RGB 128, 64, 64), on white.")
    assignment = np.full(indices.shape, -1 if use_base else 0, dtype=np.int64)
    for region, index in enumerate(kept):
        if use_base or region > 0:
            assignment[indices == index] = region
    return assignment, len(kept)
