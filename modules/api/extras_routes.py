"""/png-info, /extra-single-image and /extra-batch-images (resizing with the upscalers Easel has).

Extras follow A1111 1.10.1 (`scripts/postprocessing_upscale.py`, `modules/upscaler.py`): scale by
`upscaling_resize` (resize_mode 0) or to cover `upscaling_resize_w` x `_h` (resize_mode 1, then
centre-cropped onto that canvas when `upscaling_crop`); the size is rounded down to a multiple of 8;
upscaler "None" leaves the image as it is; a second upscaler is blended in by its visibility. The
image keeps its `parameters` and gets a `postprocessing` text with what was done.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter
from PIL import Image

from modules.api.errors import ApiInputError, ApiNotFoundError
from modules.api.images import decode_image, encode_image, encode_png_with_chunks
from modules.api.list_schemas import (
    ExtrasBatchImagesRequest,
    ExtrasBatchImagesResponse,
    ExtrasFields,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
)
from modules.api.misc_routes import UPSCALER_NONE, UPSCALERS
from modules.api.schemas import ApiModel, PngInfoRequest, PngInfoResponse
from modules.infotext.create import format_parameters
from modules.infotext.embed import PARAMETERS_KEY, infotext_from_image
from modules.infotext.foreign import image_info, read_info
from modules.infotext.parse import parse_infotext
from modules.services import Services

MAX_SCALE = 8.0
OUTPUT_FACTOR = 4  # extras may make pictures this many times larger than max_input_megapixels
_RESAMPLE = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}


def _upscaler(name: str | None, field: str) -> str | None:
    if name in (None, "", UPSCALER_NONE):
        return None
    if name not in UPSCALERS:
        raise ApiNotFoundError(f"{field}: no upscaler named {name!r}; choose one of {', '.join(UPSCALERS)} (see /upscalers).")
    return name


def upscale(image: Image.Image, upscaler: str, scale: float) -> Image.Image:
    """A1111's `Upscaler.upscale` for the PIL upscalers: one resize by `scale`, then LANCZOS to the
    size rounded down to a multiple of 8."""
    dest = (int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8))
    if not (image.width >= dest[0] and image.height >= dest[1] and scale != 1):  # A1111 only ever enlarges here
        image = image.resize((int(image.width * scale), int(image.height * scale)), resample=_RESAMPLE[upscaler])
    if image.size != dest:
        image = image.resize(dest, resample=Image.Resampling.LANCZOS)
    return image


def _target_size(body: ExtrasFields) -> tuple[int, int]:
    """upscaling_resize_w x _h: never None, as nulls are dropped (ApiModel) and their defaults apply."""
    width, height = body.upscaling_resize_w, body.upscaling_resize_h
    assert width is not None and height is not None
    return width, height


def postprocess(image: Image.Image, body: ExtrasFields, max_megapixels: float) -> tuple[Image.Image, dict[str, Any]]:
    """The resized image and the `postprocessing` parameters (A1111's pp.info)."""
    info: dict[str, Any] = {}
    first = _upscaler(body.upscaler_1, "upscaler_1")
    second = _upscaler(body.upscaler_2, "upscaler_2")
    if first is None:
        return image, info
    # Nulls are dropped (ApiModel), so the fields read below, whose defaults are numbers, are never None.
    if body.resize_mode == 1:
        width, height = _target_size(body)
        if width < 8 or height < 8:
            raise ApiInputError(f"upscaling_resize_w and _h must be at least 8 pixels, not {width}x{height}.")
        scale = max(width / image.width, height / image.height)
        info["Postprocess upscale to"] = f"{width}x{height}"
    elif body.resize_mode == 0:
        factor = body.upscaling_resize
        assert factor is not None
        scale = factor
        info["Postprocess upscale by"] = scale
    else:
        raise ApiInputError(f"resize_mode must be 0 (scale by upscaling_resize) or 1 (to upscaling_resize_w x _h), not {body.resize_mode}.")
    if not 0 < scale <= MAX_SCALE:
        raise ApiInputError(f"The scale must be more than 0 and at most {MAX_SCALE:g}, not {scale:g}.")
    out_w, out_h = int(image.width * scale // 8 * 8), int(image.height * scale // 8 * 8)
    if out_w < 8 or out_h < 8:
        raise ApiInputError(f"Scaling {image.width}x{image.height} by {scale:g} leaves less than 8 pixels; scale it up, not down.")
    if out_w * out_h / 1e6 > OUTPUT_FACTOR * max_megapixels:
        raise ApiInputError(f"The result would be {out_w}x{out_h}, more than {OUTPUT_FACTOR * max_megapixels:g} megapixels; scale less.")
    image = image.convert("RGB")
    result = upscale(image, first, scale)
    info["Postprocess upscaler"] = first
    visibility = body.extras_upscaler_2_visibility
    assert visibility is not None
    if not 0 <= visibility <= 1:
        raise ApiInputError(f"extras_upscaler_2_visibility must be between 0 and 1, not {visibility:g}.")
    if second is not None and visibility > 0:
        result = Image.blend(result, upscale(image, second, scale), visibility)
        info["Postprocess upscaler 2"] = second
    if body.resize_mode == 1 and body.upscaling_crop:
        canvas = Image.new("RGB", _target_size(body))
        canvas.paste(result, box=(canvas.width // 2 - result.width // 2, canvas.height // 2 - result.height // 2))
        result = canvas
        info["Postprocess crop to"] = f"{result.width}x{result.height}"
    return result, info


def _encode(services: Services, source: Image.Image, image: Image.Image, info: dict[str, Any]) -> str:
    parameters = infotext_from_image(source)
    text = format_parameters(info)
    if services.settings.samples_format == "png":
        chunks = {k: v for k, v in (source.info or {}).items() if isinstance(k, str) and isinstance(v, str)}
        if parameters:
            chunks[PARAMETERS_KEY] = parameters
        if text:
            chunks["postprocessing"] = text
        return encode_png_with_chunks(image, chunks)
    return encode_image(image, parameters, services.settings.samples_format)


def _html(info: dict[str, Any]) -> str:
    return f"<p>{html.escape(format_parameters(info))}</p>"


class InterrogateRequest(ApiModel):
    image: str = ""
    model: str = "clip"


def add_extras_routes(router: APIRouter, services: Services) -> None:
    def limit() -> float:
        return services.settings.max_input_megapixels

    @router.post("/png-info", response_model=PngInfoResponse)
    def png_info(body: PngInfoRequest) -> dict[str, Any]:
        """The infotext in an image (A1111's, or summarised from ComfyUI, InvokeAI, NovelAI, Fooocus
        metadata), its other text items, and the infotext parsed."""
        image = decode_image(body.image, "image", limit())
        found = read_info(image_info(image))
        info = found.infotext or ""
        items = {k: v for k, v in found.raw.items() if k != PARAMETERS_KEY}
        return {"info": info, "items": items, "parameters": parse_infotext(info)}

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
    def extra_single_image(body: ExtrasSingleImageRequest) -> dict[str, Any]:
        """Resizes one image (see the module docstring)."""
        source = decode_image(body.image, "image", limit())
        result, info = postprocess(source, body, limit())
        return {"html_info": _html(info), "image": _encode(services, source, result, info)}

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    def extra_batch_images(body: ExtrasBatchImagesRequest) -> dict[str, Any]:
        """Resizes each image of `imageList` the same way."""
        if not body.imageList:
            raise ApiInputError("imageList is empty: send at least one {data, name} image.")
        images: list[str] = []
        info: dict[str, Any] = {}
        for index, item in enumerate(body.imageList):
            source = decode_image(item.data, f"imageList[{index}].data", limit())
            result, info = postprocess(source, body, limit())
            images.append(_encode(services, source, result, info))
        return {"html_info": _html(info), "images": images}

    @router.post("/interrogate")
    def interrogate(body: InterrogateRequest) -> dict[str, Any]:
        """Captioning an image needs CLIP/DeepDanbooru models Easel does not have: 404."""
        raise ApiNotFoundError(f"Easel has no interrogate model {body.model!r} (no captioning models yet).")
