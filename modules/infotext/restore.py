"""Restoring a picture's parameters: the values Easel applies, and a sentence for every one it cannot.

`parse_infotext` reads every ``Key: value`` of a picture. Restoring them (Send to txt2img / img2img /
outpainting, the paste button, the API's `infotext` field) converts the values Easel has a field for
and names every other setting with its value and the reason, so a reproduced picture never lacks a
setting without the user being told:

1. a value that does not convert ("Steps: many") or names something Easel does not have (a sampler,
   a schedule type, an upscaler) is "not applied", with the reason;
2. a setting of an extension Easel does not have (ADetailer, Regional Prompter, Dynamic Prompts, ...)
   is "not applied", naming the extension; ControlNet units (every format the extension wrote, see
   modules/controlnet/infotext.py) become `fields["control_units"]` (slot -> unit) where the target
   takes them, and what of a unit cannot be used is named;
3. any other key Easel has no setting for is "not applied"; keys that hold A1111's default (which
   A1111's reader fills in when a picture leaves them out) and keys that only describe the picture
   (Version, Init image hash, ...) are not settings and are not listed;
4. a setting the target cannot take (an inpainting setting sent to txt2img) is listed with where it
   applies; the hires pass's settings are not listed when the picture goes to img2img (the pass is
   already in the picture).

The checkpoint, VAE, LoRAs and embeddings a picture names are looked up in the model folders by the
caller (`modules/picture_restore.py`), which adds what it cannot find to the same list.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Collection

from modules.controlnet.infotext import is_controlnet_key, read_units
from modules.controlnet.units import DEFAULT_UNIT_COUNT
from modules.detailer.args import DetailerRequest
from modules.detailer.infotext import is_detailer_key, read_tabs
from modules.errors import UserError
from modules.generation.request import HIRES_UPSCALERS, MASK_MODES, MASKED_CONTENT, RNG_SOURCES
from modules.i18n import N_
from modules.infotext.legacy import LEGACY_HYPERNET_KEYS, before_a1111_1_8, legacy_hypernet_tag
from modules.infotext.parse import MISSING_DEFAULTS
from modules.regions.infotext import KEYS as REGIONAL_INFOTEXT_KEYS
from modules.regions.infotext import OLD_KEYS as REGIONAL_OLD_KEYS
from modules.regions.infotext import parse_regional_infotext
from modules.sampling.sampler_table import parse_sampler_name
from modules.sampling.schedules import find_schedule


@dataclass(frozen=True)
class NotApplied:
    """One setting of a picture that restoring it did not apply: its key, value and why."""

    key: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.key}: {self.value} ({self.reason})"


@dataclass
class Restored:
    """What restoring a picture's parameters gives: field values for the target, and the rest."""

    fields: dict[str, Any] = field(default_factory=dict)
    not_applied: list[NotApplied] = field(default_factory=list)



def not_applied_sentence(items: list[NotApplied]) -> str:
    """"Not applied: key: value (reason); ..." for a log line or an API error; "" when none."""
    return "Not applied: " + "; ".join(str(item) for item in items) + "." if items else ""


# 1. converters: text -> value, or ValueError with the reason -------------------------------------


def _to_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)  # "20.0" from a client that writes floats
    except ValueError:
        raise ValueError("not a whole number") from None
    if not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


def _to_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _to_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("not True or False")
    return lowered == "true"


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise ValueError(f"not one of {', '.join(choices)}")
        return text
    return convert


def _choice_index(choices: tuple[str, ...]) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if text not in choices:
            raise ValueError(f"not one of {', '.join(choices)}")
        return choices.index(text)
    return convert


def _sampler(text: str) -> str:
    try:
        parse_sampler_name(text)
    except UserError:
        raise ValueError(f"unknown sampler '{text}'") from None
    return text


def _schedule(text: str) -> str:
    try:
        return find_schedule(text).label
    except UserError:
        raise ValueError(f"unknown schedule type '{text}'") from None


def _same_or(convert: Callable[[str], str]) -> Callable[[str], str | None]:
    """"Use same sampler" / "Use same scheduler" (A1111's defaults) -> None (the first pass's)."""
    def converted(text: str) -> str | None:
        return None if text.startswith("Use same") else convert(text)
    return converted


# 2. the tables -----------------------------------------------------------------------------------

Table = dict[str, tuple[str, Callable[[str], Any]]]  # infotext key -> (request field, converter)

# What txt2img and img2img take (GenerationRequest / Img2ImgRequest). "Hires upscaler" is checked
# against the upscalers this Easel has when the table is used (restore_request).
REQUEST_FIELDS: Table = {
    "Prompt": ("prompt", str),
    "Negative prompt": ("negative_prompt", str),
    "Steps": ("steps", _to_int),
    "Sampler": ("sampler_name", _sampler),
    "Schedule type": ("scheduler", _schedule),
    "CFG scale": ("cfg_scale", _to_float),
    "Seed": ("seed", _to_int),
    "Size-1": ("width", _to_int),
    "Size-2": ("height", _to_int),
    "Variation seed": ("subseed", _to_int),
    "Variation seed strength": ("subseed_strength", _to_float),
    "Seed resize from-1": ("seed_resize_from_w", _to_int),
    "Seed resize from-2": ("seed_resize_from_h", _to_int),
    "Clip skip": ("clip_skip", _to_int),
    "ENSD": ("eta_noise_seed_delta", _to_int),
    "RNG": ("rng_source", _one_of(RNG_SOURCES)),
    "Tiling": ("tiling", _to_bool),
    "Eta": ("eta", _to_float),
    "Eta DDIM": ("eta", _to_float),
    "Sigma noise": ("s_noise", _to_float),
    "Denoising strength": ("denoising_strength", _to_float),
    "Mask blur": ("mask_blur", _to_int),
    "Mask blur X": ("mask_blur_x", _to_int),
    "Mask blur Y": ("mask_blur_y", _to_int),
    "Mask mode": ("inpainting_mask_invert", _choice_index(MASK_MODES)),
    "Masked content": ("inpainting_fill", _choice_index(MASKED_CONTENT)),
    "Inpaint area": ("inpaint_full_res", lambda text: _choice_index(("Whole picture", "Only masked"))(text) == 1),
    "Masked area padding": ("inpaint_full_res_padding", _to_int),
    "Noise multiplier": ("initial_noise_multiplier", _to_float),
    "Hires upscale": ("hr_scale", _to_float),
    "Hires resize-1": ("hr_resize_x", _to_int),
    "Hires resize-2": ("hr_resize_y", _to_int),
    "Hires steps": ("hr_second_pass_steps", _to_int),
    "Hires upscaler": ("hr_upscaler", str),
    "Hires sampler": ("hr_sampler_name", _same_or(_sampler)),
    "Hires schedule type": ("hr_scheduler", _same_or(_schedule)),
    "Refiner": ("refiner_checkpoint", str),
    "Refiner switch at": ("refiner_switch_at", _to_float),
    "Refiner switch by sampling steps": ("refiner_by_steps", _to_bool),
    "Hires prompt": ("hr_prompt", str),
    "Hires negative prompt": ("hr_negative_prompt", str),
}
HIRES_KEYS = ("Hires upscale", "Hires resize-1", "Hires upscaler", "Hires steps")
HIRES_FIELDS = frozenset(name for key, (name, _) in REQUEST_FIELDS.items() if key.startswith("Hires"))
# Fields only img2img / inpainting take, for the reason a txt2img restore gives.
IMG2IMG_FIELDS = frozenset({"mask_blur", "mask_blur_x", "mask_blur_y", "inpainting_mask_invert", "inpainting_fill",
                            "inpaint_full_res", "inpaint_full_res_padding", "initial_noise_multiplier"})

# What Send to outpainting restores (OutpaintRequest fields besides `base`).
OUTPAINT_FIELDS: Table = {
    "Outpaint method": ("method", str),
    "Outpaint directions": ("directions", lambda text: tuple(text.lower().split())),
    "Outpaint pixels": ("pixels", _to_int),
    "Outpaint fall-off exponent": ("noise_q", _to_float),
    "Outpaint color variation": ("color_variation", _to_float),
    "Mask blur": ("mask_blur", _to_int),
    "Masked content": ("inpainting_fill", _choice_index(MASKED_CONTENT)),
}

# Keys the caller looks up in the model folders, and keys that describe the picture, not a setting.
LOOKED_UP_KEYS = frozenset({"Model", "Model hash", "VAE", "VAE hash", "Lora hashes", "TI hashes"})
# The Dynamic Prompts template a picture's prompt was drawn from describes the job, not this picture:
# its own prompt is the drawn one, and restoring it reproduces the picture.
DESCRIPTIVE_KEYS = frozenset({"Version", "User", "Init image hash", "Hashes", "Template", "Negative Template"})
SIZE_KEYS = ("Size", "Hires resize", "Seed resize from")  # parse_infotext splits a WxH value into Key-1, Key-2

# Settings of A1111 that Easel does not have, with the reason a user reads.
UNSUPPORTED_KEYS: dict[str, str] = {
    "Image CFG scale": "instruct-pix2pix models are not supported",
    "Conditional mask weight": "inpainting conditioning mask strength is not supported",
    "Face restoration": "face restoration is not part of Easel yet",
    "Token merging ratio": "token merging is not supported",
    "Token merging ratio hr": "token merging is not supported",
    "FP8 weight": "fp8 weights are not supported",
    "Cache FP16 weight for LoRA": "fp8 weights are not supported",
    "Emphasis": "Easel implements A1111's Original emphasis only",
    "Hires checkpoint": "Easel's hires pass uses the first pass's checkpoint",
    "VAE Encoder": "Easel encodes with the full VAE",
    "VAE Decoder": "Easel decodes with the full VAE",
    "Pad conds": "padding prompts to the same length is not an option in Easel",
    "NGMS": "negative guidance minimum sigma is not supported",
    "SGM noise multiplier": "SGM noise multiplier is not supported",
    "Schedule max sigma": "custom sigma ranges are not supported",
    "Schedule min sigma": "custom sigma ranges are not supported",
    "Schedule rho": "a custom rho is not supported",
    "Sigma churn": "sigma churn is not supported",
    "Sigma tmin": "sigma churn is not supported",
    "Sigma tmax": "sigma churn is not supported",
    "Discard penultimate sigma": "this option is not supported",
    "Downcast alphas_cumprod": "this option is not supported",
    "Hires refiner": "the pass the refiner takes part in is a setting (hires_fix_refiner_pass)",
    "Script": "scripts are not restored from a picture: pick it in the Script menu",
}

# Extensions' settings: a pattern their keys match -> the extension's name.
EXTENSION_KEYS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern), name) for pattern, name in (
    (r"Hypernet\b", "hypernetworks"),
    (r"Ultimate SD upscale\b", "Ultimate SD upscale"),
    (r"SD upscale\b", "the SD upscale script"),
    (r"(Dynamic thresholding|Mimic scale)\b", "Dynamic Thresholding"),
    (r"Tiled (Diffusion|VAE)\b", "Tiled Diffusion"),
    (r"FreeU\b", "FreeU"),
    (r"Kohya Hires\.fix\b", "Kohya Hires.fix"),
    (r"Style Selector\b", "Style Selector"),
    (r"(Module \d|Distilled CFG Scale|Diffusion in Low Bits)$", "Forge"),
))

REGIONAL_KEYS = frozenset({*REGIONAL_INFOTEXT_KEYS, *REGIONAL_OLD_KEYS})
REGIONAL_ELSEWHERE = N_("a Regional Prompter setting: Send to txt2img or img2img restores it")
DETAILER_ELSEWHERE = N_("an ADetailer setting: Send to txt2img or img2img restores it")
DETAILER_QUIET = frozenset({"ADetailer version", "ADetailer regions"})
CONTROLNET_ELSEWHERE = N_("a ControlNet unit: Send to txt2img or img2img restores it; the API takes units with their image in "
                           "alwayson_scripts.controlnet")

SCRIPT_KEYS = re.compile(r"(Fixed )?[XYZ] (Type|Values)$")  # what A1111's X/Y/Z plot writes on its grid


def _is_default(key: str, value: str) -> bool:
    return key in MISSING_DEFAULTS and value == MISSING_DEFAULTS[key]


def why_not(key: str) -> str:
    """Why Easel has no setting for `key` (an A1111 setting it lacks, an extension's, or unknown)."""
    if key in UNSUPPORTED_KEYS:
        return UNSUPPORTED_KEYS[key]
    if key in SIZE_KEYS:
        return "not a size written as WIDTHxHEIGHT"
    if SCRIPT_KEYS.match(key):
        return "X/Y/Z plot settings are not restored from a picture: choose X/Y/Z plot in the Script menu"
    for pattern, extension in EXTENSION_KEYS:
        if pattern.match(key):
            return f"a setting of {extension}, which Easel does not have"
    if key.startswith("Outpaint "):
        return "an outpainting setting: Send to outpainting restores it"
    return "Easel has no setting by this name"


# 3. restoring -------------------------------------------------------------------------------------


def restore_request(
    params: dict[str, str],
    settable: Collection[str],
    *,
    upscalers: Collection[str] = HIRES_UPSCALERS,
    hires_in_picture: bool = False,
) -> Restored:
    """Request field values for `params` (from parse_infotext) that a target can set, and every
    other setting as NotApplied.

    settable: the field names the target takes (a tab's fields, an API model's fields).
    upscalers: the hires upscalers this Easel has. hires_in_picture: the target works on the picture
    itself (img2img, inpaint), so the hires pass's settings are done, not dropped: they are left out
    quietly, and so is the hires pass's denoising strength.
    `fields["enable_hr"]` says whether the picture had a hires pass (when the target takes it)."""
    restored = Restored()
    hires = any(key in params for key in HIRES_KEYS)
    if "enable_hr" in settable and not hires_in_picture:
        restored.fields["enable_hr"] = hires
    for key, raw in params.items():
        value = str(raw)
        if key in LEGACY_HYPERNET_KEYS:
            continue  # the prompt gets the tag (below)
        if is_controlnet_key(key):
            if "control_units" not in settable:
                restored.not_applied.append(NotApplied(key, value, CONTROLNET_ELSEWHERE))
            continue
        if key in REGIONAL_KEYS:
            if "regional" not in settable:
                restored.not_applied.append(NotApplied(key, value, REGIONAL_ELSEWHERE))
            continue
        if is_detailer_key(key):
            if "detailer" not in settable and key not in DETAILER_QUIET:
                restored.not_applied.append(NotApplied(key, value, DETAILER_ELSEWHERE))
            continue
        if key not in REQUEST_FIELDS:
            if key not in LOOKED_UP_KEYS and key not in DESCRIPTIVE_KEYS and not _is_default(key, value):
                restored.not_applied.append(NotApplied(key, value, why_not(key)))
            continue
        name, convert = REQUEST_FIELDS[key]
        if hires_in_picture and (name in HIRES_FIELDS or (hires and name == "denoising_strength")):
            continue
        if name not in settable:
            if not _is_default(key, value):
                restored.not_applied.append(NotApplied(key, value, _where_it_applies(name)))
            continue
        try:
            converted = convert(value)
        except (ValueError, OverflowError) as error:
            restored.not_applied.append(NotApplied(key, value, str(error)))
            continue
        if name == "hr_upscaler" and converted not in upscalers:
            restored.not_applied.append(NotApplied(key, value, f"no upscaler named {value} here; Easel has {', '.join(upscalers)}"))
            continue
        restored.fields[name] = converted
    if "refiner_checkpoint" in restored.fields and "refiner_by_steps" in settable and "refiner_by_steps" not in restored.fields \
            and before_a1111_1_8(params.get("Version", "")):
        restored.fields["refiner_by_steps"] = True  # A1111 switched by sampling steps until 1.8.0
    tag = legacy_hypernet_tag(params)
    if tag is not None and "prompt" in restored.fields:
        restored.fields["prompt"] = str(restored.fields["prompt"]) + tag  # as A1111's paste appends it
    if "regional" in settable:
        regional = parse_regional_infotext(params)
        if regional is not None and regional.active:
            restored.fields["regional"] = regional
    if "detailer" in settable:
        tabs, tab_issues = read_tabs(params)
        if any(tab.active for tab in tabs):
            restored.fields["detailer"] = DetailerRequest(enabled=True, tabs=tabs)
        restored.not_applied += [NotApplied(issue.key, issue.value, issue.reason) for issue in tab_issues]
    if "control_units" in settable:
        units = read_units(params, DEFAULT_UNIT_COUNT)
        if units.units:
            restored.fields["control_units"] = units.units
        restored.not_applied += [NotApplied(issue.key, issue.value, issue.reason) for issue in units.issues]
    return restored


def _where_it_applies(name: str) -> str:
    if name in IMG2IMG_FIELDS:
        return "an img2img / inpaint setting: send the picture to img2img or inpaint to use it"
    if name in HIRES_FIELDS:
        return "a hires fix setting: txt2img's hires fix uses it"
    return "this tab has no such setting"


def restore_outpaint(params: dict[str, str]) -> Restored:
    """OutpaintRequest field values (besides `base`) for a picture that was outpainted; nothing for
    one that was not (its "Mask blur" is an inpainting setting)."""
    restored = Restored()
    if "Outpaint method" not in params:
        return restored
    for key, (name, convert) in OUTPAINT_FIELDS.items():
        if key not in params:
            continue
        try:
            restored.fields[name] = convert(str(params[key]))
        except (ValueError, OverflowError) as error:
            restored.not_applied.append(NotApplied(key, str(params[key]), str(error)))
    return restored
