"""A1111's image grid: the images of a job laid out in rows, saved beside them and shown first."""

from __future__ import annotations

import math

from PIL import Image


def grid_rows(count: int) -> int:
    """A1111's default layout (`n_rows` -1): round(sqrt(count)) rows, never more than images."""
    return max(1, min(count, round(math.sqrt(count))))


def image_grid(images: list[Image.Image], rows: int | None = None) -> Image.Image:
    """The images pasted left to right, top to bottom, each cell the size of the first image;
    empty cells stay black, as in A1111."""
    if not images:
        raise ValueError("a grid needs at least one image")
    rows = rows or grid_rows(len(images))
    cols = math.ceil(len(images) / rows)
    width, height = images[0].size
    grid = Image.new("RGB", (cols * width, rows * height), "black")
    for index, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((index % cols) * width, (index // cols) * height))
    return grid
