"""sd-webui-controlnet's routes (v1.1.455 `scripts/api.py`), at `/controlnet/...` as the extension
mounts them: version, model_list, module_list (with `module_detail`), control_types, settings,
detect (the preview of a preprocessor; both `controlnet_input_images` and webuiapi's
`controlnet_images` are read)."""

from __future__ import annotations

import io
from typing import Any

from fastapi import APIRouter, Body
from PIL import Image

from modules.api.errors import ApiInputError
from modules.api.images import decode_image, encode_b64
from modules.controlnet.control_types import control_types
from modules.controlnet.preprocess import DEFAULT_RESOLUTION, PREPROCESSORS, detect, find_preprocessor
from modules.controlnet.units import DEFAULT_UNIT_COUNT
from modules.services import Services

API_VERSION = 3


def module_detail() -> dict[str, Any]:
    details = {}
    for name, p in PREPROCESSORS.items():
        sliders = []
        if p.resolution:
            sliders.append({"name": "Preprocessor Resolution", "value": DEFAULT_RESOLUTION, "min": 64, "max": 2048, "step": 8})
        for slider in (p.slider_a, p.slider_b):
            if slider is not None:
                sliders.append({"name": slider.name, "value": slider.value, "min": slider.minimum, "max": slider.maximum, "step": slider.step})
        details[name] = {"model_free": p.name == "none", "sliders": sliders, "needs_weights": p.weights or None}
    return details


def control_types_answer(models: list[str]) -> dict[str, Any]:
    return {name: {"module_list": kind.modules, "model_list": ["None", *kind.models], "default_option": kind.default_module,
                   "default_model": kind.default_model} for name, kind in control_types(models).items()}


def add_controlnet_routes(app_router: APIRouter, services: Services) -> None:
    router = APIRouter(prefix="/controlnet", tags=["controlnet"])  # `app_router` brings the auth

    @router.get("/version")
    def version() -> dict[str, Any]:
        return {"version": API_VERSION}

    @router.get("/model_list")
    def model_list(update: bool = True) -> dict[str, Any]:
        """The ControlNet models in models/ControlNet, as `stem [hash8]` (no "None" entry)."""
        return {"model_list": services.controlnets.catalog.titles()}

    @router.get("/module_list")
    def module_list(alias_names: bool = False) -> dict[str, Any]:
        return {"module_list": list(PREPROCESSORS), "module_detail": module_detail()}

    @router.get("/control_types")
    def get_control_types() -> dict[str, Any]:
        return {"control_types": control_types_answer(services.controlnets.catalog.titles())}

    @router.get("/settings")
    def settings() -> dict[str, Any]:
        return {"control_net_unit_count": DEFAULT_UNIT_COUNT}

    @router.post("/detect")
    def detect_maps(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """The preprocessor's map of each image (`controlnet_module`, `controlnet_input_images` or
        `controlnet_images`, `controlnet_processor_res`, `controlnet_threshold_a`/`_b`)."""
        module = str(body.get("controlnet_module", "none"))
        images = body.get("controlnet_input_images") or body.get("controlnet_images") or []
        if not isinstance(images, list) or not images:
            raise ApiInputError("No image selected: send controlnet_input_images (a list of base64 pictures).")
        annotators = services.controlnets.annotators
        preprocessor = find_preprocessor(module, "controlnet_module", annotators)
        limit = services.settings.max_input_megapixels
        answers = []
        for index, text in enumerate(images):
            picture = decode_image(text, f"controlnet_input_images[{index}]", limit)
            found = detect(preprocessor, picture, int(body.get("controlnet_processor_res", -1) or -1),
                           float(body.get("controlnet_threshold_a", -1)), float(body.get("controlnet_threshold_b", -1)),
                           annotators=annotators)
            buffer = io.BytesIO()
            Image.fromarray(found).save(buffer, "PNG")
            answers.append(encode_b64(buffer.getvalue()))
        return {"info": "Success", "images": answers}

    app_router.include_router(router)
