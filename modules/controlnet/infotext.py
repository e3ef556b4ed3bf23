"""ControlNet units in infotext: the line Easel writes (the extension's current format) and the
lines pictures carry, in the three formats the extension has written over time:

- Feb-May 2023 (to v1.1.140): one key per setting, prefixed `ControlNet` (one unit), `ControlNet-N`
  or `ControlNet N`: `Enabled`, `Module` or `Preprocessor`, `Model`, `Weight`, `Guidance Start` or
  `Starting Step`, `Guidance End` or `Ending Step`, `Resize Mode`, `Pixel Perfect`, `Control Mode`,
  `Preprocessor Parameters: (res, a, b)`.
- May-Aug 2023 (v1.1.141 on): one key, `ControlNet` or `ControlNet N`, whose value lists lowercase
  names: `preprocessor: canny, model: ..., weight: 1, starting/ending: (0, 1), resize mode: ...,
  pixel perfect: False, control mode: Balanced, preprocessor params: (512, 100, 200)`.
- Aug 2023 on (and Forge): `ControlNet N: "Module: ..., Model: ..., Weight: ..., ..."`, each field
  of the unit with its name's words capitalised (Forge adds `Hr Option`).

Reading gives each slot's settings as the unit fields `parse_unit` takes, so the values are checked
as an API unit's are; what a unit carries that Easel has no place for is named, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from modules.controlnet.units import ControlNetError, ControlUnit, parse_unit
from modules.i18n import N_

# The fields Easel writes, in the extension's order (`infotext_fields`).
WRITTEN_FIELDS = ("module", "model", "weight", "resize_mode", "processor_res", "threshold_a", "threshold_b", "guidance_start",
                  "guidance_end", "pixel_perfect", "control_mode")
# Fields of the current format that only describe how the extension ran (memory use, saving maps).
QUIET_FIELDS = frozenset({"low_vram", "save_detected_map", "enabled"})
READ_FIELDS = frozenset({*WRITTEN_FIELDS, "hr_option"})

UNKNOWN_SETTING = N_("a ControlNet unit setting Easel does not have")

UNIT_KEY = re.compile(r"ControlNet(?:[ -](\d+))?$")
OLD_KEY = re.compile(r"ControlNet(?:[ -](\d+))? (Enabled|Module|Preprocessor|Model|Weight|Guidance Start|Starting Step|Guidance End|"
                     r"Ending Step|Resize Mode|Pixel Perfect|Control Mode|Preprocessor Parameters|Guess Mode)$")
OLD_FIELDS = {"Module": "module", "Preprocessor": "module", "Model": "model", "Weight": "weight", "Guidance Start": "guidance_start",
              "Starting Step": "guidance_start", "Guidance End": "guidance_end", "Ending Step": "guidance_end", "Resize Mode": "resize_mode",
              "Pixel Perfect": "pixel_perfect", "Control Mode": "control_mode"}
MIDDLE_FIELDS = {"preprocessor": "module", "model": "model", "weight": "weight", "resize mode": "resize_mode",
                 "pixel perfect": "pixel_perfect", "control mode": "control_mode"}
# How the extension's enums print when a client sent them as enums (`str(ResizeMode.INNER_FIT)`).
ENUM_VALUES = {"ResizeMode.RESIZE": "Just Resize", "ResizeMode.INNER_FIT": "Crop and Resize", "ResizeMode.OUTER_FIT": "Resize and Fill",
               "ControlMode.BALANCED": "Balanced", "ControlMode.PROMPT": "My prompt is more important",
               "ControlMode.CONTROL": "ControlNet is more important"}
# "name: value" pairs of one unit's value; a value in parentheses keeps its commas
PAIR = re.compile(r"\s*([^:,]+?)\s*:\s*(\([^)]*\)|[^,]*)")


def display_name(name: str) -> str:
    return " ".join(word.capitalize() for word in name.split("_"))


def unit_line(values: dict[str, Any]) -> str:
    """`Module: canny, Model: ..., ...`: `values` (every WRITTEN_FIELDS name) as the extension writes them."""
    return ", ".join(f"{display_name(name)}: {values[name]}" for name in WRITTEN_FIELDS)


def is_controlnet_key(key: str) -> bool:
    return bool(UNIT_KEY.match(key) or OLD_KEY.match(key))


@dataclass(frozen=True)
class UnitIssue:
    """A part of a unit's infotext that cannot be restored: the key, the value and why."""

    key: str
    value: str
    reason: str


@dataclass
class ReadUnits:
    """The units a picture's infotext describes, by slot, and what of them cannot be used."""

    units: dict[int, ControlUnit] = field(default_factory=dict)
    issues: list[UnitIssue] = field(default_factory=list)
    lines: dict[int, tuple[str, str]] = field(default_factory=dict)  # slot -> (its key, its value), to name it


def _triple(text: str) -> list[str]:
    return [part.strip() for part in text.strip().strip("()").split(",")]


def _pairs(text: str) -> list[tuple[str, str]]:
    return [(name, value.strip()) for name, value in PAIR.findall(text.strip().strip('"'))]


def _current_format(key: str, text: str, issues: list[UnitIssue]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in _pairs(text):
        field_name = "_".join(word.lower() for word in name.split())
        if field_name in READ_FIELDS:
            values[field_name] = value
        elif field_name not in QUIET_FIELDS:
            issues.append(UnitIssue(key, f"{name}: {value}", UNKNOWN_SETTING))
    return values


def _middle_format(key: str, text: str, issues: list[UnitIssue]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in _pairs(text):
        if name in MIDDLE_FIELDS:
            values[MIDDLE_FIELDS[name]] = value
        elif name == "starting/ending":
            values["guidance_start"], values["guidance_end"] = (_triple(value) + ["0", "1"])[:2]
        elif name == "preprocessor params":
            values["processor_res"], values["threshold_a"], values["threshold_b"] = (_triple(value) + ["-1"] * 3)[:3]
        else:
            issues.append(UnitIssue(key, f"{name}: {value}", UNKNOWN_SETTING))
    return values


def read_units(params: dict[str, str], slots: int) -> ReadUnits:
    """The units of `params` (a parsed infotext) that fit Easel's `slots` unit slots."""
    read = ReadUnits()
    raw: dict[int, dict[str, Any]] = {}
    keys: dict[int, list[str]] = {}
    for key, value in params.items():
        text = str(value)
        whole = UNIT_KEY.match(key)
        old = OLD_KEY.match(key)
        if whole:
            slot = int(whole.group(1) or 0)
            middle = re.match(r'\s*"?\s*preprocessor\s*:', text) is not None
            raw.setdefault(slot, {}).update(_middle_format(key, text, read.issues) if middle else _current_format(key, text, read.issues))
            keys.setdefault(slot, []).append(key)
            read.lines[slot] = (key, text)
        elif old:
            slot, name = int(old.group(1) or 0), old.group(2)
            keys.setdefault(slot, []).append(key)
            read.lines.setdefault(slot, (key, text))
            settings = raw.setdefault(slot, {})
            if name == "Enabled":
                settings["enabled"] = text
            elif name == "Preprocessor Parameters":
                settings["processor_res"], settings["threshold_a"], settings["threshold_b"] = (_triple(text) + ["-1"] * 3)[:3]
            elif name == "Guess Mode":  # the extension replaced guess mode by this control mode
                if text.strip().lower() == "true":
                    settings.setdefault("control_mode", "ControlNet is more important")
            else:
                settings[OLD_FIELDS[name]] = text
    for slot, values in sorted(raw.items()):
        key = read.lines[slot][0]
        if slot >= slots:
            read.issues.append(UnitIssue(key, read.lines[slot][1], f"Easel has {slots} ControlNet unit slots (setting control_net_unit_count)"))
            continue
        values = {name: ENUM_VALUES.get(value, value) if isinstance(value, str) else value for name, value in values.items()}
        try:
            unit = parse_unit(values, slot)
        except ControlNetError as error:
            read.issues.append(UnitIssue(key, read.lines[slot][1], str(error)))
            continue
        if unit.enabled:
            read.units[slot] = unit
    return read
