"""Image preparation for img2img: any upload to plain RGB, a size check, and A1111's resize modes.

Pure PIL/numpy. `resize_image` reproduces AUTOMATIC1111's `images.resize_image` (v1.10.1) without
upscalers: LANCZOS resampling, centring, and the edge-stretching fill of "Resize and fill".
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from modules.errors import UserError
from modules.generation.request import RESIZE_MODES as RESIZE_MODE_NAMES
from modules.generation.request import ResizeMode

__all__ = ["RESIZE_MODE_NAMES", "check_size", "resize_image", "to_rgb"]

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_RGB_FAMILY = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA")  # their ICC profile still fits the RGB result


def _gray_to_rgb(values: np.ndarray) -> Image.Image:
    """An array of 0-255 floats (any shape HxW) as an 8-bit RGB image."""
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, "L").convert("RGB")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Returns `image` as a new 8-bit RGB image, upright (EXIF orientation applied).

    Transparent pixels are composited over `background`; 16-bit and float greyscale are scaled to
    8 bits; CMYK, YCbCr, LAB and HSV go through PIL's own conversion. The input is never changed.
    """
    source_mode = image.mode
    image = ImageOps.exif_transpose(image)  # always a new image
    if source_mode == "La":
        image = image.convert("LA")  # PIL converts premultiplied grey+alpha only to LA
    if source_mode in _SIXTEEN_BIT or source_mode == "I":
        values = np.asarray(image).astype(np.float64)
        if source_mode in _SIXTEEN_BIT or values.max(initial=0) > 255:
            values = values / 257
        result = _gray_to_rgb(values)
    elif source_mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if values.max(initial=0) <= 1.0:
            values = values * 255
        result = _gray_to_rgb(values)
    elif image.has_transparency_data:
        base = Image.new("RGBA", image.size, (*background, 255))
        result = Image.alpha_composite(base, image.convert("RGBA")).convert("RGB")
    else:
        result = image.convert("RGB")  # a copy when already RGB; CMYK ignores any ICC profile
    result.info = {k: v for k, v in image.info.items() if k != "transparency"}
    if source_mode not in _RGB_FAMILY:
        result.info.pop("icc_profile", None)  # a CMYK or grey profile would mislabel RGB pixels
    return result


def check_size(image: Image.Image, max_megapixels: float) -> None:
    """Raises UserError when the image is empty or has more than `max_megapixels` million pixels."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise UserError(f"The image is empty ({width}x{height} pixels). Upload a picture with at least one pixel.")
    megapixels = width * height / 1e6
    if megapixels > max_megapixels:
        raise UserError(
            f"The image is {width}x{height} ({megapixels:.1f} megapixels); the largest allowed is "
            f"{max_megapixels:g} megapixels (setting max_input_megapixels). Make it smaller first."
        )


def resize_image(mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """Resizes `image` to `width`x`height` by A1111's resize mode 0, 1 or 2 (see RESIZE_MODE_NAMES).

    0 stretches; 1 scales to cover the target and crops the overflow, centred; 2 scales to fit inside
    the target, centred, and fills the gaps by stretching the outermost rows or columns. Mode 3
    (latent upscale) works on latents, so it is the engine's job: ValueError here, as for others.
    """
    if mode == ResizeMode.JUST_RESIZE:
        return image.resize((width, height), Image.Resampling.LANCZOS)
    if mode not in (ResizeMode.CROP_AND_RESIZE, ResizeMode.RESIZE_AND_FILL):
        raise ValueError(f"resize_image handles modes 0, 1 and 2, not {mode!r}")

    ratio = width / height
    src_ratio = image.width / image.height
    fit_width = ratio > src_ratio if mode == ResizeMode.CROP_AND_RESIZE else ratio < src_ratio  # the width matches the target
    src_w = width if fit_width else image.width * height // image.height
    src_h = image.height * width // image.width if fit_width else height
    resized = image.resize((src_w, src_h), Image.Resampling.LANCZOS)
    result = Image.new(image.mode, (width, height))
    if image.mode == "P":  # a palette image's indices need its palette
        palette = image.palette
        colours = image.getpalette(palette.mode) if palette is not None else None
        assert palette is not None and colours is not None  # Pillow gives every "P" image a palette
        result.putpalette(colours, palette.mode)
    result.paste(resized, (width // 2 - src_w // 2, height // 2 - src_h // 2))

    if mode == ResizeMode.RESIZE_AND_FILL and ratio < src_ratio:  # bands above and below
        fill = height // 2 - src_h // 2
        if fill > 0:
            result.paste(resized.resize((width, fill), box=(0, 0, width, 0)), (0, 0))
            last = resized.height
            result.paste(resized.resize((width, fill), box=(0, last, width, last)), (0, fill + src_h))
    elif mode == ResizeMode.RESIZE_AND_FILL and ratio > src_ratio:  # bands left and right
        fill = width // 2 - src_w // 2
        if fill > 0:
            result.paste(resized.resize((fill, height), box=(0, 0, 0, height)), (0, 0))
            last = resized.width
            result.paste(resized.resize((fill, height), box=(last, 0, last, height)), (fill + src_w, 0))
    return result
