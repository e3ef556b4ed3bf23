"""/png-info, /extra-single-image and /extra-batch-images.

Extras follow A1111 1.10.1 (modules/upscalers/extras.py does the work, as a queued job): scale by
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
from modules.api.schemas import ApiModel, PngInfoRequest, PngInfoResponse
from modules.app.extras_jobs import ExtrasInput, ExtrasResult
from modules.infotext.create import format_parameters
from modules.infotext.embed import PARAMETERS_KEY, infotext_from_image
from modules.infotext.foreign import image_info, read_info
from modules.infotext.parse import parse_infotext
from modules.services import Services
from modules.upscalers.catalog import NONE
from modules.upscalers.extras import ExtrasOptions


def extras_options(body: ExtrasFields) -> ExtrasOptions:
    """The request's fields as Extras options (nulls were dropped by ApiModel: the defaults apply).
    Face restoration is refused by name rather than skipped (Easel has no face restorer yet)."""
    for name in ("gfpgan_visibility", "codeformer_visibility"):
        value = getattr(body, name)
        if value:
            raise ApiInputError(f"{name} is {value:g}, but Easel has no face restoration model: send 0.")
    return ExtrasOptions(
        resize_mode=int(body.resize_mode if body.resize_mode is not None else 0),
        scale=float(body.upscaling_resize if body.upscaling_resize is not None else 2),
        width=int(body.upscaling_resize_w if body.upscaling_resize_w is not None else 512),
        height=int(body.upscaling_resize_h if body.upscaling_resize_h is not None else 512),
        crop=bool(body.upscaling_crop if body.upscaling_crop is not None else True),
        upscaler_1=body.upscaler_1 or NONE,
        upscaler_2=body.upscaler_2 or NONE,
        visibility_2=float(body.extras_upscaler_2_visibility or 0),
    )


def run_extras_job(services: Services, images: list[Image.Image], body: ExtrasFields) -> ExtrasResult:
    """Queues the extras job (behind any generation, as A1111 takes the queue lock) and waits for it."""
    job = services.extras.submit([ExtrasInput(image) for image in images], extras_options(body), description=f"extras: {len(images)} image(s)")
    result = job.result()
    if result is None or result.interrupted:
        raise ApiInputError("The extras job was interrupted before it finished.")
    if result.skipped:
        raise ApiInputError("Some images could not be upscaled: " + "; ".join(result.skipped))
    return result


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
        """Upscales one image (see the module docstring)."""
        source = decode_image(body.image, "image", limit())
        result = run_extras_job(services, [source], body)
        return {"html_info": _html(result.infos[0]), "image": _encode(services, source, result.images[0], result.infos[0])}

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    def extra_batch_images(body: ExtrasBatchImagesRequest) -> dict[str, Any]:
        """Resizes each image of `imageList` the same way."""
        if not body.imageList:
            raise ApiInputError("imageList is empty: send at least one {data, name} image.")
        sources = [decode_image(item.data, f"imageList[{index}].data", limit()) for index, item in enumerate(body.imageList)]
        result = run_extras_job(services, sources, body)
        images = [_encode(services, source, image, info) for source, image, info in zip(sources, result.images, result.infos)]
        return {"html_info": _html(result.infos[-1]), "images": images}

    @router.post("/interrogate")
    def interrogate(body: InterrogateRequest) -> dict[str, Any]:
        """Captioning an image needs CLIP/DeepDanbooru models Easel does not have: 404."""
        raise ApiNotFoundError(f"Easel has no interrogate model {body.model!r} (no captioning models yet).")
