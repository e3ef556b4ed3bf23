"""What an outpainting job asks for: the img2img request it runs on, plus the outpaint settings.

`OutpaintRequest.base` is an ordinary `Img2ImgRequest`: prompt, negative prompt, sampler, steps,
CFG, seed, denoising strength, batch size and count, and `init_images[0]`, the picture to extend.
Its `width` x `height` is the processing window (A1111's img2img size sliders): "Outpainting mk2"
inpaints an edge window no larger than it, "Poor man's outpainting" cuts the canvas into tiles of
that size; "Easel fill" paints the whole canvas in one pass and does not use it. The base's mask,
resize mode and masked-content fields are ignored: every method makes its own.

`mask_blur` and `inpainting_fill` of None take the method's default (see OUTPAINT_METHODS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modules.generation.image_ops import to_rgb
from modules.generation.img2img import check_inputs as check_image_inputs
from modules.generation.request import MASKED_CONTENT, Img2ImgRequest, RequestError

DIRECTIONS = ("left", "right", "up", "down")  # also the order mk2 extends the sides in, as A1111
PIXELS_RANGE = (8, 512)
MASK_BLUR_RANGE = (0, 64)
NOISE_Q_RANGE = (0.0, 4.0)


@dataclass
class OutpaintRequest:
    """An outpainting job (see the module docstring)."""

    base: Img2ImgRequest
    method: str = "Easel fill"  # a label of OUTPAINT_METHODS
    directions: tuple[str, ...] = DIRECTIONS
    pixels: int = 128  # per chosen side, before rounding to what the method needs
    mask_blur: int | None = None  # None: the method's default
    noise_q: float = 1.0  # mk2: fall-off exponent of the matched noise (lower = more detail)
    color_variation: float = 0.05  # mk2: share of coloured (vs grey) noise in the new strip
    inpainting_fill: int | None = None  # poor man's: masked content (index into MASKED_CONTENT); None: fill

    def validate(self) -> "OutpaintRequest":
        """Checks every field; raises RequestError (a UserError) naming the first problem and the fix."""
        from modules.generation.outpaint.methods import OUTPAINT_METHODS  # the table imports this module's type

        self.base.validate()
        if self.method not in OUTPAINT_METHODS:
            raise RequestError(f"Unknown outpainting method {self.method!r}: choose one of {', '.join(OUTPAINT_METHODS)}.")
        chosen = [self.directions] if isinstance(self.directions, str) else list(self.directions)
        unknown = [d for d in chosen if d not in DIRECTIONS]
        if unknown:
            raise RequestError(f"Unknown outpainting direction {unknown[0]!r}: use left, right, up or down.")
        if not chosen:
            raise RequestError("Choose at least one direction to outpaint (left, right, up or down).")
        _check_range("Pixels to expand", self.pixels, PIXELS_RANGE, whole=True)
        if self.mask_blur is not None:
            _check_range("Mask blur", self.mask_blur, MASK_BLUR_RANGE, whole=True)
        _check_range("The fall-off exponent", self.noise_q, NOISE_Q_RANGE)
        _check_range("Color variation", self.color_variation, (0.0, 1.0))
        if self.inpainting_fill is not None and self.inpainting_fill not in range(len(MASKED_CONTENT)):
            raise RequestError(f"Masked content must be 0-3 ({', '.join(MASKED_CONTENT)}), not {self.inpainting_fill!r}.")
        return self

    @property
    def chosen_directions(self) -> tuple[str, ...]:
        """The chosen sides in DIRECTIONS order, each once."""
        chosen = {self.directions} if isinstance(self.directions, str) else set(self.directions)
        return tuple(d for d in DIRECTIONS if d in chosen)


def _check_range(what: str, value: Any, limits: tuple[float, float], whole: bool = False) -> None:
    low, high = limits
    kind = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        if whole:
            raise RequestError(f"{what} must be a whole number, not {value!r}.")
        raise RequestError(f"{what} must be a number, not {value!r}.")
    if not low <= value <= high:
        raise RequestError(f"{what} must be between {low:g} and {high:g}, not {value:g}.")


def check_inputs(request: OutpaintRequest, max_megapixels: float) -> None:
    """What the service checks before queueing: the picture is readable and not too large, and the
    enlarged picture (each side grown by at most the rounded pixels) stays within the limit too."""
    from modules.generation.outpaint.methods import resolve

    check_image_inputs(request.base, max_megapixels)
    request.validate()
    source = to_rgb(request.base.init_images[0]).size  # upright, as the job will see it
    width, height = resolve(request, source).expansion.size(source)
    if width * height / 1e6 > max_megapixels:
        raise RequestError(
            f"Outpainting would make a {width}x{height} picture ({width * height / 1e6:.1f} megapixels); the largest "
            f"allowed is {max_megapixels:g} megapixels (setting max_input_megapixels). Expand fewer pixels or fewer sides."
        )
