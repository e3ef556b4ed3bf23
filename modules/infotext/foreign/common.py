"""Shared pieces of the metadata readers: the result type, the reader protocol, JSON and number helpers, and the A1111 infotext synthesised from any tool's fields."""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from typing import Any, Protocol

from modules.infotext.create import CORE_KEYS, HASH_LENGTH, TRAILING_KEYS, format_value, join_infotext
from modules.infotext.parse import MIN_PARAMETER_MATCHES, MISSING_DEFAULTS, parse_infotext

# Not a text chunk: the image's (width, height), which NovelAI's reading needs (A1111 takes Size
# from the image). Readers get it in ``info`` under this key.
IMAGE_SIZE_KEY = "easel.image_size"
NO_METADATA_NOTE = "This image carries no generation parameters."
_FOOOCUS_SCHEMES = ("fooocus", "a1111")
_EXIF_IFD, _USER_COMMENT, _MAKER_NOTE = 0x8769, 0x9286, 0x927C
_COMFY_EXIF_TAG = re.compile(r"^(\w+):\s*([\[{].*)$", re.DOTALL)  # ComfyUI: 0x0110 "prompt:{...}", 0x010F...
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_EXIF_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, KeyError, IndexError, TypeError)

# ComfyUI/Fooocus sampler and scheduler names -> A1111 labels (names without one are kept as written).
COMFY_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive", "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE", "dpmpp_3m_sde": "DPM++ 3M SDE", "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "ddim": "DDIM", "uni_pc": "UniPC", "lcm": "LCM",
}
COMFY_SCHEDULERS = {
    "normal": "Normal", "karras": "Karras", "exponential": "Exponential", "sgm_uniform": "SGM Uniform",
    "simple": "Simple", "ddim_uniform": "DDIM", "beta": "Beta", "kl_optimal": "KL Optimal",
}
# InvokeAI scheduler names -> A1111 sampler labels; a "_k" suffix means Karras sigmas.
INVOKEAI_SCHEDULERS = {
    "ddim": "DDIM", "lms": "LMS", "heun": "Heun", "euler": "Euler", "euler_a": "Euler a", "kdpm_2": "DPM2",
    "kdpm_2_a": "DPM2 a", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_sde": "DPM++ SDE",
    "unipc": "UniPC", "lcm": "LCM",
}


@dataclass
class ImageParameters:
    """What an image says about how it was made.

    source: "A1111", "ComfyUI", "InvokeAI", "NovelAI", "Fooocus" or "unknown". params: settings
    under A1111's infotext keys ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed",
    "Size-1"/"Size-2", "Model", "Model hash", "Denoising strength"...), values as text; the
    prompts are in their own fields. raw: every text chunk as found. infotext: an A1111 infotext
    made from the fields (the image's own for A1111), None when there is nothing to send."""

    source: str
    prompt: str = ""
    negative_prompt: str = ""
    params: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    infotext: str | None = None
    note: str = ""


class MetadataReader(Protocol):
    """One tool's format: ``read`` answers None when ``info`` is not (readable) in it."""

    name: str

    def read(self, info: dict[str, Any]) -> ImageParameters | None: ...


# --- small helpers shared by the readers ---------------------------------------------------------


def text_chunks(info: dict[str, Any]) -> dict[str, str]:
    """The text items of ``info`` (PNG chunks, decoded Exif texts, a JPEG/GIF comment)."""
    found = {key: str(value) for key, value in info.items() if isinstance(value, str)}
    comment = info.get("comment")
    if isinstance(comment, bytes) and comment:
        found["comment"] = comment.decode("utf-8", errors="replace")
    return found


def _json(text: Any) -> Any:
    """Parsed JSON, or None for anything that is not a JSON text."""
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _json_object(text: Any) -> dict[str, Any] | None:
    value = _json(text)
    return value if isinstance(value, dict) else None


def _number(value: Any) -> str | None:
    """A number as A1111 writes it ("7" for 7.0), from a number or numeric text; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() if _NUMBER.fullmatch(value.strip()) else None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return format_value(value)
    return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _file_stem(name: Any) -> str | None:
    """A1111's "Model" is the file stem; other tools may write "sub\\dir/name.safetensors"."""
    text = _text(name)
    return PureWindowsPath(text).stem if text else None


def _short_hash(value: Any) -> str | None:
    """A1111's 10-digit sha256 ("sha256:" prefix allowed); other hashes (blake3) do not map."""
    text = _text(value)
    if text and text.lower().startswith("sha256:"):
        text = text[len("sha256:"):]
    return text[:HASH_LENGTH].lower() if text and re.fullmatch(r"[0-9a-fA-F]{10,64}", text) else None


def _put(params: dict[str, str], key: str, value: str | None) -> None:
    if value is not None:
        params[key] = value


def _put_size(params: dict[str, str], width: Any, height: Any) -> None:
    w, h = _number(width), _number(height)
    if w is not None and h is not None and w.isdigit() and h.isdigit():
        params["Size-1"], params["Size-2"] = w, h


def _put_sampler(params: dict[str, str], sampler: Any, scheduler: Any, samplers: dict[str, str],
                 schedulers: dict[str, str]) -> None:
    """A foreign sampler/scheduler pair under A1111's labels; unknown names kept as written."""
    name, schedule = _text(sampler), _text(scheduler)
    if name:
        params["Sampler"] = samplers.get(name.lower(), name)
    if schedule:
        params["Schedule type"] = schedulers.get(schedule.lower(), schedule)


def synthesise_infotext(prompt: str, negative_prompt: str, params: dict[str, str]) -> str | None:
    """An A1111 infotext for the fields (keys in A1111's order; Size-1/-2 joined to "Size").
    Fewer than 3 parameters are left out: A1111's parser would take them for prompt text."""
    if not prompt and not negative_prompt and not params:
        return None
    merged: dict[str, str] = {}
    for key, value in params.items():
        if key.endswith("-1") and key[:-2] + "-2" in params:
            merged[key[:-2]] = f"{value}x{params[key[:-2] + '-2']}"
        elif not (key.endswith("-2") and key[:-2] + "-1" in params):
            merged[key] = value
    ordered = {key: merged.pop(key) for key in CORE_KEYS if key in merged}
    trailing = {key: merged.pop(key) for key in TRAILING_KEYS if key in merged}
    line = ordered | merged | trailing
    if len(line) < MIN_PARAMETER_MATCHES:  # A1111 would read so short a line as part of the prompt
        if not prompt and not negative_prompt:
            return None
        line = {}
    return join_infotext(prompt, negative_prompt, line)


def _result(source: str, info: dict[str, Any], prompt: str, negative: str, params: dict[str, str]) -> ImageParameters:
    return ImageParameters(source, prompt, negative, params, text_chunks(info), synthesise_infotext(prompt, negative, params))


# --- A1111 and Fooocus ---------------------------------------------------------------------------


def _a1111_fields(text: str) -> tuple[str, str, dict[str, str]]:
    """parse_infotext, less the prompts and the defaults the text did not write."""
    params = parse_infotext(text)
    prompt, negative = params.pop("Prompt", ""), params.pop("Negative prompt", "")
    for key, default in MISSING_DEFAULTS.items():
        if params.get(key) == default and f"{key}:" not in text:
            del params[key]
    return prompt, negative, params


