"""ControlNet units as clients send them in `alwayson_scripts.controlnet.args` (the extension's
`ControlNetUnit`, v1.1.455, and Forge's): every alias, both enum forms, A1111's defaults.

Accepted: `image`/`input_image`, `mask`/`mask_image`, `low_vram`/`lowvram`, `guidance` (=
guidance_end), ints or names for `resize_mode`, `control_mode` and `hr_option`. `image: ""` is no
image. `enabled` missing counts as on (the extension before v1.1.448 and Forge; v1.1.455 defaults to
off, but the clients that omit it are the older ones). Unknown keys are ignored; a value that
cannot be used is a ControlNetError naming the unit and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modules.errors import UserError

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
RESIZE_ALIASES = {
    "inner fit (scale to fit)": "Crop and Resize", "scale to fit (inner fit)": "Crop and Resize",
    "outer fit (shrink to fit)": "Resize and Fill", "envelope (outer fit)": "Resize and Fill",
    "just resize (latent upscale)": "Just Resize",
}
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
HR_OPTIONS = ("Both", "Low res only", "High res only")
DEFAULT_UNIT_COUNT = 3  # the extension's control_net_unit_count
MAX_WEIGHT = 2.0


class ControlNetError(UserError):
    """A unit that cannot be used (answered 422, naming the unit and the field)."""


@dataclass(frozen=True)
class ControlUnit:
    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    image: Any = None  # a base64 string, a PIL image, or None (img2img: the init image)
    mask: Any = None
    resize_mode: str = "Crop and Resize"
    low_vram: bool = False
    processor_res: int = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"
    hr_option: str = "Both"
    save_detected_map: bool = True


def _choice(value: Any, names: tuple[str, ...], field: str, where: str, aliases: dict[str, str] | None = None) -> str:
    if isinstance(value, bool):
        raise ControlNetError(f"{where}: {field} must be one of {', '.join(names)} (or 0-{len(names) - 1}), not {value!r}.")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
        if index == 3 and names is RESIZE_MODES:  # "Just Resize (Latent upscale)" of old clients
            return "Just Resize"
        if 0 <= index < len(names):
            return names[index]
    if isinstance(value, str):
        for name in names:
            if value.strip().lower() == name.lower():
                return name
        if aliases and value.strip().lower() in aliases:
            return aliases[value.strip().lower()]
    raise ControlNetError(f"{where}: {field} must be one of {', '.join(names)} (or 0-{len(names) - 1}), not {value!r}.")


def _number(value: Any, field: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ControlNetError(f"{where}: {field} must be a number, not {value!r}.")
    try:
        return float(value)
    except ValueError:
        raise ControlNetError(f"{where}: {field} must be a number, not {value!r}.") from None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def parse_unit(raw: Any, index: int) -> ControlUnit:
    """One unit from a client's dict (see the module docstring)."""
    where = f"ControlNet unit {index}"
    if not isinstance(raw, dict):
        raise ControlNetError(f"{where}: a unit must be a JSON object of the extension's fields, not {type(raw).__name__}.")
    value = {str(k): v for k, v in raw.items() if v is not None}
    for alias, name in (("input_image", "image"), ("mask_image", "mask"), ("lowvram", "low_vram"), ("guidance", "guidance_end")):
        if alias in value and name not in value:
            value[name] = value[alias]
    image = value.get("image")
    if isinstance(image, str) and not image.strip():
        image = None
    if isinstance(image, dict):  # {"image": ..., "mask": ...}
        value.setdefault("mask", image.get("mask"))
        image = image.get("image") or None
    unit = ControlUnit(
        enabled=_flag(value.get("enabled", True)),
        module=str(value.get("module", "none")),
        model=str(value.get("model", "None")),
        weight=_number(value.get("weight", 1.0), "weight", where),
        image=image,
        mask=value.get("mask") or None,
        resize_mode=_choice(value.get("resize_mode", "Crop and Resize"), RESIZE_MODES, "resize_mode", where, RESIZE_ALIASES),
        low_vram=_flag(value.get("low_vram", False)),
        processor_res=int(_number(value.get("processor_res", -1), "processor_res", where)),
        threshold_a=_number(value.get("threshold_a", -1), "threshold_a", where),
        threshold_b=_number(value.get("threshold_b", -1), "threshold_b", where),
        guidance_start=_number(value.get("guidance_start", 0.0), "guidance_start", where),
        guidance_end=_number(value.get("guidance_end", 1.0), "guidance_end", where),
        pixel_perfect=_flag(value.get("pixel_perfect", False)),
        control_mode=_choice(value.get("control_mode", "Balanced"), CONTROL_MODES, "control_mode", where),
        hr_option=_choice(value.get("hr_option", "Both"), HR_OPTIONS, "hr_option", where),
        save_detected_map=_flag(value.get("save_detected_map", True)),
    )
    if not 0 <= unit.weight <= MAX_WEIGHT:
        raise ControlNetError(f"{where}: weight must be between 0 and {MAX_WEIGHT:g}, not {unit.weight:g}.")
    if not 0 <= unit.guidance_start <= unit.guidance_end <= 1:
        raise ControlNetError(
            f"{where}: guidance_start and guidance_end must satisfy 0 <= start <= end <= 1, not {unit.guidance_start:g} and {unit.guidance_end:g}."
        )
    return unit


def parse_units(args: Any, unit_count: int = DEFAULT_UNIT_COUNT) -> list[ControlUnit]:
    """The enabled units of `alwayson_scripts.controlnet` (`{"args": [...]}` or a bare list). Units
    beyond `unit_count` are refused by name (A1111 drops them without a word)."""
    if isinstance(args, dict):
        args = args.get("args", [])
    if args is None:
        return []
    if not isinstance(args, list):
        raise ControlNetError(f"alwayson_scripts.controlnet.args must be a list of units, not {type(args).__name__}.")
    if len(args) > unit_count:
        raise ControlNetError(f"{len(args)} ControlNet units were sent; at most {unit_count} are allowed (setting control_net_unit_count).")
    units = [parse_unit(raw, index) for index, raw in enumerate(args)]
    return [unit for unit in units if unit.enabled]
