"""Dynamic Prompts' infotext keys: `Template` and `Negative Template` (sd-dynamic-prompts 2.17.1,
dynamic_prompting.py l.519-524 and pnginfo_saver.py).

Writing: the extension adds them to the job's extra parameters (so every picture of the job carries
them) when its setting `dp_write_raw_template` is on, each only when that template is not empty.
The prompt written is the picture's own expanded prompt; the template goes beside it.

Easel's default: write them (`WRITE_TEMPLATE_DEFAULT`, for the setting "Write the Dynamic Prompts
template into pictures"). The extension's default is off (settings.py l.17-24), but Easel's aim is
that a picture can be reproduced: the expanded prompt and seed reproduce that picture, but only the
template (with the seed) reproduces the job it came from, re-rolls its variants or feeds X/Y/Z. It
costs one line, A1111 without the extension shows it as an unknown parameter, and A1111 with the
extension strips it on paste. The one reason to turn it off: the template names the wildcard files
(and holds the alternatives not chosen), which a shared picture then reveals.

Reading: `read_template` gives the templates back for send-to (the prompt stays the expanded
prompt). Old infotexts whose writer did not quote a multi-line value can have the template spill
into the prompt or negative prompt text; `strip_template_info` cleans them as the extension's
paste handler does (pnginfo_saver.py `strip_template_info`, callbacks.py l.29-45).
"""

from __future__ import annotations

from typing import Mapping

TEMPLATE_KEY = "Template"
NEGATIVE_TEMPLATE_KEY = "Negative Template"
WRITE_TEMPLATE_DEFAULT = True  # Easel's default for the setting (the extension's is False): see above


def template_params(template: str, negative_template: str, write: bool = WRITE_TEMPLATE_DEFAULT) -> dict[str, str]:
    """The extra infotext parameters of a job expanded from these templates (none when `write` is off)."""
    params: dict[str, str] = {}
    if write and template:
        params[TEMPLATE_KEY] = template
    if write and negative_template:
        params[NEGATIVE_TEMPLATE_KEY] = negative_template
    return params


def read_template(params: Mapping[str, str]) -> tuple[str, str] | None:
    """(template, negative template) from parsed infotext parameters, or None when it has neither.
    A key left out stands for an empty template (the extension writes each only when not empty)."""
    if TEMPLATE_KEY not in params and NEGATIVE_TEMPLATE_KEY not in params:
        return None
    return params.get(TEMPLATE_KEY, ""), params.get(NEGATIVE_TEMPLATE_KEY, "")


def strip_template_info(params: Mapping[str, str]) -> dict[str, str]:
    """A copy of `params` with template text that spilled into the prompts cut off (the extension's
    paste rule: the prompt ends before "Template:"; the negative prompt before its first line that
    starts "Template:" or "Negative Template:")."""
    cleaned = dict(params)
    label = f"{TEMPLATE_KEY}:"
    prompt = cleaned.get("Prompt")
    negative = cleaned.get("Negative prompt")
    if prompt is not None and label in prompt:
        cleaned["Prompt"] = prompt.split(label)[0].strip()
    elif negative is not None:
        has_template = f"\n{label}" in negative
        has_negative = f"\n{NEGATIVE_TEMPLATE_KEY}:" in negative
        split_by = None
        if has_template and has_negative:
            split_by = TEMPLATE_KEY  # as the extension does: at the first "Template" anywhere
        elif has_negative:
            split_by = f"\n{NEGATIVE_TEMPLATE_KEY}:"
        elif has_template:
            split_by = f"\n{label}"
        if split_by:
            cleaned["Negative prompt"] = negative.split(split_by)[0].strip()
    return cleaned
