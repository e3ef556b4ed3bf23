"""Dynamic Prompts' arguments: what a client sends in `alwayson_scripts["Dynamic Prompts v<version>"]`,
read as adieyal/sd-dynamic-prompts 2.17.1 reads it (`Script.ui()` return order and `Script.process()`
in sd_dynamic_prompts/dynamic_prompting.py l.325-367), plus Easel's own dict form.

The key: the script's title is `f"Dynamic Prompts v{VERSION}"` (l.109-110) and A1111 matches an
`alwayson_scripts` key against the installed title exactly, so clients send the version they had
("Dynamic Prompts v2.17.1"). Easel takes any key that starts with "dynamic prompts", ignoring case.

The forms (`parse_alwayson`):

- `{"args": [...]}` or the bare list: the 18 positional arguments below. A1111's API fills the
  arguments a client leaves out with the UI's defaults and ignores any past the 18th
  (`init_script_args`), so a short list is completed with the defaults (the UI's "enabled" box is
  on by default) and extra items are dropped;
- `{"args": {...}}` or a dict of `DynamicRequest` field names (Easel's form); an unknown name is
  refused with the closest field.

Values: true/false as JSON booleans, 0/1 or the words true/false/yes/no/on/off (A1111 would take
any non-empty text as true; Easel refuses what it cannot read rather than guess). Whole numbers for
`combinatorial_batches` (at least 1), `max_generations` (at least 0) and `magic_prompt_length`.

Refused when switched on (`DynamicRequest.check`), each naming the field: magic prompt (a GPT-2
prompt model), "I'm feeling lucky" (asks lexica.art over the internet), the attention grabber
(spaCy's language model and the unseeded module-level `random`: not reproducible), and Jinja2
templates (dynamicprompts renders them in a plain, unsandboxed `jinja2.Environment`, so a template
from an API client could run Python; its context also needs the model and sampler of the job).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields
from typing import Any

from modules.errors import UserError

EXTENSION_VERSION = "2.17.1"  # the sd-dynamic-prompts whose rules Easel follows (dynamicprompts 0.31.0)
SCRIPT_TITLE = f"Dynamic Prompts v{EXTENSION_VERSION}"
KEY_PREFIX = "dynamic prompts"
MAGIC_DEFAULT_MODEL = "Gustavosta/MagicPrompt-Stable-Diffusion"  # first line of its config/magicprompt_models.txt
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "t", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "f", "n"})


class DynamicPromptsError(UserError):
    """A Dynamic Prompts template, wildcard or argument Easel cannot use (the message says which)."""


@dataclass
class DynamicRequest:
    """The extension's 18 arguments, in its order, each defaulting to what its UI shows."""

    enabled: bool = True
    combinatorial: bool = False
    combinatorial_batches: int = 1
    magic_prompt: bool = False
    feeling_lucky: bool = False
    attention_grabber: bool = False
    min_attention: float = 1.1
    max_attention: float = 1.5
    magic_prompt_length: int = 100
    magic_temp_value: float = 0.7
    use_fixed_seed: bool = False
    unlink_seed_from_prompt: bool = False
    disable_negative_prompt: bool = True  # "Don't apply to negative prompts": only turns prompt magic off for them
    enable_jinja_templates: bool = False
    no_image_generation: bool = False
    max_generations: int = 0  # combinatorial only: at most this many prompts per batch (0: all)
    magic_model: str | None = MAGIC_DEFAULT_MODEL
    magic_blocklist_regex: str | None = ""

    def check(self) -> None:
        """Refuse what Easel does not run (module docstring); nothing is checked when disabled."""
        if not self.enabled:
            return
        # The extension turns magic prompt on only with a model chosen (GeneratorBuilder.set_is_magic_prompt).
        if self.magic_prompt and self.magic_model:
            raise DynamicPromptsError("Dynamic Prompts: magic_prompt needs a prompt-writing language model, which Easel does not run. Turn it off.")
        if self.feeling_lucky:
            raise DynamicPromptsError("Dynamic Prompts: feeling_lucky fetches prompts from the internet, which Easel does not do. Turn it off.")
        if self.attention_grabber:
            raise DynamicPromptsError("Dynamic Prompts: attention_grabber needs a language model and cannot be reproduced, so Easel does not run it. Turn it off.")
        if self.enable_jinja_templates:
            raise DynamicPromptsError("Dynamic Prompts: enable_jinja_templates is not supported (Jinja2 templates can run code on the server). Turn it off.")


FIELDS = [f.name for f in fields(DynamicRequest)]
TYPES = {f.name: str(f.type) for f in fields(DynamicRequest)}
MINIMUM = {"combinatorial_batches": 1, "max_generations": 0, "magic_prompt_length": 0}


def is_dynamic_key(name: Any) -> bool:
    """Whether an `alwayson_scripts` key names Dynamic Prompts ("Dynamic Prompts v2.17.1", any case)."""
    return isinstance(name, str) and name.strip().lower().startswith(KEY_PREFIX)


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise DynamicPromptsError(f"Dynamic Prompts: {name} must be true or false, not {value!r}.")


def _number(value: Any, name: str, whole: bool) -> int | float:
    parsed: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        parsed = float(value)
    elif isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            parsed = None
    if whole and (parsed is None or not math.isfinite(parsed) or parsed != int(parsed)):
        raise DynamicPromptsError(f"Dynamic Prompts: {name} must be a whole number, not {value!r}.")
    if parsed is None or not math.isfinite(parsed):
        raise DynamicPromptsError(f"Dynamic Prompts: {name} must be a number, not {value!r}.")
    low = MINIMUM.get(name)
    if low is not None and parsed < low:
        raise DynamicPromptsError(f"Dynamic Prompts: {name} must be at least {low}, not {value!r}.")
    return int(parsed) if whole else parsed


def _value(name: str, value: Any) -> Any:
    kind = TYPES[name]
    if kind == "bool":
        return _flag(value, name)
    if kind in ("int", "float"):
        return _number(value, name, whole=kind == "int")
    if value is None or isinstance(value, str):
        return value
    raise DynamicPromptsError(f"Dynamic Prompts: {name} must be text, not {value!r}.")


def from_positional(args: list[Any] | tuple[Any, ...]) -> DynamicRequest:
    """The extension's positional list: missing items take the UI's defaults, items past 18 are ignored."""
    values = {name: _value(name, value) for name, value in zip(FIELDS, args)}
    return DynamicRequest(**values)


def from_fields(values: dict[str, Any]) -> DynamicRequest:
    """Easel's form: `DynamicRequest` field names; the rest take the extension's UI defaults."""
    settings: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key)
        if name not in TYPES:
            close = difflib.get_close_matches(name, FIELDS, n=1)
            if close:
                suggestion = close[0]
                raise DynamicPromptsError(f"Dynamic Prompts: {name!r} is not a setting (did you mean {suggestion}?).")
            names = ", ".join(FIELDS)
            raise DynamicPromptsError(f"Dynamic Prompts: {name!r} is not a setting; the settings are {names}.")
        settings[name] = _value(name, value)
    return DynamicRequest(**settings)


def parse_alwayson(key: str, value: Any) -> DynamicRequest:
    """`alwayson_scripts[key]` for a Dynamic Prompts key, in any of the forms above (not yet `check`ed)."""
    if not is_dynamic_key(key):
        raise DynamicPromptsError(f"{key!r} is not a Dynamic Prompts script name (expected e.g. {SCRIPT_TITLE!r}).")
    args = value
    if isinstance(value, dict) and "args" in value:
        extra = sorted(str(k) for k in value if k != "args")
        if extra:
            raise DynamicPromptsError(f"alwayson_scripts[{key!r}] holds its settings under \"args\" only, not also {', '.join(extra)}.")
        args = value["args"]
    if args is None:
        return DynamicRequest()
    if isinstance(args, dict):
        return from_fields(args)
    if isinstance(args, (list, tuple)):
        return from_positional(args)
    kind = type(args).__name__
    raise DynamicPromptsError(f"alwayson_scripts[{key!r}].args must be a list of the extension's 18 arguments or a dict of settings, not {kind}.")
