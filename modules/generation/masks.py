"""Inpainting masks, as AUTOMATIC1111 v1.10.1 builds and uses them (pure PIL/numpy).

A mask is an "L" image, 255 where the picture is repainted. The steps, in the engine's order: read
it (`mask_from_image`), soften its edge (`blur_mask`), for "Only masked" find and widen the area to
repaint (`crop_region`, `expand_crop_region`), pre-fill the hole for "fill" (`fill_masked`), give
the sampler its latent-sized mask (`latent_mask`), and paste the result back over the untouched
original (`overlay_mask`, `overlay_image`, `apply_overlay`).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from modules.generation.image_ops import resize_image, to_rgb
from modules.generation.request import ResizeMode

Region = tuple[int, int, int, int]  # x1, y1, x2, y2: left/top inclusive, right/bottom exclusive


def mask_from_image(image: Image.Image, round: bool = True) -> Image.Image:
    """The "L" mask an uploaded or drawn image stands for (A1111's create_binary_mask).

    An image with real transparency (alpha not all 255) gives its alpha channel, thresholded at
    128 when `round`; any other image gives its luminance, unrounded. EXIF orientation is applied,
    as `to_rgb` does for the picture, so a phone photo and its mask stay aligned.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode == "La":
        image = image.convert("LA")  # PIL converts premultiplied grey+alpha only to LA
    if image.mode != "RGBA" and image.has_transparency_data:  # LA, PA, RGBa, P or L with a transparent colour
        image = image.convert("RGBA")
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        alpha = image.getchannel("A")
        return alpha.point(lambda a: 255 if a > 128 else 0) if round else alpha
    if image.mode in ("L", "1", "RGB", "RGBA"):
        return image.convert("L")
    return to_rgb(image).convert("L")  # 16-bit, float, CMYK...: scaled to 8 bits first


def _fixed_point_kernel(sigma: float) -> list[int]:
    """OpenCV's 8-bit Gaussian kernel in 1/256ths, for A1111's size 2*int(2.5*sigma + 0.5) + 1.

    Like OpenCV's getGaussianKernelFixedPoint_ED: each weight is rounded from the outside in,
    carrying its rounding error to the next, and the centre takes what makes the sum exactly 256.
    """
    radius = int(2.5 * sigma + 0.5)
    gauss = [math.exp(-(x * x) / (2 * sigma * sigma)) for x in range(-radius, 1)]  # outermost first
    norm = 2 * sum(gauss[:-1]) + 1
    weights, error = [], 0.0
    for value in gauss[:-1]:
        scaled = value / norm * 256 + error
        weights.append(round(scaled))  # half to even, like cvRound
        error = scaled - weights[-1]
    return weights + [256 - 2 * sum(weights)] + weights[::-1]


def _blur_axis(values: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """One cv2.GaussianBlur pass on uint8 `values` along `axis`, in OpenCV's exact integer arithmetic.

    Borders mirror without repeating the edge pixel (BORDER_REFLECT_101; np.pad "reflect" keeps
    reflecting when the kernel is wider than the image).
    """
    weights = _fixed_point_kernel(sigma)
    radius = len(weights) // 2
    length = values.shape[axis]
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(values.astype(np.uint16), pad, mode="reflect")  # 255 * 256 still fits

    def shifted(offset: int) -> np.ndarray:  # padded, moved by `offset` pixels along the axis
        index = [slice(None), slice(None)]
        index[axis] = slice(radius + offset, radius + offset + length)
        return padded[tuple(index)]

    total = weights[radius] * shifted(0)
    for offset in range(1, radius + 1):  # symmetric kernel: one multiply per pair of taps
        if weights[radius + offset]:  # far taps of a wide kernel often round to 0
            total += weights[radius + offset] * (shifted(-offset) + shifted(offset))
    total += 128
    return (total >> 8).astype(np.uint8)  # round half up, as OpenCV's fixed point does


def blur_mask(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """Gaussian blur of an "L" mask as A1111 does it: horizontal (sigma blur_x), then vertical.

    Bit-exact with cv2.GaussianBlur(mask, (k, 1), blur_x) then (1, k) with blur_y, where
    k = 2*int(2.5*sigma + 0.5) + 1; a sigma of 0 skips that axis.
    """
    values = np.asarray(mask.convert("L"))
    for sigma, axis in ((blur_x, 1), (blur_y, 0)):
        if sigma > 0:
            values = _blur_axis(values, sigma, axis)
    return Image.fromarray(values, "L")


def crop_region(mask: Image.Image, padding: int) -> Region | None:
    """The box around the mask's nonzero pixels widened by `padding` inside the image; None if empty."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    width, height = mask.size
    return (max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, width), min(y2 + padding, height))


def _expand_span(start: int, end: int, grow: int, limit: int) -> tuple[int, int]:
    """Widens [start, end) by `grow` (split as evenly as can be), shifted back inside [0, limit]."""
    start -= grow // 2
    end += grow - grow // 2
    if end >= limit:
        start -= end - limit
        end = limit
    if start < 0:
        end -= start
        start = 0
    return start, min(end, limit)


def expand_crop_region(region: Region, width: int, height: int, image_width: int, image_height: int) -> Region:
    """Grows `region` to the processing size's aspect ratio (`width`/`height`), kept inside the image.

    Only the short side grows, about its centre; near an edge the region slides inward, and where
    the image is too small in that direction it is clipped to the image (A1111's expand_crop_region).
    """
    x1, y1, x2, y2 = region
    if (x2 - x1) / (y2 - y1) > width / height:
        grow = int((x2 - x1) / (width / height) - (y2 - y1))
        y1, y2 = _expand_span(y1, y2, grow, image_height)
    else:
        grow = int((y2 - y1) * (width / height) - (x2 - x1))
        x1, x2 = _expand_span(x1, x2, grow, image_width)
    return x1, y1, x2, y2


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Paints the masked area with colours smeared in from around it ("masked content: fill").

    Layers of the unmasked picture blurred less and less are stacked, so each hole pixel takes the
    nearest surrounding colours; unmasked pixels keep their exact values.
    """
    size = image.size
    result = Image.new("RGBA", size)
    visible = Image.new("RGBa", size)  # premultiplied, so blurring ignores the hole's colours
    visible.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = visible.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(blurred)
    return result.convert("RGB")


def overlay_mask(mask: Image.Image) -> Image.Image:
    """The "Whole picture" overlay mask: the mask doubled, so its blurred edge reaches full strength sooner."""
    doubled = np.asarray(mask.convert("L"), dtype=np.float32) * 2
    return Image.fromarray(np.clip(doubled, 0, 255).astype(np.uint8), "L")


def overlay_image(image: Image.Image, overlay: Image.Image) -> Image.Image:
    """The original picture as RGBA, transparent where `overlay` (an overlay mask) says it will be repainted."""
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(overlay.convert("L")))
    return kept.convert("RGBA")


def uncrop(image: Image.Image, dest_size: tuple[int, int], paste_loc: tuple[int, int, int, int]) -> Image.Image:
    """`image` resized (crop and resize) into the box paste_loc = (x, y, w, h) of a transparent dest_size canvas."""
    x, y, w, h = paste_loc
    canvas = Image.new("RGBA", dest_size)
    canvas.paste(resize_image(ResizeMode.CROP_AND_RESIZE, image, w, h), (x, y))
    return canvas


def apply_overlay(
    image: Image.Image, paste_loc: tuple[int, int, int, int] | None, overlay: Image.Image | None
) -> Image.Image:
    """Puts a generated image back into the original, as RGB: uncropped to paste_loc (x, y, w, h)
    if given, then the `overlay_image` laid on top, so outside the mask every pixel is the original's.
    Without an overlay (plain img2img) the image is returned as it is."""
    if overlay is None:
        return image
    if paste_loc is not None:
        image = uncrop(image, overlay.size, paste_loc)
    image = image.convert("RGBA")
    image.alpha_composite(overlay)
    return image.convert("RGB")


def latent_mask(mask: Image.Image, latent_width: int, latent_height: int, round: bool = True) -> np.ndarray:
    """The mask at latent size as float32 (latent_height, latent_width) in [0, 1], 1 = repaint.

    Bicubic downscale of the mask (PIL's default for RGB), rounded to 0/1 when `round`.
    """
    small = mask.convert("RGB").resize((latent_width, latent_height), Image.Resampling.BICUBIC)
    values = np.asarray(small, dtype=np.float32)[:, :, 0] / 255
    return np.around(values) if round else values
