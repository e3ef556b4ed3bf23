"""A1111's selectable scripts by `script_name`, and what /scripts and /script-info list.

A script is one row of SCRIPTS: its name as A1111 lists it (lower case), which tab it belongs to,
its arguments in A1111's order (for /script-info and for reading `script_args`), and how its
arguments turn an img2img request into the job Easel runs. A row whose job Easel cannot queue yet
(`queue` None) is not listed and answers 422 when named.

Outpainting mk2 (`scripts/outpainting_mk_2.py`) takes `[info, pixels, mask_blur, direction,
noise_q, color_variation]`; Poor man's outpainting (`scripts/poor_mans_outpainting.py`) takes
`[pixels, mask_blur, inpainting_fill, direction]`. Missing arguments take A1111's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from modules.api.errors import ApiInputError
from modules.generation.outpaint import DIRECTIONS, OutpaintRequest
from modules.generation.request import MASKED_CONTENT, Img2ImgRequest
from modules.jobs import Job
from modules.services import Services


@dataclass(frozen=True)
class ScriptArg:
    """One argument as /script-info shows it (A1111 reads these off its Gradio components)."""

    label: str | None
    value: Any
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None

    def info(self) -> dict[str, Any]:
        return {"label": self.label, "value": list(self.value) if isinstance(self.value, tuple) else self.value,
                "minimum": self.minimum, "maximum": self.maximum, "step": self.step,
                "choices": list(self.choices) if self.choices else None}


@dataclass(frozen=True)
class SelectableScript:
    name: str  # A1111's script.name: the title in lower case
    is_img2img: bool
    args: tuple[ScriptArg, ...]
    build: Callable[[Img2ImgRequest, dict[str, Any]], OutpaintRequest]
    queue: Callable[[Services, Any, str | None], Job] | None  # None: not runnable in this version

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "is_alwayson": False, "is_img2img": self.is_img2img, "args": [a.info() for a in self.args]}

    def named_args(self, values: list[Any]) -> dict[str, Any]:
        """`script_args` by argument label, A1111's defaults for the ones not given."""
        if not isinstance(values, list):
            raise ApiInputError(f"script_args of {self.name!r} must be a list, not {values!r}.")
        if len(values) > len(self.args):
            raise ApiInputError(f"{self.name!r} takes at most {len(self.args)} script_args ({', '.join(str(a.label) for a in self.args)}), not {len(values)}.")
        named = {str(arg.label): arg.value for arg in self.args}
        for arg, value in zip(self.args, values):
            if value is not None:
                named[str(arg.label)] = value
        return named


def _number(named: dict[str, Any], label: str, whole: bool = False) -> float:
    value = named[label]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and float(value) != int(value)):
        raise ApiInputError(f"Script argument {label!r} must be {'a whole number' if whole else 'a number'}, not {value!r}.")
    return int(value) if whole else float(value)


def _directions(named: dict[str, Any]) -> tuple[str, ...]:
    value = named[DIRECTION]
    chosen = [value] if isinstance(value, str) else value
    if not isinstance(chosen, (list, tuple)) or not all(isinstance(d, str) for d in chosen):
        raise ApiInputError(f"Script argument {DIRECTION!r} must be a list of left, right, up, down; not {value!r}.")
    unknown = [d for d in chosen if d.lower() not in DIRECTIONS]
    if unknown or not chosen:
        raise ApiInputError(f"Script argument {DIRECTION!r} must name one or more of left, right, up, down; not {value!r}.")
    return tuple(d.lower() for d in chosen)


def _masked_content(named: dict[str, Any]) -> int:
    value = named[MASKED]
    if isinstance(value, str) and value in MASKED_CONTENT:
        return MASKED_CONTENT.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in range(len(MASKED_CONTENT)):
        return value
    raise ApiInputError(f"Script argument {MASKED!r} must be 0-3 or one of {', '.join(MASKED_CONTENT)}; not {value!r}.")


def _mk2(base: Img2ImgRequest, named: dict[str, Any]) -> OutpaintRequest:
    return OutpaintRequest(
        base, method="Outpainting mk2", directions=_directions(named), pixels=int(_number(named, PIXELS, whole=True)),
        mask_blur=int(_number(named, BLUR, whole=True)), noise_q=_number(named, FALLOFF), color_variation=_number(named, COLOR),
    ).validate()


def _poor_mans(base: Img2ImgRequest, named: dict[str, Any]) -> OutpaintRequest:
    return OutpaintRequest(
        base, method="Poor man's outpainting", directions=_directions(named), pixels=int(_number(named, PIXELS, whole=True)),
        mask_blur=int(_number(named, BLUR, whole=True)), inpainting_fill=_masked_content(named),
    ).validate()


def _queue_outpaint(services: Services, request: OutpaintRequest, job_id: str | None) -> Job:
    return services.generation.submit_outpaint(request, job_id=job_id)


PIXELS, BLUR, DIRECTION, MASKED = "Pixels to expand", "Mask blur", "Outpainting direction", "Masked content"
FALLOFF, COLOR = "Fall-off exponent (lower=higher detail)", "Color variation"
_DIRECTION_ARG = ScriptArg(DIRECTION, DIRECTIONS, choices=DIRECTIONS)

SCRIPTS: dict[str, SelectableScript] = {
    script.name: script
    for script in (
        SelectableScript("outpainting mk2", True, (
            ScriptArg(None, "Recommended settings: Sampling Steps: 80-100, Sampler: Euler a, Denoising strength: 0.8"),
            ScriptArg(PIXELS, 128, 8, 256, 8), ScriptArg(BLUR, 8, 0, 64, 1), _DIRECTION_ARG,
            ScriptArg(FALLOFF, 1.0, 0.0, 4.0, 0.01), ScriptArg(COLOR, 0.05, 0.0, 1.0, 0.01),
        ), _mk2, _queue_outpaint),
        SelectableScript("poor man's outpainting", True, (
            ScriptArg(PIXELS, 128, 8, 256, 8), ScriptArg(BLUR, 4, 0, 64, 1),
            ScriptArg(MASKED, "fill", choices=MASKED_CONTENT), _DIRECTION_ARG,
        ), _poor_mans, _queue_outpaint),
    )
}


def available_scripts(is_img2img: bool) -> list[SelectableScript]:
    return [s for s in SCRIPTS.values() if s.is_img2img == is_img2img and s.queue is not None]


def find_script(name: str, is_img2img: bool, others: tuple[str, ...] = ()) -> SelectableScript:
    """The runnable script `name` (any case) of the tab; ApiInputError (422) otherwise, as A1111.
    `others`: the extensions' script names, for the list of choices in that message."""
    script = SCRIPTS.get(name.strip().lower())
    tab = "img2img" if is_img2img else "txt2img"
    if script is None or script.is_img2img != is_img2img:
        choices = ", ".join([repr(s.name) for s in available_scripts(is_img2img)] + [repr(o) for o in others]) or "none"
        raise ApiInputError(f"Script {name!r} not found for {tab} (available: {choices}).")
    if script.queue is None:
        raise ApiInputError(f"Script {name!r} is not available in this version of Easel's API yet.")
    return script


def extension_script_info(script: Any, tab: str, upscalers: list[str] | None = None) -> dict[str, Any]:
    """/script-info's entry for an extension's script (modules.extensions.api.Script) on `tab`; an
    upscaler control lists `upscalers` (the installed ones) as its choices."""
    args = [ScriptArg(None if c.kind == "note" else c.label, c.default, c.minimum, c.maximum, c.step,
                      tuple(upscalers or ()) if c.kind == "upscaler" else c.choices).info() for c in script.controls]
    return {"name": script.name, "is_alwayson": script.always_on, "is_img2img": tab == "img2img", "args": args}
