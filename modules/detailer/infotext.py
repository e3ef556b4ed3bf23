"""ADetailer's infotext keys: what a detailed picture carries (ADetailer 25.3.0's
`ADetailerArgs.extra_params` and `AfterDetailerScript.extra_params`) and reading them back.

Writing: every running tab writes its keys, tab n (from 0) with the suffix " 2nd", " 3rd", " 4th"...
for n >= 1 (`suffix(n)` in aaaaaa/ui.py: the tab's position among all tabs sent, disabled ones
included; a disabled tab writes nothing), then "ADetailer version" once. A key is left out where
`extra_params` leaves it out (`LEFT_OUT`); values are written as ADetailer's pydantic values print:
`True`, `0.3`, `7.0`, `4` (so they are handed over as text, which Easel's infotext writer keeps).

Reading: every tab found, absent keys at their defaults (ADetailer left them out for being at the
default, or its UI would keep what it shows), including the keys of older ADetailer versions
(`OLD_LABELS`); an "ADetailer ..." key Easel does not know, or a value ADetailer would refuse, is
reported as a `TabIssue` rather than dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modules.detailer.args import ADETAILER_VERSION, NO_MODEL, DetailerArgsError, DetailerTab, check_value
from modules.i18n import N_

VERSION_KEY = "ADetailer version"
# setting -> its infotext key (ADetailer's ALL_ARGS, in its order: the order keys are written in)
LABELS = {
    "ad_model": "ADetailer model", "ad_model_classes": "ADetailer model classes", "ad_tab_enable": "ADetailer tab enable",
    "ad_prompt": "ADetailer prompt", "ad_negative_prompt": "ADetailer negative prompt", "ad_confidence": "ADetailer confidence",
    "ad_mask_filter_method": "ADetailer method to decide top k masks", "ad_mask_k": "ADetailer mask only top k",
    "ad_mask_min_ratio": "ADetailer mask min ratio", "ad_mask_max_ratio": "ADetailer mask max ratio", "ad_x_offset": "ADetailer x offset",
    "ad_y_offset": "ADetailer y offset", "ad_dilate_erode": "ADetailer dilate erode", "ad_mask_merge_invert": "ADetailer mask merge invert",
    "ad_mask_blur": "ADetailer mask blur", "ad_denoising_strength": "ADetailer denoising strength",
    "ad_inpaint_only_masked": "ADetailer inpaint only masked", "ad_inpaint_only_masked_padding": "ADetailer inpaint padding",
    "ad_use_inpaint_width_height": "ADetailer use inpaint width height", "ad_inpaint_width": "ADetailer inpaint width",
    "ad_inpaint_height": "ADetailer inpaint height", "ad_use_steps": "ADetailer use separate steps", "ad_steps": "ADetailer steps",
    "ad_use_cfg_scale": "ADetailer use separate CFG scale", "ad_cfg_scale": "ADetailer CFG scale",
    "ad_use_checkpoint": "ADetailer use separate checkpoint", "ad_checkpoint": "ADetailer checkpoint", "ad_use_vae": "ADetailer use separate VAE",
    "ad_vae": "ADetailer VAE", "ad_use_sampler": "ADetailer use separate sampler", "ad_sampler": "ADetailer sampler",
    "ad_scheduler": "ADetailer scheduler", "ad_use_noise_multiplier": "ADetailer use separate noise multiplier",
    "ad_noise_multiplier": "ADetailer noise multiplier", "ad_use_clip_skip": "ADetailer use separate CLIP skip", "ad_clip_skip": "ADetailer CLIP skip",
    "ad_restore_face": "ADetailer restore face", "ad_controlnet_model": "ADetailer ControlNet model",
    "ad_controlnet_module": "ADetailer ControlNet module", "ad_controlnet_weight": "ADetailer ControlNet weight",
    "ad_controlnet_guidance_start": "ADetailer ControlNet guidance start", "ad_controlnet_guidance_end": "ADetailer ControlNet guidance end",
}
# Keys older ADetailer versions wrote: "conf" (to 23.5, a percentage), the "/" spellings (to 23.10),
# "inpaint full" (to 23.5), "mask only top k largest" (to 24.8, the k largest by area).
OLD_LABELS = {"ADetailer conf": "ad_confidence", "ADetailer dilate/erode": "ad_dilate_erode", "ADetailer mask merge/invert": "ad_mask_merge_invert",
              "ADetailer inpaint full": "ad_inpaint_only_masked", "ADetailer use inpaint width/height": "ad_use_inpaint_width_height",
              "ADetailer mask only top k largest": "ad_mask_k"}
# Keys of ADetailer's UI that describe no setting of a tab: nothing to restore, nothing to report.
# ("ADetailer enable" per tab was written to 23.10; "enable" and "skip img2img" are its paste fields.)
QUIET_LABELS = frozenset({VERSION_KEY, "ADetailer regions", "ADetailer enable", "ADetailer skip img2img", "ADetailer tab enable", "ADetailer tap enable"})
KEY = re.compile(r"^(?P<label>ADetailer .+?)(?: (?P<n>\d+)(?:st|nd|rd|th))?$")

# extra_params' `ppop` calls: when the first setting is at that value (None: any false value), these keys go.
LEFT_OUT: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("ad_model_classes", None, ("ad_model_classes",)),
    ("ad_prompt", None, ("ad_prompt",)),
    ("ad_negative_prompt", None, ("ad_negative_prompt",)),
    ("ad_mask_k", 0, ("ad_mask_k", "ad_mask_filter_method")),
    ("ad_mask_min_ratio", 0.0, ("ad_mask_min_ratio",)),
    ("ad_mask_max_ratio", 1.0, ("ad_mask_max_ratio",)),
    ("ad_x_offset", 0, ("ad_x_offset",)),
    ("ad_y_offset", 0, ("ad_y_offset",)),
    ("ad_mask_merge_invert", "None", ("ad_mask_merge_invert",)),
    ("ad_inpaint_only_masked", None, ("ad_inpaint_only_masked_padding",)),  # "inpaint only masked: False" stays
    ("ad_use_inpaint_width_height", None, ("ad_use_inpaint_width_height", "ad_inpaint_width", "ad_inpaint_height")),
    ("ad_use_steps", None, ("ad_use_steps", "ad_steps")),
    ("ad_use_cfg_scale", None, ("ad_use_cfg_scale", "ad_cfg_scale")),
    ("ad_use_checkpoint", None, ("ad_use_checkpoint", "ad_checkpoint")),
    ("ad_use_vae", None, ("ad_use_vae", "ad_vae")),
    ("ad_use_sampler", None, ("ad_use_sampler", "ad_sampler", "ad_scheduler")),
    ("ad_scheduler", "Use same scheduler", ("ad_scheduler",)),
    ("ad_use_noise_multiplier", None, ("ad_use_noise_multiplier", "ad_noise_multiplier")),
    ("ad_use_clip_skip", None, ("ad_use_clip_skip", "ad_clip_skip")),
    ("ad_restore_face", None, ("ad_restore_face",)),
    ("ad_controlnet_model", "None", ("ad_controlnet_model", "ad_controlnet_module", "ad_controlnet_weight",
                                     "ad_controlnet_guidance_start", "ad_controlnet_guidance_end")),
    ("ad_controlnet_module", "None", ("ad_controlnet_module",)),
    ("ad_controlnet_weight", 1.0, ("ad_controlnet_weight",)),
    ("ad_controlnet_guidance_start", 0.0, ("ad_controlnet_guidance_start",)),
    ("ad_controlnet_guidance_end", 1.0, ("ad_controlnet_guidance_end",)),
)

UNKNOWN_KEY = N_("an ADetailer setting Easel does not have")
NO_MODEL_KEY = N_("this ADetailer tab has settings but no model")


@dataclass(frozen=True)
class TabIssue:
    """A part of the ADetailer infotext that cannot be restored: the key, the value and why."""

    key: str
    value: str
    reason: str


def is_detailer_key(key: str) -> bool:
    return KEY.match(key) is not None


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th... 11th, 12th, 13th, 21st."""
    if 11 <= number % 100 <= 13:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th')}"


def suffix(position: int) -> str:
    """The key suffix of the tab at `position` (from 0): none for the first, " 2nd" for the second..."""
    return "" if position == 0 else f" {ordinal(position + 1)}"


def _written(value: Any) -> str | None:
    if value is None:  # A1111's create_infotext leaves None values out
        return None
    return str(value)  # bools print True/False, floats 0.3 / 7.0, as ADetailer's pydantic values do


def tab_params(tab: DetailerTab, position: int) -> dict[str, str]:
    """The keys one tab writes (none for a disabled tab), with its position's suffix."""
    if not tab.active:
        return {}
    values = {name: getattr(tab, name) for name in LABELS}
    del values["ad_tab_enable"]  # never written
    for setting, at, gone in LEFT_OUT:
        if setting not in values:
            continue
        if (not values[setting]) if at is None else values[setting] == at:
            for name in gone:
                values.pop(name, None)
    end = suffix(position)
    return {LABELS[name] + end: text for name, value in values.items() if (text := _written(value)) is not None}


def detailer_params(tabs: list[DetailerTab]) -> dict[str, str]:
    """The infotext keys of a detailer run over `tabs` (all tabs sent, in order), or {} when none runs."""
    params: dict[str, str] = {}
    for position, tab in enumerate(tabs):
        params.update(tab_params(tab, position))
    if params:
        params[VERSION_KEY] = ADETAILER_VERSION
    return params


def _label_setting(label: str) -> str | None:
    for name, known in LABELS.items():
        if known == label:
            return name
    return OLD_LABELS.get(label)


def _read_value(label: str, name: str, value: str, number: int) -> Any:
    if label == "ADetailer conf":  # a percentage, 30 for 0.3
        try:
            percent = float(value)
        except ValueError:
            raise DetailerArgsError(f"ADetailer tab {number}: {name} must be a number, not {value!r}.") from None
        return check_value(name, percent / 100, number)
    return check_value(name, value, number)


def read_tabs(params: dict[str, str]) -> tuple[list[DetailerTab], list[TabIssue]]:
    """The tabs a parsed infotext describes (by position; a position with no keys is a disabled
    tab) and what of them cannot be restored."""
    issues: list[TabIssue] = []
    found: dict[int, dict[str, Any]] = {}
    first: dict[int, tuple[str, str]] = {}  # position -> its first key and value, to name a tab
    for key, value in params.items():
        match = KEY.match(key)
        if match is None:
            continue
        label, text = match.group("label"), str(value)
        if label in QUIET_LABELS:
            continue
        setting = _label_setting(label)
        if setting is None:
            issues.append(TabIssue(key, text, UNKNOWN_KEY))
            continue
        position = max(int(match.group("n") or 1) - 1, 0)
        first.setdefault(position, (key, text))
        try:
            found.setdefault(position, {})[setting] = _read_value(label, setting, text, position + 1)
        except DetailerArgsError as error:
            issues.append(TabIssue(key, text, str(error)))
    tabs = [DetailerTab() for _ in range(max(found, default=-1) + 1)]
    for position, settings in found.items():
        if settings.get("ad_model", NO_MODEL) == NO_MODEL:
            issues.append(TabIssue(*first[position], NO_MODEL_KEY))
            continue
        tabs[position] = DetailerTab(**settings)
    return tabs, issues
