"""The Extras operation (A1111 1.10 `scripts/postprocessing_upscale.py`): one picture made bigger
by one upscaler, optionally blended with a second, and what was done as `postprocessing` text.

Scale by `scale` (mode 0), or to cover `width` x `height` (mode 1, then centred on a canvas of
exactly that size when `crop`). The size is rounded down to a multiple of 8. Upscaler "None" as the
first leaves the picture as it is; the second runs on the original and is blended in by its
visibility.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from modules.errors import UserError
from modules.upscalers.catalog import NONE
from modules.upscalers.progress import OnProgress
from modules.upscalers.service import Upscalers, target_size

MAX_SCALE = 8.0
OUTPUT_FACTOR = 4  # results may be this many times larger than max_input_megapixels


class ExtrasError(UserError):
    """Extras settings that cannot be used (answered 422 by the API)."""


@dataclass(frozen=True)
class ExtrasOptions:
    resize_mode: int = 0  # 0: scale by `scale`; 1: to `width` x `height`
    scale: float = 2.0
    width: int = 512
    height: int = 512
    crop: bool = True
    upscaler_1: str = NONE
    upscaler_2: str = NONE
    visibility_2: float = 0.0


def _named(name: str | None) -> str | None:
    return None if name in (None, "", NONE) else name


def check(options: ExtrasOptions, upscalers: Upscalers) -> None:
    """Every setting usable and every upscaler installed, before any picture is touched."""
    for name in (options.upscaler_1, options.upscaler_2):
        if _named(name):
            upscalers.catalog.find(str(name))
    if options.resize_mode not in (0, 1):
        raise ExtrasError(f"Resize mode must be 0 (scale by) or 1 (scale to), not {options.resize_mode}.")
    if options.resize_mode == 1 and (options.width < 8 or options.height < 8):
        raise ExtrasError(f"The size to scale to must be at least 8x8 pixels, not {options.width}x{options.height}.")
    if options.resize_mode == 0 and not 0 < options.scale <= MAX_SCALE:
        raise ExtrasError(f"The scale must be more than 0 and at most {MAX_SCALE:g}, not {options.scale:g}.")
    if not 0 <= options.visibility_2 <= 1:
        raise ExtrasError(f"The visibility of upscaler 2 must be between 0 and 1, not {options.visibility_2:g}.")


def run_extras(image: Image.Image, options: ExtrasOptions, upscalers: Upscalers, max_megapixels: float,
               on_progress: OnProgress | None = None) -> tuple[Image.Image, dict[str, Any]]:
    """The upscaled picture and the `postprocessing` parameters (A1111's keys, in its order)."""
    check(options, upscalers)
    info: dict[str, Any] = {}
    first, second = _named(options.upscaler_1), _named(options.upscaler_2)
    if first is None:
        return image, info
    if options.resize_mode == 1:
        scale = max(options.width / image.width, options.height / image.height)
        info["Postprocess upscale to"] = f"{options.width}x{options.height}"
        if not 0 < scale <= MAX_SCALE:
            raise ExtrasError(
                f"Scaling {image.width}x{image.height} to {options.width}x{options.height} is a factor of {scale:g}; "
                f"at most {MAX_SCALE:g} is allowed."
            )
    else:
        scale = options.scale
        info["Postprocess upscale by"] = scale
    out_w, out_h = target_size(image, scale)
    if out_w < 8 or out_h < 8:
        raise ExtrasError(f"Scaling {image.width}x{image.height} by {scale:g} leaves less than 8 pixels; scale it up, not down.")
    if out_w * out_h / 1e6 > OUTPUT_FACTOR * max_megapixels:
        raise ExtrasError(f"The result would be {out_w}x{out_h}, more than {OUTPUT_FACTOR * max_megapixels:g} megapixels; scale less.")
    source = image.convert("RGB")
    result = upscalers.upscale(source, first, scale, on_progress)
    info["Postprocess upscaler"] = upscalers.catalog.find(first).name
    if second is not None and options.visibility_2 > 0:
        result = Image.blend(result, upscalers.upscale(source, second, scale, on_progress), options.visibility_2)
        info["Postprocess upscaler 2"] = upscalers.catalog.find(second).name
    if options.resize_mode == 1 and options.crop:
        canvas = Image.new("RGB", (options.width, options.height))
        canvas.paste(result, box=(canvas.width // 2 - result.width // 2, canvas.height // 2 - result.height // 2))
        result = canvas
        info["Postprocess crop to"] = f"{result.width}x{result.height}"
    return result, info
