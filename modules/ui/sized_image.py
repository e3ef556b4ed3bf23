"""Picture inputs that refuse a picture over `max_input_megapixels` before it is decoded.

Gradio decodes an uploaded picture (PIL) in the component's `preprocess`, before any handler of
ours runs: a 20,000 x 20,000 PNG of a few KB would be refused by PIL's own bomb check with PIL's
words, and one just under that check (up to ~178 megapixels) would be decoded in full. These
subclasses read the size from the file's header first and raise `gr.Error` with Easel's sentence.
`is_template = True` makes the page draw them with Gradio's own Image / ImageEditor widgets.
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from modules.uploads import pixel_limit_problem

WHAT = "The uploaded picture"


def _check(part: Any, max_megapixels: Callable[[], float]) -> None:
    """`part`: a FileData (its path), the bytes of a picture, or None."""
    source = part if isinstance(part, bytes) else getattr(part, "path", None)
    if not source:
        return
    problem = pixel_limit_problem(source, max_megapixels(), WHAT)
    if problem:
        raise gr.Error(problem)


class SizedImage(gr.Image):
    """gr.Image with a pixel limit read at each upload (`max_megapixels()`: the live setting).
    Build it with `sized_image`: Gradio reads a component's properties from the signature of its
    class's `__init__`, so these subclasses keep Gradio's own."""

    is_template = True
    max_megapixels: Callable[[], float] | None = None

    def preprocess(self, payload: Any) -> Any:
        if self.max_megapixels is not None:
            _check(payload, self.max_megapixels)
        return super().preprocess(payload)


class SizedImageEditor(gr.ImageEditor):
    """gr.ImageEditor with the same limit on its background, layers and composite."""

    is_template = True
    max_megapixels: Callable[[], float] | None = None

    def preprocess(self, payload: Any) -> Any:
        if payload is not None and self.max_megapixels is not None:
            for part in (payload.background, payload.composite, *(payload.layers or [])):
                _check(part, self.max_megapixels)
        return super().preprocess(payload)


def sized_image(*, max_megapixels: Callable[[], float], **kwargs: Any) -> SizedImage:
    """A SizedImage taking gr.Image's arguments."""
    image = SizedImage(**kwargs)
    image.max_megapixels = max_megapixels
    return image


def sized_image_editor(*, max_megapixels: Callable[[], float], **kwargs: Any) -> SizedImageEditor:
    """A SizedImageEditor taking gr.ImageEditor's arguments."""
    editor = SizedImageEditor(**kwargs)
    editor.max_megapixels = max_megapixels
    return editor
