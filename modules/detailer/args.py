"""ADetailer's arguments: the tabs a client sends in `alwayson_scripts.ADetailer`, checked as
ADetailer 25.3.0 checks them (`ADetailerArgs` in its adetailer/args.py), and the per-region rules
for prompts and seeds (its scripts/!adetailer.py).

The forms clients send (`parse_alwayson`):

- `{"args": [...]}` (the `alwayson_scripts` value) or the bare list;
- `[tab, ...]`, `[enable, tab, ...]`, `[enable, skip_img2img, tab, ...]`: a bool first is the enable
  flag (else enabled), a bool second is "skip img2img" (used only with an init image). Every other
  item that is not a dict is dropped, as ADetailer drops it; each dict is one tab;
- webuiapi 0.9.17 sends `[True, tab, ...]`, or `[False]` to turn the detailer off, and its tabs
  carry `ad_mask_k_largest` (ADetailer up to 24.8); that key is read as `ad_mask_k` with the filter
  method "Area" (ADetailer 24.9+ refuses it, so webuiapi's tabs are silently skipped there).

Where Easel differs on purpose (ADetailer prints a ValidationError, skips that tab and numbers the
tabs after it one lower; a detailer whose only tab is refused silently does nothing):

- a tab with a key ADetailer does not have, or a value it refuses, is refused with a
  `DetailerArgsError` naming the tab ("ADetailer tab 2", counting the dicts from 1), the key and
  what is allowed: Easel never drops a setting without a word. Every tab is checked, disabled ones
  too; nothing is checked when the enable flag is false (ADetailer then reads nothing either);
- whole numbers only for integer settings (pydantic 1 would cut 4.7 to 4), numbers never as
  true/false, and the two choice settings match without regard to case.

Tabs whose model is "None" or whose `ad_tab_enable` is false are kept (disabled) so each tab keeps
its position: ADetailer's infotext suffix (" 2nd"...) and seed/prompt rules go by position.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from modules.errors import UserError

ADETAILER_VERSION = "25.3.0"  # the ADetailer whose arguments, infotext and routes Easel follows
NO_MODEL = "None"
FILTER_METHODS = ("Area", "Confidence")
MERGE_MODES = ("None", "Merge", "Merge and Invert")
TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})  # pydantic 1's bool words
FALSE_WORDS = frozenset({"0", "off", "f", "false", "n", "no"})
SEP = re.compile(r"\s*\[SEP\]\s*")
SKIP = re.compile(r"^\s*\[SKIP\]\s*$")


class DetailerArgsError(UserError):
    """A tab ADetailer would refuse (answered 422, naming the tab, the setting and what is allowed)."""


def _limits(default: Any, low: float | None = None, high: float | None = None) -> Any:
    return field(default=default, metadata={"low": low, "high": high})


@dataclass
class DetailerTab:
    """One ADetailer tab, every `ADetailerArgs` field with its default and its bounds."""

    ad_model: str = NO_MODEL
    ad_model_classes: str = ""
    ad_tab_enable: bool = True
    ad_prompt: str = ""
    ad_negative_prompt: str = ""
    ad_confidence: float = _limits(0.3, 0.0, 1.0)
    ad_mask_filter_method: str = "Area"
    ad_mask_k: int = _limits(0, 0)
    ad_mask_min_ratio: float = _limits(0.0, 0.0, 1.0)
    ad_mask_max_ratio: float = _limits(1.0, 0.0, 1.0)
    ad_dilate_erode: int = 4
    ad_x_offset: int = 0
    ad_y_offset: int = 0
    ad_mask_merge_invert: str = "None"
    ad_mask_blur: int = _limits(4, 0)
    ad_denoising_strength: float = _limits(0.4, 0.0, 1.0)
    ad_inpaint_only_masked: bool = True
    ad_inpaint_only_masked_padding: int = _limits(32, 0)
    ad_use_inpaint_width_height: bool = False
    ad_inpaint_width: int = _limits(512, 1)
    ad_inpaint_height: int = _limits(512, 1)
    ad_use_steps: bool = False
    ad_steps: int = _limits(28, 1)
    ad_use_cfg_scale: bool = False
    ad_cfg_scale: float = _limits(7.0, 0.0)
    ad_use_checkpoint: bool = False
    ad_checkpoint: str | None = None
    ad_use_vae: bool = False
    ad_vae: str | None = None
    ad_use_sampler: bool = False
    ad_sampler: str = "DPM++ 2M Karras"
    ad_scheduler: str = "Use same scheduler"
    ad_use_noise_multiplier: bool = False
    ad_noise_multiplier: float = _limits(1.0, 0.5, 1.5)
    ad_use_clip_skip: bool = False
    ad_clip_skip: int = _limits(1, 1, 12)
    ad_restore_face: bool = False
    ad_controlnet_model: str = "None"
    ad_controlnet_module: str = "None"
    ad_controlnet_weight: float = _limits(1.0, 0.0, 1.0)
    ad_controlnet_guidance_start: float = _limits(0.0, 0.0, 1.0)
    ad_controlnet_guidance_end: float = _limits(1.0, 0.0, 1.0)

    @property
    def active(self) -> bool:
        """ADetailer's `not need_skip()`: a model is chosen and the tab is enabled."""
        return self.ad_model != NO_MODEL and self.ad_tab_enable is True


FIELDS = {f.name: f for f in fields(DetailerTab)}
CHOICES = {"ad_mask_filter_method": FILTER_METHODS, "ad_mask_merge_invert": MERGE_MODES}
QUIET_KEYS = frozenset({"is_api"})  # an ADetailerArgs field that only tells the UI from the API


@dataclass
class DetailerRequest:
    """What `alwayson_scripts.ADetailer` asks for: the flags and every tab, disabled ones included."""

    enabled: bool = False
    skip_img2img: bool = False  # ADetailer applies it only to img2img (a request with init images)
    tabs: list[DetailerTab] = field(default_factory=list)

    @property
    def active_tabs(self) -> list[tuple[int, DetailerTab]]:
        """(position from 0, tab) of the tabs that run; the position names the tab in infotext."""
        return [(n, tab) for n, tab in enumerate(self.tabs) if tab.active]

    @property
    def runs(self) -> bool:
        """ADetailer's `is_ad_enabled`: the flag is on and at least one tab has a model."""
        return self.enabled and bool(self.active_tabs)


def _whole(value: Any, name: str, number: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DetailerArgsError(f"ADetailer tab {number}: {name} must be a whole number, not {value!r}.")
    try:
        parsed = float(value) if not isinstance(value, int) else value
    except ValueError:
        raise DetailerArgsError(f"ADetailer tab {number}: {name} must be a whole number, not {value!r}.") from None
    if not math.isfinite(parsed) or parsed != int(parsed):
        raise DetailerArgsError(f"ADetailer tab {number}: {name} must be a whole number, not {value!r}.")
    return int(parsed)


def _number(value: Any, name: str, number: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DetailerArgsError(f"ADetailer tab {number}: {name} must be a number, not {value!r}.")
    try:
        parsed = float(value)
    except ValueError:
        raise DetailerArgsError(f"ADetailer tab {number}: {name} must be a number, not {value!r}.") from None
    if not math.isfinite(parsed):
        raise DetailerArgsError(f"ADetailer tab {number}: {name} must be a number, not {value!r}.")
    return parsed


def _flag(value: Any, name: str, number: int) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise DetailerArgsError(f"ADetailer tab {number}: {name} must be true or false, not {value!r}.")


def _text(value: Any, name: str, number: int, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # pydantic 1 writes numbers as text
        return str(value)
    raise DetailerArgsError(f"ADetailer tab {number}: {name} must be text, not {value!r}.")


def check_value(name: str, value: Any, number: int) -> Any:
    """`value` for the setting `name` of tab `number` (from 1), converted as ADetailer converts it."""
    spec = FIELDS[name]
    if name in CHOICES:
        for choice in CHOICES[name]:
            if isinstance(value, str) and value.strip().lower() == choice.lower():
                return choice
        raise DetailerArgsError(f"ADetailer tab {number}: {name} must be one of {', '.join(CHOICES[name])}, not {value!r}.")
    kind = str(spec.type)
    if kind == "bool":
        return _flag(value, name, number)
    if kind not in ("int", "float"):
        return _text(value, name, number, optional=kind.endswith("None"))
    parsed: int | float = _whole(value, name, number) if kind == "int" else _number(value, name, number)
    low, high = spec.metadata.get("low"), spec.metadata.get("high")
    if low is not None and high is not None and not low <= parsed <= high:
        raise DetailerArgsError(f"ADetailer tab {number}: {name} must be between {low} and {high}, not {parsed}.")
    if low is not None and parsed < low:
        raise DetailerArgsError(f"ADetailer tab {number}: {name} must be at least {low}, not {parsed}.")
    return parsed


def _unknown_key(key: str, number: int) -> DetailerArgsError:
    close = difflib.get_close_matches(key, list(FIELDS), n=1)
    if close:
        suggestion = close[0]
        return DetailerArgsError(f"ADetailer tab {number}: {key!r} is not an ADetailer setting (did you mean {suggestion}?).")
    return DetailerArgsError(f"ADetailer tab {number}: {key!r} is not an ADetailer setting; the settings are the ad_* fields of ADetailer {ADETAILER_VERSION}.")


def _old_top_k(values: dict[str, Any], number: int) -> None:
    """webuiapi 0.9.17 / ADetailer up to 24.8: `ad_mask_k_largest` kept the k largest masks."""
    old = check_value("ad_mask_k", values.pop("ad_mask_k_largest"), number)
    if "ad_mask_k" in values and check_value("ad_mask_k", values["ad_mask_k"], number) != old:
        new = values["ad_mask_k"]
        raise DetailerArgsError(f"ADetailer tab {number}: ad_mask_k_largest ({old}) and ad_mask_k ({new}) disagree; send ad_mask_k only.")
    method = values.get("ad_mask_filter_method", "Area")
    if check_value("ad_mask_filter_method", method, number) != "Area":
        raise DetailerArgsError(f"ADetailer tab {number}: ad_mask_k_largest keeps the largest masks, so ad_mask_filter_method must be Area, not {method!r}.")
    values["ad_mask_k"] = old


def parse_tab(raw: dict[str, Any], number: int) -> DetailerTab:
    """One tab from a client's dict; `number` counts the tabs from 1 (ADetailer's `ordinal(n)`)."""
    values = {str(key): value for key, value in raw.items()}
    if "ad_mask_k_largest" in values:
        _old_top_k(values, number)
    settings: dict[str, Any] = {}
    for key, value in values.items():
        if key in QUIET_KEYS:
            continue
        if key not in FIELDS:
            raise _unknown_key(key, number)
        settings[key] = check_value(key, value, number)
    return DetailerTab(**settings)


def parse_alwayson(args: Any) -> DetailerRequest:
    """`alwayson_scripts.ADetailer` (or its `args` list) in any form clients send (module docstring)."""
    if args is None:
        return DetailerRequest()
    if isinstance(args, dict):
        if "args" not in args:
            if not args:
                return DetailerRequest()
            keys = ", ".join(sorted(map(str, args)))
            raise DetailerArgsError(f"alwayson_scripts.ADetailer must hold its list under \"args\", not the keys {keys}.")
        args = args["args"]
    if args is None:
        return DetailerRequest()
    if not isinstance(args, (list, tuple)):
        kind = type(args).__name__
        raise DetailerArgsError(f"alwayson_scripts.ADetailer.args must be a list [enable, skip_img2img, tab, ...], not {kind}.")
    items = list(args)
    enabled = items[0] if items and isinstance(items[0], bool) else True
    skip_img2img = len(items) >= 2 and isinstance(items[1], bool) and items[1]
    dicts = [item for item in items if isinstance(item, dict)]
    if not enabled or not dicts:
        return DetailerRequest(enabled=False, skip_img2img=skip_img2img)
    return DetailerRequest(True, skip_img2img, [parse_tab(raw, number) for number, raw in enumerate(dicts, 1)])


def prompts_for(tab_prompt: str, main_prompt: str, count: int) -> list[str]:
    """The prompt of each of `count` regions: `tab_prompt` split at [SEP]; an empty part is the
    picture's own prompt, [PROMPT] inside a part is replaced by it; regions past the last part reuse
    it. The same rule serves negative prompts (with the picture's negative prompt)."""
    parts = SEP.split(tab_prompt)
    parts = [main_prompt if not part else part.replace("[PROMPT]", main_prompt) for part in parts]
    return [parts[min(index, len(parts) - 1)] for index in range(count)]


def is_skip(prompt: str) -> bool:
    """A region whose (positive) prompt is just [SKIP] is left as it is; its index still counts for seeds."""
    return SKIP.match(prompt) is not None


def region_seeds(seed: int, subseed: int, index: int, same_seed: bool = False) -> tuple[int, int]:
    """The seed and variation seed of region `index` (from 0, counted within one tab, after the
    mask filters and merging, skipped regions included): the picture's own plus the index, or the
    picture's own for every region when the setting "same seed for each tab" is on."""
    if same_seed:
        return seed, subseed
    return seed + index, subseed + index
