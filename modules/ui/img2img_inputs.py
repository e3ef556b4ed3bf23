"""What the img2img sub-tabs hold, turned into the request's picture and mask (no gradio here).

- "img2img": the uploaded picture as it is.
- "Sketch": the editor's composite (the picture with the colour strokes on it).
- "Inpaint": the editor's background is the picture; every painted pixel (alpha > 0 in any layer)
  is white in the mask. Nothing painted gives an all-black mask: the engine then runs plain img2img
  and says so (as A1111 does).
- "Inpaint upload": a picture and a mask file (white = repaint, or the alpha of a transparent one).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from modules.errors import UserError

# Sub-tab ids, in the order they are shown, with their labels.
SOURCE_TABS = {"img2img": "img2img", "sketch": "Sketch", "inpaint": "Inpaint", "inpaint-upload": "Inpaint upload"}
INPAINT_TABS = ("inpaint", "inpaint-upload")
MIN_SIZE, MAX_SIZE = 64, 2048  # of the width/height sliders


@dataclass
class SourcePicture:
    image: Image.Image | None  # None: nothing uploaded (the request then says to upload one)
    mask: Image.Image | None = None


def editor_background(value: dict[str, Any] | None) -> Image.Image | None:
    return value.get("background") if isinstance(value, dict) else None


def painted_mask(layers: list[Image.Image], size: tuple[int, int]) -> Image.Image:
    """White where any layer has paint (alpha > 0), at `size` (layers of another size are scaled
    to it, nearest neighbour so the mask stays binary)."""
    mask = np.zeros((size[1], size[0]), dtype=bool)
    for layer in layers or []:
        if layer is None:
            continue
        alpha = layer.convert("RGBA").getchannel("A")
        if alpha.size != size:
            alpha = alpha.resize(size, Image.Resampling.NEAREST)
        mask |= np.asarray(alpha) > 0
    return Image.fromarray((mask * 255).astype(np.uint8), mode="L")


def inpaint_source(value: dict[str, Any] | None) -> SourcePicture:
    background = editor_background(value)
    if background is None or value is None:
        return SourcePicture(None)
    return SourcePicture(background, painted_mask(value.get("layers") or [], background.size))


def sketch_source(value: dict[str, Any] | None) -> SourcePicture:
    if not isinstance(value, dict):
        return SourcePicture(None)
    picture = value.get("composite") if value.get("composite") is not None else value.get("background")
    return SourcePicture(picture)


def upload_source(image: Image.Image | None, mask: Image.Image | None) -> SourcePicture:
    if image is not None and mask is None:
        raise UserError("Inpaint upload needs a mask too: upload a black and white picture (white = repaint).")
    return SourcePicture(image, mask)


def source_picture(tab: str, values: dict[str, Any]) -> SourcePicture:
    """The picture (and mask) of sub-tab `tab`; `values` maps each tab id to its component value(s)."""
    if tab == "sketch":
        return sketch_source(values["sketch"])
    if tab == "inpaint":
        return inpaint_source(values["inpaint"])
    if tab == "inpaint-upload":
        return upload_source(*values["inpaint-upload"])
    return SourcePicture(values["img2img"])


def multiple_of_8(value: float) -> int:
    """The nearest multiple of 8 within the sliders' range."""
    return int(min(max(round(value / 8) * 8, MIN_SIZE), MAX_SIZE))


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """"Resize by": the picture's size times `scale`, each side rounded to a multiple of 8."""
    return multiple_of_8(size[0] * scale), multiple_of_8(size[1] * scale)


def resize_by_html(size: tuple[int, int] | list[int] | None, scale: float | None, say: Callable[..., str] | None = None) -> str:
    """A1111's "resize: from 512x512 to 1024x1024" under the Resize by slider, in the caller's language."""
    say = say or (lambda text, **values: text.format(**values) if values else text)
    if not size or not scale:
        return f'<span class="easel-resize-by">{html.escape(say("No image yet: upload one to see the size it becomes."))}</span>'
    width, height = scaled_size((int(size[0]), int(size[1])), float(scale))
    text = html.escape(say("resize: from {source} to {target}", source="\x00", target="\x01"))
    text = text.replace("\x00", f'<span class="resolution">{int(size[0])}x{int(size[1])}</span>').replace("\x01", f'<span class="resolution">{width}x{height}</span>')
    return f'<span class="easel-resize-by">{text}</span>'
