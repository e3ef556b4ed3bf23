"""Running an image model over a picture in overlapping tiles, so memory stays bounded whatever the
picture's size. Each tile's result is weighted by a linear ramp across the overlaps it shares with
its neighbours and the weighted results are averaged, so no seam shows where tiles meet."""

from __future__ import annotations

from typing import Callable

import torch

Model = Callable[[torch.Tensor], torch.Tensor]  # (1, C, h, w) -> (1, C, h*scale, w*scale)
OnTile = Callable[[int, int], None]  # (tile done, tiles) after each; may raise to stop


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side begin: `tile - overlap` apart, the last flush with the end."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(size: int, fade_in: int, fade_out: int) -> torch.Tensor:
    weight = torch.ones(size)
    if fade_in:
        weight[:fade_in] = (torch.arange(fade_in) + 0.5) / fade_in
    if fade_out:
        weight[size - fade_out:] = torch.minimum(weight[size - fade_out:], (torch.arange(fade_out, 0, -1) - 0.5) / fade_out)
    return weight


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    if tile <= 0:
        return 1
    return len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))


def run_tiled(model: Model, image: torch.Tensor, scale: int, tile: int, overlap: int, on_tile: OnTile | None = None) -> torch.Tensor:
    """`model` applied to `image` (1, C, H, W) in tiles of `tile` pixels (0: whole) overlapping by
    `overlap`; the result is (1, C, H*scale, W*scale), float32 on the image's device."""
    _, channels, height, width = image.shape
    if tile <= 0 or (height <= tile and width <= tile):
        result = model(image).float()
        if on_tile:
            on_tile(1, 1)
        return result
    overlap = max(0, min(overlap, tile // 2))
    rows, columns = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    total = len(rows) * len(columns)
    out = torch.zeros(1, channels, height * scale, width * scale, dtype=torch.float32, device=image.device)
    weights = torch.zeros(1, 1, height * scale, width * scale, dtype=torch.float32, device=image.device)
    done = 0
    for y in rows:
        tile_h = min(tile, height - y)
        for x in columns:
            tile_w = min(tile, width - x)
            result = model(image[:, :, y:y + tile_h, x:x + tile_w]).float()
            fade = overlap * scale
            wy = _ramp(tile_h * scale, fade if y > 0 else 0, fade if y + tile_h < height else 0)
            wx = _ramp(tile_w * scale, fade if x > 0 else 0, fade if x + tile_w < width else 0)
            weight = (wy[:, None] * wx[None, :]).to(out.device)[None, None]
            oy, ox = y * scale, x * scale
            out[:, :, oy:oy + tile_h * scale, ox:ox + tile_w * scale] += result * weight
            weights[:, :, oy:oy + tile_h * scale, ox:ox + tile_w * scale] += weight
            done += 1
            if on_tile:
                on_tile(done, total)
    return out.div_(weights)
