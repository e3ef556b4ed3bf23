"""The axes of the X/Y/Z plot and A1111's value syntax.

Values are comma separated (a value holding a comma goes in double quotes). Number axes also take
ranges: `1-5` (1, 2, 3, 4, 5), `1-10 (+3)` (1, 4, 7, 10), `10-1 (-3)`, `1-10 [4]` (4 values evenly
from 1 to 10), with decimals for decimal axes (`5-8 (+1.5)`, `0.2-0.8 [4]`).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

NUMBER = r"[+-]?\s*\d+(?:\.\d*)?"
STEP_RANGE = re.compile(rf"^\s*({NUMBER})\s*-\s*({NUMBER})\s*\(\s*({NUMBER})\s*\)\s*$")
COUNT_RANGE = re.compile(rf"^\s*({NUMBER})\s*-\s*({NUMBER})\s*\[\s*(\d+)\s*\]\s*$")
PLAIN_RANGE = re.compile(rf"^\s*({NUMBER})\s*-\s*({NUMBER})\s*$")
MAX_VALUES = 1000


def split_values(text: str) -> list[str]:
    """The comma-separated values, stripped; empty ones dropped."""
    row = next(csv.reader(io.StringIO(text.strip()), skipinitialspace=True), [])
    return [value.strip() for value in row if value.strip()]


def _number(text: str) -> float:
    return float(text.replace(" ", ""))


def expand_numbers(text: str, whole: bool) -> list[float]:
    """`text`'s values with ranges expanded; ValueError naming a value that is not a number."""
    values: list[float] = []
    for item in split_values(text):
        if match := STEP_RANGE.match(item):
            start, end, step = (_number(g) for g in match.groups())
            if step == 0 or (end - start) * step < 0:
                raise ValueError(f"the range {item!r} never reaches its end (step {step:g})")
            count = int((end - start) / step + 1e-9) + 1
            values += [start + i * step for i in range(count)]
        elif match := COUNT_RANGE.match(item):
            start, end = _number(match.group(1)), _number(match.group(2))
            count = int(match.group(3))
            if count < 1:
                raise ValueError(f"the range {item!r} asks for no values")
            values += [start] if count == 1 else [start + (end - start) * i / (count - 1) for i in range(count)]
        elif (match := PLAIN_RANGE.match(item)) and whole:
            start, end = int(_number(match.group(1))), int(_number(match.group(2)))
            values += list(range(start, end + 1)) if end >= start else list(range(start, end - 1, -1))
        else:
            try:
                values.append(_number(item))
            except ValueError:
                raise ValueError(f"{item!r} is not a number") from None
        if len(values) > MAX_VALUES:
            raise ValueError(f"more than {MAX_VALUES} values")
    return [round(v) for v in values] if whole else [round(v, 6) for v in values]


@dataclass(frozen=True)
class Axis:
    """One axis type: its label, how its text becomes values, and how a value changes the request."""

    label: str
    parse: Callable[[str, Any], list[Any]]  # (text, run) -> values; ValueError/UserError when bad
    apply: Callable[[Any, Any, list[Any]], Any]  # (request, value, all the axis's values) -> request
    fmt: Callable[[Any], str] = lambda value: str(value)
    switches_model: bool = False  # checkpoint/VAE: the run switches before generating


def _numbers(field_name: str, whole: bool, label: str) -> Axis:
    return Axis(
        label,
        lambda text, run: expand_numbers(text, whole),
        lambda request, value, values: replace(request, **{field_name: int(value) if whole else float(value)}),
        (lambda v: f"{label}: {int(v)}") if whole else (lambda v: f"{label}: {v:g}"),
    )


def _names(kind: str, field_name: str | None, label: str, switches_model: bool = False) -> Axis:
    def parse(text: str, run) -> list[str]:
        return [run.canonical(kind, value) for value in split_values(text)]

    def apply(request, value, values):
        return replace(request, **{field_name: value}) if field_name else request

    return Axis(label, parse, apply, lambda value: str(value), switches_model)


def _prompt_sr(text: str, run) -> list[str]:
    values = split_values(text)
    if not values:
        return values
    search = values[0]
    if search not in run.request.prompt and search not in run.request.negative_prompt:
        raise ValueError(f"{search!r} (the first value, the one replaced) is not in the prompt or the negative prompt")
    return values


def _replace_prompt(request, value: str, values: list[str]):
    """A1111's Prompt S/R: the first value is what is searched for; each value replaces it."""
    search = values[0]
    return replace(request, prompt=request.prompt.replace(search, value), negative_prompt=request.negative_prompt.replace(search, value))


def _size(text: str, run) -> list[tuple[int, int]]:
    sizes = []
    for value in split_values(text):
        match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", value)
        if not match:
            raise ValueError(f"size {value!r} must be written WIDTHxHEIGHT, like 512x768")
        sizes.append((int(match.group(1)), int(match.group(2))))
    return sizes


def _has_units(run, label: str) -> None:
    if not getattr(run.request, "control_units", None):
        raise ValueError(f"the {label} axis needs an enabled ControlNet unit")


def _control_number(field_name: str, label: str) -> Axis:
    """A number of every enabled ControlNet unit (the extension's X/Y/Z axes)."""
    def parse(text: str, run) -> list[float]:
        _has_units(run, label)
        return expand_numbers(text, False)

    def apply(request, value, values):
        return replace(request, control_units=[replace(unit, **{field_name: float(value)}) for unit in request.control_units])

    return Axis(label, parse, apply, lambda v: f"{label}: {v:g}")


def _control_models(text: str, run) -> list[str]:
    _has_units(run, "[ControlNet] Model")
    return split_values(text)


AXES: dict[str, Axis | None] = {
    "Nothing": None,
    "Seed": _numbers("seed", True, "Seed"),
    "Var. seed": _numbers("subseed", True, "Var. seed"),
    "Var. strength": _numbers("subseed_strength", False, "Var. strength"),
    "Steps": _numbers("steps", True, "Steps"),
    "CFG Scale": _numbers("cfg_scale", False, "CFG Scale"),
    "Prompt S/R": Axis("Prompt S/R", _prompt_sr, _replace_prompt),
    "Sampler": _names("sampler", "sampler_name", "Sampler"),
    "Schedule type": _names("schedule", "scheduler", "Schedule type"),
    "Checkpoint name": _names("checkpoint", "checkpoint", "Checkpoint", switches_model=True),
    "VAE": _names("vae", "vae", "VAE", switches_model=True),
    "Clip skip": _numbers("clip_skip", True, "Clip skip"),
    "Denoising": _numbers("denoising_strength", False, "Denoising"),
    "Size": Axis("Size", _size, lambda request, size, values: replace(request, width=size[0], height=size[1]), lambda s: f"{s[0]}x{s[1]}"),
    "[ControlNet] Weight": _control_number("weight", "[ControlNet] Weight"),
    "[ControlNet] Guidance End": _control_number("guidance_end", "[ControlNet] Guidance End"),
    "[ControlNet] Model": Axis("[ControlNet] Model", _control_models,
                               lambda request, value, values: replace(request, control_units=[replace(u, model=value) for u in request.control_units])),
}
