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
    """gr.Image with a pixel limit read at each upload (`max_megapixels()`: the live setting)."""

    is_template = True

    def __init__(self, *args: Any, max_megapixels: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_megapixels = max_megapixels

    def preprocess(self, payload: Any) -> Any:
        _check(payload, self.max_megapixels)
        return super().preprocess(payload)


class SizedImageEditor(gr.ImageEditor):
    """gr.ImageEditor with the same limit on its background, layers and composite."""

    is_template = True

    def __init__(self, *args: Any, max_megapixels: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_megapixels = max_megapixels

    def preprocess(self, payload: Any) -> Any:
        if payload is not None:
            for part in (payload.background, payload.composite, *(payload.layers or [])):
                _check(part, self.max_megapixels)
        return super().preprocess(payload)
