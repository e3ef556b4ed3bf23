"""SD upscale, A1111's img2img script of that name, on Easel's extension API.

The picture is enlarged by the chosen upscaler, cut into tiles of the request's width x height that
overlap by `overlap` pixels, each tile is redrawn by img2img (batch_size tiles at a time, the seed
going up by one per batch), and the tiles are put back with the overlaps faded into each other.
`n_iter` makes that many whole pictures, seed + n each. API: `script_name: "sd upscale"`,
`script_args: [info (ignored), overlap, upscaler (name or index), scale_factor]`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from modules.extensions.api import Note, Script, Slider, Upscaler, combine_results


@dataclass
class Tile:
    x: int
    y: int
    image: Image.Image


def tile_positions(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of `tile` pixels overlapping by `overlap` start along a side of `length` (A1111's
    split_grid: evenly spread, the last flush with the end)."""
    count = max(1, math.ceil((length - overlap) / (tile - overlap)))
    step = (length - tile) / (count - 1) if count > 1 else 0
    return [min(int(index * step), length - tile) for index in range(count)]


def split(image: Image.Image, width: int, height: int, overlap: int) -> list[list[Tile]]:
    rows = tile_positions(image.height, height, overlap)
    columns = tile_positions(image.width, width, overlap)
    return [[Tile(x, y, image.crop((x, y, x + width, y + height))) for x in columns] for y in rows]


def _fade(length: int) -> Image.Image:
    """A mask rising from 0 to 255 over `length` pixels (1 x length)."""
    ramp = (np.arange(length, dtype=np.float32) * 255 / max(length, 1)).astype(np.uint8)
    return Image.fromarray(ramp[None, :], "L")


def combine(grid: list[list[Tile]], size: tuple[int, int], overlap: int) -> Image.Image:
    """The tiles put back: each tile after the first in a row (each row after the first) fades in
    over the `overlap` pixels it shares with the one before."""
    width, height = size
    out = Image.new("RGB", size)
    for row in grid:
        tile_h = row[0].image.height
        strip = Image.new("RGB", (width, tile_h))
        for index, tile in enumerate(row):
            if index == 0 or overlap == 0:
                strip.paste(tile.image, (tile.x, 0))
                continue
            strip.paste(tile.image.crop((0, 0, overlap, tile_h)), (tile.x, 0), mask=_fade(overlap).resize((overlap, tile_h)))
            strip.paste(tile.image.crop((overlap, 0, tile.image.width, tile_h)), (tile.x + overlap, 0))
        y = row[0].y
        if y == 0 or overlap == 0:
            out.paste(strip, (0, y))
            continue
        out.paste(strip.crop((0, 0, width, overlap)), (0, y), mask=_fade(overlap).transpose(Image.Transpose.ROTATE_270).transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((width, overlap)))
        out.paste(strip.crop((0, overlap, width, tile_h)), (0, y + overlap))
    return out


def run_sd_upscale(run):
    request = run.request
    overlap = int(run.values["overlap"])
    upscaler = run.canonical("upscaler", run.values["upscaler"])
    scale = float(run.values["scale_factor"])
    if overlap >= min(request.width, request.height):
        raise ValueError(f"the tile overlap ({overlap} px) must be smaller than the tile, which is the width x height set ({request.width}x{request.height})")
    if request.seed == -1:
        request = replace(request, seed=random.randrange(2**32))
    source = request.init_images[0].convert("RGB")
    picture = run.upscale(source, upscaler, scale) if upscaler != "None" else source
    if picture.width < request.width or picture.height < request.height:
        raise ValueError(
            f"the upscaled picture ({picture.width}x{picture.height}) is smaller than one tile ({request.width}x{request.height}); "
            "raise the scale factor or lower the width and height"
        )
    grid = split(picture, request.width, request.height, overlap)
    tiles = [tile for row in grid for tile in row]
    per_batch = request.batch_size
    batches = math.ceil(len(tiles) / per_batch)
    extra = {"SD upscale overlap": overlap, "SD upscale upscaler": upscaler}
    results, pictures, infotexts, seeds = [], [], [], []
    for n in range(request.n_iter):
        seed = request.seed + n
        redrawn: list[Image.Image] = []
        for index in range(batches):
            if run.interrupted():
                break
            chunk = tiles[index * per_batch:(index + 1) * per_batch]
            cell = replace(request, init_images=[tile.image for tile in chunk], mask=None, n_iter=1, batch_size=len(chunk), seed=seed + index)
            result = run.generate(cell, extra)
            results.append(result)
            redrawn += result.images
            run.show(redrawn[-1:], f"Batch {index + 1 + n * batches} of {batches * request.n_iter}", (index + 1 + n * batches) / (batches * request.n_iter))
        if len(redrawn) < len(tiles):  # interrupted: the picture is not finished
            break
        for tile, image in zip(tiles, redrawn):
            tile.image = image
        pictures.append(combine(grid, picture.size, overlap))
        infotexts.append(results[-batches].infotexts[0] if results[-batches].infotexts else "")
        seeds.append(seed)
    combined = combine_results(results)
    combined.images, combined.infotexts, combined.image_seeds = pictures, infotexts, seeds
    combined.seeds, combined.subseeds = seeds, seeds
    combined.interrupted = len(pictures) < request.n_iter
    return combined


def setup(api):
    api.add_script(Script("SD upscale", [
        Note("info", "Enlarges the picture by the scale factor, then redraws it in tiles of the width and height set above."),
        Slider("overlap", "Tile overlap", 0, 256, 64, step=16, tooltip="Pixels neighbouring tiles share; they are faded into each other so no seam shows."),
        Upscaler("upscaler", "Upscaler", tooltip="What enlarges the picture before the tiles are redrawn."),
        Slider("scale_factor", "Scale Factor", 1.0, 4.0, 2.0, step=0.05, tooltip="How many times larger the result is."),
    ], tabs=("img2img",), run=run_sd_upscale))
