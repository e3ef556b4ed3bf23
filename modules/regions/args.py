"""The Regional Prompter's API arguments: `alwayson_scripts: {"Regional Prompter": {"args": [...]}}`
(the key matched without regard to case, as A1111 matches script titles), 20 positional values in
the order of its `process()` (scripts/rp.py l.446; README "How to Use via API"):

 1 active, 2 debug, 3 mode (Matrix, Mask, Prompt), 4 Matrix submode (Columns, Rows, Random; the
 old names Horizontal, Vertical), 5 Mask submode (Mask), 6 Prompt submode (Prompt, Prompt-Ex),
 7 ratios, 8 base ratios, 9 use base, 10 use common, 11 use negative common, 12 calc mode
 (Attention, Latent), 13 options (true = "disable convert 'AND' to 'BREAK'", a comma list or a
 list), 14 LoRA negative text-encoder ratios, 15 LoRA negative U-Net ratios, 16 threshold, 17 mask
 (a picture), 18 LoRA stop step, 19 LoRA hires stop step, 20 flip.

Fewer values leave the rest at the extension's UI defaults (A1111 fills an always-on script's
missing arguments from its UI); more than 20 is refused. Each value is checked and a bad one is a
RegionalPromptError naming it. Where Easel is stricter or kinder than the extension: true/false
words and 0/1 are read as booleans (the extension would take the text "False" as true); choices
match without regard to case (and the README's misspelt "Colums"); option names are matched with
their spaces trimmed, and an unknown one is refused (the extension drops it silently).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Callable

from modules.regions.errors import RegionalPromptError
from modules.regions.prompt import OPT_KEEP_AND, OPTIONS

SCRIPT_TITLE = "Regional Prompter"
ARG_NAMES = ("active", "debug", "mode", "matrix submode", "mask submode", "prompt submode", "ratios", "base ratios", "use base",
             "use common", "use negative common", "calc mode", "options", "LoRA negative text encoder ratios", "LoRA negative U-Net ratios",
             "threshold", "mask", "LoRA stop step", "LoRA hires stop step", "flip")
MODES = {"matrix": "Matrix", "mask": "Mask", "prompt": "Prompt", "nope": "Matrix"}  # "Nope": no tab picked, read as Matrix (rp.py l.490)
MATRIX_SUBMODES = {"columns": "Columns", "colums": "Columns", "rows": "Rows", "random": "Random", "horizontal": "Horizontal", "vertical": "Vertical"}
MASK_SUBMODES = {"mask": "Mask"}
PROMPT_SUBMODES = {"prompt": "Prompt", "prompt-ex": "Prompt-Ex"}
CALC_MODES = {"attention": "Attention", "latent": "Latent"}
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})


@dataclass
class RegionalRequest:
    """The extension's settings, with its UI defaults; text settings kept as the text written."""

    active: bool = False
    debug: bool = False
    mode: str = "Matrix"
    matrix_submode: str = "Columns"
    mask_submode: str = "Mask"
    prompt_submode: str = "Prompt"
    ratios: str = "1,1"
    base_ratios: str = "0.2"
    use_base: bool = False
    use_common: bool = False
    use_ncommon: bool = False
    calc_mode: str = "Attention"
    options: tuple[str, ...] = ()  # the option names as the extension writes them ("debug" added by the debug flag)
    lora_neg_te: str = "0"
    lora_neg_u: str = "0"
    threshold: str = "0.4"
    mask: Any = None  # Mask mode's colour-coded picture (PIL image or H×W×3 array)
    lora_stop: str = "0"
    lora_hires_stop: str = "0"
    flip: bool = False

    @property
    def rows(self) -> bool:
        """Matrix submode Rows (or its old name Vertical): groups are columns, cells stacked."""
        return self.matrix_submode in ("Rows", "Vertical")

    def check_supported(self) -> None:
        """Raises RegionalPromptError for settings Easel cannot run."""
        if self.mode == "Prompt" and self.calc_mode == "Latent":
            raise RegionalPromptError("Regional Prompter: Prompt mode (regions found by attention to a word) runs in Attention calc mode "
                                      "in Easel, not Latent (arg 12). Choose Attention, or Matrix or Mask mode for Latent.")
        if self.mode == "Matrix" and self.matrix_submode == "Random":
            raise RegionalPromptError("Regional Prompter arg 4 (matrix submode) is Random, which the extension draws anew at every run "
                                      "(no picture can be made again); Easel does not have it. Use Columns or Rows.")


def _field_names() -> list[str]:
    return [f.name for f in fields(RegionalRequest)]


def _flag(value: Any, position: int) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    name = ARG_NAMES[position - 1]
    raise RegionalPromptError(f"Regional Prompter arg {position} ({name}) must be true or false, not {value!r}.")


def _choice(value: Any, position: int, choices: dict[str, str]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        key = value.strip()
        return key if key in choices.values() else choices[key.lower()]
    allowed = ", ".join(dict.fromkeys(v for k, v in choices.items() if k != "nope" and k != "colums"))
    name = ARG_NAMES[position - 1]
    raise RegionalPromptError(f"Regional Prompter arg {position} ({name}) must be one of {allowed}, not {value!r}.")


def _text(value: Any, position: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    name = ARG_NAMES[position - 1]
    raise RegionalPromptError(f"Regional Prompter arg {position} ({name}) must be text (e.g. \"1,1\"), not {value!r}.")


def _step(value: Any, position: int) -> str:
    text = _text(value, position)
    try:
        int(text.strip() or "0")
    except ValueError:
        name = ARG_NAMES[position - 1]
        raise RegionalPromptError(f"Regional Prompter arg {position} ({name}) must be a whole number of steps (0: never), not {value!r}.") from None
    return text


def parse_options(value: Any, debug: bool = False, position: int = 13, strict: bool = True) -> tuple[str, ...]:
    """The options as the extension reads them: a bool is the AND option; a text is split at commas;
    a list is taken as is; the debug flag adds "debug". `strict`: an unknown name is an error (else dropped)."""
    if value is None or value is False:
        names: list[Any] = []
    elif value is True:
        names = [OPT_KEEP_AND]
    elif isinstance(value, str):
        names = [] if value.strip() in ("", "No Options") else value.split(",")
    elif isinstance(value, (list, tuple)):
        names = list(value)
    else:
        raise RegionalPromptError(f"Regional Prompter arg {position} (options) must be true/false, a comma-separated text or a list of "
                                  f"option names, not {value!r}.")
    known = {name.lower(): name for name in OPTIONS}
    found: list[str] = []
    for name in names:
        option = known.get(name.strip().lower()) if isinstance(name, str) else None
        if option is None:
            if strict:
                allowed = ", ".join(OPTIONS)
                raise RegionalPromptError(f"Regional Prompter arg {position} (options): unknown option {name!r}; the options are {allowed}.")
            continue
        if option not in found:
            found.append(option)
    if debug and "debug" not in found:
        found.append("debug")
    return tuple(found)


def parse_mask(value: Any, decode: Callable[[str], Any] | None, position: int = 17) -> Any:
    """None, a picture, an array, a base64 text (through `decode`) or a UI editor dict
    (`composite`, `image` or the first of `layers`, as the extension takes them)."""
    if value is None or value is False or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dict):
        if "composite" in value or "layers" in value:  # Gradio 4's editor: the composite, or the first layer when that is blank
            picked = value.get("composite")
            if picked is not None and hasattr(picked, "any") and not picked.any():
                picked = (value.get("layers") or [None])[0]
        else:
            picked = value.get("image")
        return parse_mask(picked, decode, position)
    if isinstance(value, str):
        if decode is None:
            raise RegionalPromptError(f"Regional Prompter arg {position} (mask): send the mask picture as base64 (a file path is not read).")
        return decode(value)
    if hasattr(value, "size") and hasattr(value, "mode") or hasattr(value, "shape"):
        return value
    kind = type(value).__name__
    raise RegionalPromptError(f"Regional Prompter arg {position} (mask) must be a picture (base64), not {kind}.")


def parse_regional_args(value: Any, decode: Callable[[str], Any] | None = None) -> RegionalRequest:
    """`alwayson_scripts["Regional Prompter"]` (`{"args": [...]}` or the bare list) as a request;
    `decode` turns a base64 mask into a picture (the API's image decoder)."""
    args = value.get("args", []) if isinstance(value, dict) else value
    if not isinstance(args, (list, tuple)):
        kind = type(args).__name__
        raise RegionalPromptError(f"Regional Prompter args must be a list of up to 20 values, not {kind}.")
    if len(args) > len(ARG_NAMES):
        count = len(args)
        raise RegionalPromptError(f"Regional Prompter takes at most 20 args; {count} were sent.")
    request = RegionalRequest()
    readers: dict[int, Callable[[Any, int], Any]] = {
        1: _flag, 2: _flag, 3: lambda v, n: _choice(v, n, MODES), 4: lambda v, n: _choice(v, n, MATRIX_SUBMODES),
        5: lambda v, n: _choice(v, n, MASK_SUBMODES), 6: lambda v, n: _choice(v, n, PROMPT_SUBMODES), 7: _text, 8: _text, 9: _flag, 10: _flag,
        11: _flag, 12: lambda v, n: _choice(v, n, CALC_MODES), 14: _text, 15: _text, 16: _text, 18: _step, 19: _step, 20: _flag,
    }
    values: dict[str, Any] = {}
    names = _field_names()
    for position, raw in enumerate(args, start=1):
        if raw is None or position in (13, 17):
            continue
        values[names[position - 1]] = readers[position](raw, position)
    request = replace(request, **values)
    options_value = args[12] if len(args) > 12 else None
    mask_value = args[16] if len(args) > 16 else None
    return replace(request, options=parse_options(options_value, request.debug), mask=parse_mask(mask_value, decode))


def find_regional_args(scripts: dict[str, Any] | None) -> Any:
    """The `alwayson_scripts` entry of the Regional Prompter (its title in any case), or None."""
    return next((entry for name, entry in (scripts or {}).items() if str(name).strip().lower() == SCRIPT_TITLE.lower()), None)
