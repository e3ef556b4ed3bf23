"""Procedural training pictures for Easel's demo model: one flat shape on a plain background.

Every picture is described exactly by a `Scene` (shape, colours, position, size), so its caption
is always true and a test can check a generated picture with simple pixel statistics. The eight
colours are the corners of the RGB cube (slightly softened), as far apart as colours can be, so
"which named colour is this?" has a clear answer even for a small, imperfect model.

Used by tools/train_demo_model.py (training data) and tests/semantic (the colour names).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Name -> RGB. Corners of the RGB cube, pulled in a little from the extremes.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 40),
    "blue": (30, 50, 220),
    "yellow": (240, 220, 40),
    "cyan": (40, 210, 220),
    "magenta": (210, 40, 200),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
# Position words -> the shape's centre as a fraction of the picture (3 x 3 grid).
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.27, 0.27), "top": (0.5, 0.27), "top right": (0.73, 0.27),
    "left": (0.27, 0.5), "center": (0.5, 0.5), "right": (0.73, 0.5),
    "bottom left": (0.27, 0.73), "bottom": (0.5, 0.73), "bottom right": (0.73, 0.73),
}
# Size words -> the shape's half-width as a fraction of the picture (low, high).
SIZES: dict[str, tuple[float, float]] = {"small": (0.14, 0.18), "large": (0.22, 0.27)}
SUPERSAMPLE = 4  # drawn this many times larger, then box-filtered down: smooth edges


@dataclass(frozen=True)
class Scene:
    """What one picture shows; `caption()` says it in words."""

    shape: str
    colour: str  # one name, or two ("red blue": a blend, the two mixed half and half)
    background: str
    position: str
    size: str
    centre: tuple[float, float]  # fractions of the picture, jittered around the position's centre
    radius: float  # half-width, fraction of the picture

    @property
    def blend(self) -> bool:
        """Whether the shape's colour is a mix of two names."""
        return " " in self.colour


def caption(scene: Scene, background: bool = True, position: bool = False, size: bool = False) -> str:
    """"a [small] red circle on a blue background[, top left]": the parts asked for, in that order."""
    text = "a " + (f"{scene.size} " if size else "") + f"{scene.colour} {scene.shape}"
    if background:
        text += f" on a {scene.background} background"
    if position:
        text += f", {scene.position}"
    return text


def mix(colour: str) -> tuple[int, int, int]:
    """The RGB of a colour name, or the even mix of two names ("red blue")."""
    values = np.array([COLOURS[name] for name in colour.split()], dtype=np.float64)
    return tuple(int(round(v)) for v in values.mean(axis=0))


def random_scene(rng: np.random.Generator, blend: bool = False) -> Scene:
    """A uniformly chosen shape, colour pair (never equal), position and size, lightly jittered.
    With `blend`, the shape's colour is the mix of two names, and the background a third."""
    names = list(COLOURS)
    picked = rng.choice(len(names), size=3 if blend else 2, replace=False)
    colour = " ".join(names[i] for i in picked[:-1])
    background = names[picked[-1]]
    position = list(POSITIONS)[rng.integers(len(POSITIONS))]
    size = list(SIZES)[rng.integers(len(SIZES))]
    radius = float(rng.uniform(*SIZES[size]))
    cx, cy = POSITIONS[position]
    jitter = rng.uniform(-0.05, 0.05, 2)
    centre = (float(np.clip(cx + jitter[0], radius, 1 - radius)), float(np.clip(cy + jitter[1], radius, 1 - radius)))
    return Scene(SHAPES[rng.integers(len(SHAPES))], colour, background, position, size, centre, radius)


def render(scene: Scene, size: int = 64) -> Image.Image:
    """The scene as an RGB picture of `size` x `size` pixels."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), COLOURS[scene.background])
    draw = ImageDraw.Draw(image)
    cx, cy, r = scene.centre[0] * big, scene.centre[1] * big, scene.radius * big
    fill = mix(scene.colour)
    if scene.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif scene.shape == "square":
        s = r * 0.9  # a square of the same "size" looks bigger than a circle; even them out
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    else:  # upright triangle, centred on its bounding box
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)], fill=fill)
    return image.resize((size, size), Image.BOX)


def scene_batch(count: int, seed: int, size: int = 64, blend: bool = False) -> tuple[list[Scene], np.ndarray]:
    """`count` random scenes and their pictures (uint8, count x size x size x 3), fixed by `seed`."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng, blend) for _ in range(count)]
    pixels = np.stack([np.asarray(render(scene, size)) for scene in scenes])
    return scenes, pixels
