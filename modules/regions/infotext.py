"""The Regional Prompter's infotext keys, written as it writes them (scripts/rp.py l.517-536, only
when it acts) and read back (its `infotext_fields`, l.388-408).

Values are the settings as given: booleans as `True`/`False`, texts as written (the ratios before
the flip option is applied), the options joined by "," or "No Options". Reading also takes the
keys of older versions: `RP Change AND` (the AND checkbox, before `RP Options` replaced it on
2023-10-19) and a `RP Divide mode` that names the submode itself (Horizontal, Vertical, Mask,
Prompt, Prompt-Ex, from before the modes had tabs).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from modules.regions.args import CALC_MODES, MATRIX_SUBMODES, MODES, PROMPT_SUBMODES, RegionalRequest, parse_options
from modules.regions.prompt import OPT_KEEP_AND

KEYS = ("RP Active", "RP Divide mode", "RP Matrix submode", "RP Mask submode", "RP Prompt submode", "RP Calc Mode", "RP Ratios",
        "RP Base Ratios", "RP Use Base", "RP Use Common", "RP Use Ncommon", "RP Options", "RP LoRA Neg Te Ratios", "RP LoRA Neg U Ratios",
        "RP threshold", "RP LoRA Stop Step", "RP LoRA Hires Stop Step", "RP Flip")
OLD_KEYS = ("RP Change AND",)
TEXT_KEYS = {"RP Ratios": "ratios", "RP Base Ratios": "base_ratios", "RP LoRA Neg Te Ratios": "lora_neg_te", "RP LoRA Neg U Ratios": "lora_neg_u",
             "RP threshold": "threshold", "RP LoRA Stop Step": "lora_stop", "RP LoRA Hires Stop Step": "lora_hires_stop"}
FLAG_KEYS = {"RP Use Base": "use_base", "RP Use Common": "use_common", "RP Use Ncommon": "use_ncommon", "RP Flip": "flip"}


def regional_infotext(request: RegionalRequest) -> dict[str, str]:
    """The keys a picture made with these settings carries, in the extension's order."""
    return {
        "RP Active": str(request.active),
        "RP Divide mode": request.mode,
        "RP Matrix submode": request.matrix_submode,
        "RP Mask submode": request.mask_submode,
        "RP Prompt submode": request.prompt_submode,
        "RP Calc Mode": request.calc_mode,
        "RP Ratios": request.ratios,
        "RP Base Ratios": request.base_ratios,
        "RP Use Base": str(request.use_base),
        "RP Use Common": str(request.use_common),
        "RP Use Ncommon": str(request.use_ncommon),
        "RP Options": ",".join(request.options) if request.options else "No Options",
        "RP LoRA Neg Te Ratios": request.lora_neg_te,
        "RP LoRA Neg U Ratios": request.lora_neg_u,
        "RP threshold": request.threshold,
        "RP LoRA Stop Step": request.lora_stop,
        "RP LoRA Hires Stop Step": request.lora_hires_stop,
        "RP Flip": str(request.flip),
    }


def _flag(text: str) -> bool:
    return text.strip().lower() == "true"


def _pick(text: str | None, choices: dict[str, str], default: str) -> str:
    if text is None:
        return default
    key = text.strip()
    if key in choices.values():
        return key
    return choices.get(key.lower(), default)


def parse_regional_infotext(params: Mapping[str, str]) -> RegionalRequest | None:
    """The settings a picture's infotext keys give (None: no Regional Prompter keys). Missing keys
    take the UI defaults; unknown option names are dropped, as the extension's paste drops them."""
    if not any(key in params for key in (*KEYS, *OLD_KEYS)):
        return None
    request = RegionalRequest(active=_flag(params.get("RP Active", "False")))
    divide = params.get("RP Divide mode", "Matrix").strip()
    values: dict[str, object] = {}
    if divide.lower() in MATRIX_SUBMODES:  # the old single "divide mode"
        values.update(mode="Matrix", matrix_submode=_pick(divide, MATRIX_SUBMODES, "Columns"))
    elif divide.lower() in PROMPT_SUBMODES and "RP Prompt submode" not in params:
        values.update(mode="Prompt", prompt_submode=_pick(divide, PROMPT_SUBMODES, "Prompt"))
    else:
        values["mode"] = _pick(divide, MODES, "Matrix")
    if "RP Matrix submode" in params:
        values["matrix_submode"] = _pick(params["RP Matrix submode"], MATRIX_SUBMODES, "Columns")
    if "RP Prompt submode" in params:
        values["prompt_submode"] = _pick(params["RP Prompt submode"], PROMPT_SUBMODES, "Prompt")
    values["calc_mode"] = _pick(params.get("RP Calc Mode"), CALC_MODES, "Attention")
    for key, name in TEXT_KEYS.items():
        if key in params:
            values[name] = params[key]
    for key, name in FLAG_KEYS.items():
        if key in params:
            values[name] = _flag(params[key])
    if "RP Options" in params:
        values["options"] = parse_options(params["RP Options"], strict=False)
    elif "RP Change AND" in params:
        values["options"] = (OPT_KEEP_AND,) if _flag(params["RP Change AND"]) else ()
    return replace(request, **values)  # type: ignore[arg-type]
