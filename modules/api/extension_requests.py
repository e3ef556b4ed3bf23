"""The extensions' parts of a generation request, as their clients send them: ControlNet units
(`alwayson_scripts.controlnet`), ADetailer tabs, Regional Prompter's settings and Dynamic Prompts'
(or Easel's own `dynamic_prompts`), each decoded and checked; an infotext's restored settings are
used when the request sends none of its own."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modules.api.images import decode_image
from modules.api.schemas import GenerationFields
from modules.controlnet.units import ControlNetError, ControlUnit, parse_units
from modules.detailer.args import DetailerRequest
from modules.detailer.args import parse_alwayson as parse_detailer
from modules.prompts.dynamic import DynamicRequest, is_dynamic_key, parse_alwayson
from modules.prompts.dynamic.args import SCRIPT_TITLE
from modules.regions.args import RegionalRequest, find_regional_args, parse_regional_args
from modules.services import Services

CONTROLNET = "controlnet"  # alwayson_scripts key of sd-webui-controlnet (any case)
ADETAILER = "adetailer"  # alwayson_scripts key of ADetailer (any case)
REGIONAL = "regional prompter"  # alwayson_scripts key of Regional Prompter (any case)


def regional_request(services: Services, body: GenerationFields, restored: Any = None) -> RegionalRequest | None:
    """`alwayson_scripts["Regional Prompter"]` (any case) with its 20 arguments, the mask decoded; else
    the settings the request's `infotext` carried; None when neither is active."""
    entry = find_regional_args(body.alwayson_scripts)
    limit = services.settings.max_input_megapixels
    regional = (parse_regional_args(entry, decode=lambda text: decode_image(text, "alwayson_scripts['Regional Prompter'] mask", limit))
                if entry is not None else restored)
    return regional if regional is not None and regional.active else None


def dynamic_request(body: GenerationFields) -> DynamicRequest | None:
    """`alwayson_scripts["Dynamic Prompts v<version>"]` (any version, any case) as the extension reads
    its 18 arguments, or Easel's `dynamic_prompts` settings by name (which win); None when absent or
    disabled."""
    entry = next(((str(name), value) for name, value in (body.alwayson_scripts or {}).items() if is_dynamic_key(name)), None)
    if body.dynamic_prompts is not None:
        entry = (SCRIPT_TITLE, {"args": body.dynamic_prompts})
    if entry is None:
        return None
    dynamic = parse_alwayson(*entry)
    return dynamic if dynamic.enabled else None


def detailer_request(body: GenerationFields, restored: Any = None) -> DetailerRequest | None:
    """`alwayson_scripts.ADetailer` (the key in any case) as ADetailer reads it; else the tabs the
    request's `infotext` carried (`restored`); None when neither runs a tab."""
    entry = next((value for name, value in (body.alwayson_scripts or {}).items() if str(name).lower() == ADETAILER), None)
    detailer = parse_detailer(entry) if entry is not None else restored
    return detailer if detailer is not None and detailer.runs else None


def control_units(services: Services, body: GenerationFields) -> list[ControlUnit]:
    """The enabled units of `alwayson_scripts.controlnet` (the key in any case, as A1111 matches
    script titles), their images decoded."""
    entry = next((value for name, value in (body.alwayson_scripts or {}).items() if str(name).lower() == CONTROLNET), None)
    if entry is None:
        return []
    units = parse_units(entry)
    limit = services.settings.max_input_megapixels
    decoded = []
    for index, unit in enumerate(units):
        image, mask = unit.image, unit.mask
        if isinstance(image, (list, tuple)):  # [image, mask]
            pair = list(image)
            image = pair[0] if pair else None
            if mask is None and len(pair) > 1:
                mask = pair[1]
        for name, value in (("image", image), ("mask", mask)):
            if value is not None and not isinstance(value, str):
                raise ControlNetError(f"ControlNet unit {index}: {name} must be a base64 picture, not {type(value).__name__}.")
        decoded.append(replace(unit, image=decode_image(image, f"ControlNet unit {index}: image", limit) if image else None,
                               mask=decode_image(mask, f"ControlNet unit {index}: mask", limit) if mask else None))
    return decoded
