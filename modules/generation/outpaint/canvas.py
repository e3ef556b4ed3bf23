"""Pure geometry and pixel helpers for outpainting (PIL/numpy, no model).

Sizes are (width, height); boxes are (x1, y1, x2, y2) with the right and bottom edges exclusive.
The steps they serve: plan how far each side grows (`plan_expansion`), grow the canvas
(`place_on_canvas`, `grow_side`), draw the masks A1111's methods use (`keep_mask`), pick the window
or tiles a pass works on (`edge_window`, `tile_grid`, `combine_tiles`), pad a pass to whole latent
cells (`pad_to_multiple`), and paint the new area before a pass (`distance_outside`,
`stretch_edges`, `graded_blur`, `smoothstep`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Expansion:
    """Pixels added on each side."""

    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0

    def size(self, source: tuple[int, int]) -> tuple[int, int]:
        """The enlarged picture's size."""
        return source[0] + self.left + self.right, source[1] + self.up + self.down

    def box(self, source: tuple[int, int]) -> Box:
        """Where the source sits in the enlarged picture."""
        return self.left, self.up, self.left + source[0], self.up + source[1]

    def sides(self) -> list[tuple[str, int]]:
        """(direction, pixels) of the sides that grow, in A1111's order: left, right, up, down."""
        return [(name, getattr(self, name)) for name in ("left", "right", "up", "down") if getattr(self, name) > 0]


def plan_expansion(size: tuple[int, int], directions: tuple[str, ...], pixels: int, multiple: int) -> Expansion:
    """How many pixels each chosen side grows: A1111's rule, with `multiple` 64 for its scripts.

    The enlarged width (height) is rounded up to a multiple of `multiple` when it grows, and the
    extra is shared between the two sides in proportion, the first one (left, up) rounding down.
    A dimension that does not grow keeps its size, whatever it is."""
    grows = {d: (pixels if d in directions else 0) for d in ("left", "right", "up", "down")}

    def share(first: int, second: int, length: int) -> tuple[int, int]:
        if first + second == 0:
            return 0, 0
        target = math.ceil((length + first + second) / multiple) * multiple
        first = first * (target - length) // (first + second) if first else 0
        second = target - length - first if second else 0
        return first, second

    left, right = share(grows["left"], grows["right"], size[0])
    up, down = share(grows["up"], grows["down"], size[1])
    return Expansion(left, right, up, down)


def place_on_canvas(image: Image.Image, expansion: Expansion, color: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """The enlarged canvas: `image` at its place, the new area `color` (A1111: black)."""
    canvas = Image.new("RGB", expansion.size(image.size), color)
    canvas.paste(image, expansion.box(image.size)[:2])
    return canvas


def grow_side(image: Image.Image, side: str, pixels: int) -> tuple[Image.Image, Box]:
    """`image` grown by `pixels` on one side (new area black) and the box the old picture holds in it."""
    expansion = Expansion(**{side: pixels})
    return place_on_canvas(image, expansion), expansion.box(image.size)


def keep_mask(size: tuple[int, int], keep: Box, inset: dict[str, int]) -> Image.Image:
    """An "L" mask, white (repaint) everywhere except `keep` shrunk by `inset[side]` pixels on the
    sides named: the repainted area reaches that far into the picture being extended."""
    x1, y1, x2, y2 = keep
    x1, y1 = x1 + inset.get("left", 0), y1 + inset.get("up", 0)
    x2, y2 = x2 - inset.get("right", 0), y2 - inset.get("down", 0)
    mask = Image.new("L", size, 255)
    if x2 > x1 and y2 > y1:
        mask.paste(0, (x1, y1, x2, y2))
    return mask


def edge_window(size: tuple[int, int], side: str, limit: tuple[int, int]) -> Box:
    """The window at the new edge an mk2 pass works on: the full height (width) of the canvas and at
    most `limit` wide (high) across the side, as A1111 crops it."""
    width, height = size
    if side in ("left", "right"):
        span = min(limit[0], width)
        return (0, 0, span, height) if side == "left" else (width - span, 0, width, height)
    span = min(limit[1], height)
    return (0, 0, width, span) if side == "up" else (0, height - span, width, height)


@dataclass(frozen=True)
class TileGrid:
    """Tiles of `tile` size covering a canvas, overlapping by at least `overlap` (A1111's split_grid)."""

    size: tuple[int, int]
    tile: tuple[int, int]
    overlap: int
    rows: list[tuple[int, list[int]]]  # (y, [x of each tile in the row])

    def boxes(self) -> list[Box]:
        """Every tile's box, row by row."""
        tw, th = self.tile
        return [(x, y, x + tw, y + th) for y, xs in self.rows for x in xs]


def tile_grid(size: tuple[int, int], tile: tuple[int, int], overlap: int) -> TileGrid:
    """Cuts a canvas into tiles like A1111's `split_grid`: as few as cover it with at least `overlap`
    shared, spread evenly, the last one flush with the far edge. Tiles never exceed the canvas and
    the overlap is kept below half a tile (A1111 divides by zero when it reaches the tile size)."""
    width, height = size
    tw, th = min(tile[0], width), min(tile[1], height)
    overlap = max(0, min(overlap, tw // 2, th // 2))

    def starts(length: int, span: int) -> list[int]:
        count = max(1, math.ceil((length - overlap) / (span - overlap)))
        step = (length - span) / (count - 1) if count > 1 else 0
        return [min(int(i * step), length - span) for i in range(count)]

    xs = starts(width, tw)
    return TileGrid(size, (tw, th), overlap, [(y, xs) for y in starts(height, th)])


def combine_tiles(grid: TileGrid, tiles: list[Image.Image]) -> Image.Image:
    """Puts tiles (in `grid.boxes()` order) back together as A1111's `combine_grid` does: each tile
    covers the one before it, its first `overlap` columns (rows) fading in linearly."""
    width, height = grid.size
    tw, th = grid.tile
    overlap = grid.overlap
    fade = np.arange(overlap, dtype=np.float32) * 255 / max(overlap, 1)
    fade_x = Image.fromarray(np.repeat(fade.astype(np.uint8)[None, :], th, axis=0), "L")
    fade_y = Image.fromarray(np.repeat(fade.astype(np.uint8)[:, None], width, axis=1), "L")
    combined = Image.new("RGB", (width, height))
    tiles_left = iter(tiles)
    for y, xs in grid.rows:
        row = Image.new("RGB", (width, th))
        for x in xs:
            tile = next(tiles_left)
            if x == 0 or overlap == 0:
                row.paste(tile, (x, 0))
                continue
            row.paste(tile.crop((0, 0, overlap, th)), (x, 0), mask=fade_x)
            row.paste(tile.crop((overlap, 0, tw, th)), (x + overlap, 0))
        if y == 0 or overlap == 0:
            combined.paste(row, (0, y))
            continue
        combined.paste(row.crop((0, 0, width, overlap)), (0, y), mask=fade_y)
        combined.paste(row.crop((0, overlap, width, th)), (0, y + overlap))
    return combined


def inside(box: Box, area: Box) -> bool:
    """Whether `box` lies wholly within `area`."""
    return box[0] >= area[0] and box[1] >= area[1] and box[2] <= area[2] and box[3] <= area[3]


def pad_to_multiple(image: Image.Image, multiple: int = 8, minimum: int = 0) -> Image.Image:
    """`image` grown on the right and bottom to whole multiples of `multiple`, and to at least
    `minimum` pixels, by repeating its last column and row (the model works in 8-pixel latent cells
    and img2img renders 64 pixels at least); crop the result back to the old size."""
    width, height = image.size
    pad_x = max(width + -width % multiple, minimum) - width
    pad_y = max(height + -height % multiple, minimum) - height
    if not pad_x and not pad_y:
        return image
    values = np.asarray(image)
    spec = [(0, pad_y), (0, pad_x)] + [(0, 0)] * (values.ndim - 2)
    return Image.fromarray(np.pad(values, spec, mode="edge"), image.mode)


def distance_outside(size: tuple[int, int], box: Box) -> np.ndarray:
    """Euclidean distance in pixels (float32, height x width) from each pixel to `box`; 0 inside.
    The first new row or column is at distance 1."""
    width, height = size
    x1, y1, x2, y2 = box
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    dx = np.maximum(np.maximum(x1 - xs, xs - (x2 - 1)), 0)
    dy = np.maximum(np.maximum(y1 - ys, ys - (y2 - 1)), 0)
    return np.sqrt(dx[None, :] ** 2 + dy[:, None] ** 2)


def stretch_edges(canvas: Image.Image, box: Box) -> np.ndarray:
    """The canvas (float32, H x W x 3) with every pixel outside `box` taking the colour of the
    nearest pixel inside it: the outermost rows and columns stretched outward, corners from corners."""
    width, height = canvas.size
    x1, y1, x2, y2 = box
    cols = np.clip(np.arange(width), x1, x2 - 1)
    rows = np.clip(np.arange(height), y1, y2 - 1)
    values = np.asarray(canvas.convert("RGB"), dtype=np.float32)
    return values[rows[:, None], cols[None, :]]


def graded_blur(values: np.ndarray, distance: np.ndarray, per_pixel: float, levels: tuple[float, ...] = (1, 2, 4, 8, 16, 32)) -> np.ndarray:
    """`values` (H x W x 3, 0-255) blurred more the farther a pixel is from the picture: Gaussian
    radius `per_pixel` x distance, interpolated between precomputed `levels` (capped at the last).
    Pixels at distance 0 are returned unchanged."""
    radius = np.clip(distance * per_pixel, 0, levels[-1])
    image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "RGB")
    stack = np.stack([values] + [np.asarray(image.filter(ImageFilter.GaussianBlur(r)), dtype=np.float32) for r in levels])
    radii = np.array((0.0, *levels), dtype=np.float32)
    upper = np.clip(np.searchsorted(radii, radius, side="left"), 1, len(radii) - 1)
    lower = upper - 1
    weight = ((radius - radii[lower]) / (radii[upper] - radii[lower]))[..., None]
    rows, cols = np.indices(distance.shape)
    return stack[lower, rows, cols] * (1 - weight) + stack[upper, rows, cols] * weight


def smoothstep(distance: np.ndarray, width: float) -> np.ndarray:
    """0 at distance 0, 1 from `width` on, smooth in between (3t² - 2t³); a step when width is 0."""
    if width <= 0:
        return (distance > 0).astype(np.float32)
    t = np.clip(distance / width, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def canvas_preview(image: Image.Image, expansion: Expansion, cell: int = 16) -> Image.Image:
    """What the Outpainting tab shows before generating: the enlarged canvas with `image` in place
    and the new area as a grey checkerboard (a transparent-looking area), outlined in orange."""
    size = expansion.size(image.size)
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    checker = np.where(((xs // cell) + (ys // cell)) % 2 == 0, 200, 150).astype(np.uint8)
    canvas = Image.fromarray(np.stack([checker] * 3, axis=-1), "RGB")
    box = expansion.box(image.size)
    canvas.paste(image.convert("RGB"), box[:2])
    if size != image.size:
        line = max(1, round(max(size) / 256))
        ImageDraw.Draw(canvas).rectangle((box[0] - line, box[1] - line, box[2] + line - 1, box[3] + line - 1), outline=(255, 140, 0), width=line)
    return canvas
