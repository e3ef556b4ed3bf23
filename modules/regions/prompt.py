"""A regional prompt split into its parts, by the Regional Prompter's rules (scripts/rp.py
`process` l.446-626 and the helpers it calls; scripts/regions.py l.14-34 and `makeimgtmp`).

The keywords (case-sensitive, found anywhere, as the extension finds them): `BREAK` separates
regions, `ADDCOL`/`ADDROW` separate cells of a Matrix layout, `ADDBASE` ends the base prompt,
`ADDCOMM` ends the common prompt, `ADDP` separates parts and turns Prompt mode on. The extension acts only when the
prompt holds one of them, or `AND`.

In the extension's order:

1. (option "Comment Out `#`") each line loses what follows `#`; empty lines go;
2. `AND` becomes `BREAK` in the prompt and the negative, unless the option "disable convert 'AND'
   to 'BREAK'" is on;
3. Matrix mode (unless "Use BREAK to change chunks"): the prompt's `BREAK`s become, in order, the
   keywords the layout's template lists (`ADDCOMM` with Use common, `ADDBASE` with Use base, then
   `ADDCOL`/`ADDROW` between the cells, `makeimgtmp` l.269-343, `keyconverter` rp.py l.1256);
4. `ADDCOMM` in a prompt turns Use common on, and Use common turns the first `BREAK` into `ADDCOMM`;
   the same for the negative (Use Ncommon) and for `ADDBASE` (Use base) (`bckeydealer` l.1234);
5. every keyword becomes a separator; the prompt is cut there into parts (with "Use BREAK to change
   chunks", `BREAK` stays inside its part and only starts a new 77-token chunk there);
6. an empty last part (or just ",") gets " _" (`blankdealer` l.748);
7. with Use common the first part is put in front of every other part, joined by ", ", and dropped;
   "Flip prompts" then reverses the parts (`commondealer` l.758). Use Ncommon does the same to the
   negative; a negative with no separator then becomes empty, as in the extension.

Differences, on purpose: extra-network tags (`<lora:...>`) are set aside before anything else and
put back into the parts they were written in (the extension would turn `<lora:ANDY>` into
`<lora:BREAKY>`, and count keywords inside tags); the parts keep them, so Latent mode can apply a
part's LoRAs to its pass only. Comments are removed before the layout is read (the extension reads
the layout with the comments in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modules.prompts.extra_networks import TAG_PATTERN, extract_extra_networks
from modules.regions.errors import RegionalPromptError
from modules.regions.grammar import CELL_DELIMITER, ROW_DELIMITER, split_weighted_grid

KEY_ROW = "ADDROW"
KEY_COL = "ADDCOL"
KEY_BASE = "ADDBASE"
KEY_COMMON = "ADDCOMM"
KEY_BREAK = "BREAK"
KEY_PROMPT = "ADDP"
SEPARATOR_KEYS = (KEY_COMMON, KEY_ROW, KEY_COL, KEY_BASE, KEY_PROMPT)  # `ALLKEYS`, in the order they are replaced
ACTIVATING_KEYS = (*SEPARATOR_KEYS, KEY_BREAK, "AND")  # `ALLALLKEYS`

OPT_KEEP_AND = "disable convert 'AND' to 'BREAK'"
OPT_LOHA = "Use LoHa or other"
OPT_BREAK_CHUNKS = "Use BREAK to change chunks"
OPT_FLIP_PROMPTS = "Flip prompts"
OPT_COMMENTS = "Comment Out `#`"
OPT_HIRES_ONLY = "Enabled only in Hires Fix"
OPT_NOT_HIRES = "Disabled in Hires Fix"
OPTIONS = (OPT_KEEP_AND, OPT_LOHA, OPT_BREAK_CHUNKS, OPT_FLIP_PROMPTS, OPT_COMMENTS, OPT_HIRES_ONLY, OPT_NOT_HIRES, "debug", "debug2")

_SEPARATOR = "\x00"
_TAG_MARK = "\x01"  # a tag set aside: mark, its number, mark


def hide_tags(text: str) -> tuple[str, list[str]]:
    """`text` with every extra-network tag replaced by a numbered mark, and the tags."""
    tags: list[str] = []

    def mark(match: re.Match[str]) -> str:
        tags.append(match.group(0))
        return f"{_TAG_MARK}{len(tags) - 1}{_TAG_MARK}"

    return TAG_PATTERN.sub(mark, text), tags


def show_tags(text: str, tags: list[str]) -> str:
    return re.sub(f"{_TAG_MARK}(\\d+){_TAG_MARK}", lambda m: tags[int(m.group(1))], text)


@dataclass
class RegionalPrompt:
    """What the layout and the encoder are given."""

    structure: str  # the prompt with its keywords (after steps 1-4): the Matrix layout is read from it
    parts: list[str]  # the prompt's parts, in order (common folded in), each with the extra-network tags written in it
    negative_parts: list[str]
    use_base: bool
    use_common: bool
    use_ncommon: bool
    break_chunks: bool  # "Use BREAK to change chunks": BREAK is not a separator
    asks_prompt_mode: bool = False  # the prompt holds ADDP, which turns Prompt mode on (the extension's `bckeydealer`)


def activates(prompt: str) -> bool:
    """Whether the extension acts on this prompt: it holds a keyword or `AND` (outside extra-network tags)."""
    text = extract_extra_networks(prompt)[0]
    return any(key in text for key in ACTIVATING_KEYS)


def remove_comments(text: str) -> str:
    lines = [(line[: line.find("#")] if "#" in line else line).strip() for line in text.split("\n")]
    return "\n".join(line for line in lines if line)


def template_keys(ratios: str, rows: bool, use_common: bool, use_base: bool) -> list[str]:
    """The keywords the extension's template puts between the cells of a layout, in order."""
    inner, outer = (KEY_ROW, KEY_COL) if rows else (KEY_COL, KEY_ROW)
    if ROW_DELIMITER not in ratios:  # commas only: one group (in either mode)
        groups = [ratios.split(CELL_DELIMITER)]
    else:
        groups = split_weighted_grid(ratios, ROW_DELIMITER, CELL_DELIMITER, str, flip=rows)[1]
    keys = ([KEY_COMMON] if use_common else []) + ([KEY_BASE] if use_base else [])
    for index, cells in enumerate(groups):
        if index:
            keys.append(outer)
        keys += [inner] * (len(cells) - 1)
    return keys


def convert_breaks(prompt: str, keys: list[str]) -> str:
    """Each `BREAK`, in order, becomes the next keyword; a common/base keyword already written is skipped."""
    for key in keys:
        if key in (KEY_COMMON, KEY_BASE) and key in prompt:
            continue
        prompt = prompt.replace(KEY_BREAK, key, 1)
    return prompt


def split_parts(text: str, break_chunks: bool) -> list[str]:
    for key in SEPARATOR_KEYS:
        text = text.replace(key, _SEPARATOR)
    if not break_chunks:
        text = text.replace(KEY_BREAK, _SEPARATOR)
    return text.split(_SEPARATOR)


def add_common(parts: list[str], flip: bool) -> list[str]:
    joined = [parts[0] + ", " + part for part in parts[1:]]
    return joined[::-1] if flip else joined


def split_prompt(prompt: str, negative: str, *, matrix: bool, rows: bool, ratios: str, use_base: bool, use_common: bool,
                 use_ncommon: bool, options: tuple[str, ...] | list[str]) -> RegionalPrompt:
    """The parts of `prompt` and `negative` (steps 1-7 of the module docstring). `ratios` is the
    Matrix ratio text after the flip option; `rows`: Matrix submode Rows (Vertical)."""
    text, tags = hide_tags(prompt)
    negative = extract_extra_networks(negative)[0]
    if OPT_COMMENTS in options:
        text, negative = remove_comments(text), remove_comments(negative)
    if OPT_KEEP_AND not in options:
        text, negative = text.replace("AND", KEY_BREAK), negative.replace("AND", KEY_BREAK)
    elif re.search(r"\bAND\b", text):
        raise RegionalPromptError("Regional Prompter option \"disable convert 'AND' to 'BREAK'\" with AND in the prompt: Easel does not "
                                  "combine AND sub-prompts with regions. Turn the option off (AND then separates regions) or remove the AND.")
    break_chunks = OPT_BREAK_CHUNKS in options
    if matrix and not break_chunks:
        text = convert_breaks(text, template_keys(ratios, rows, use_common, use_base))
    if KEY_COMMON in text:
        use_common = True
    if use_common and KEY_COMMON not in text:
        text = text.replace(KEY_BREAK, KEY_COMMON, 1)
    if KEY_COMMON in negative:
        use_ncommon = True
    if use_ncommon and KEY_COMMON not in negative:
        negative = negative.replace(KEY_BREAK, KEY_COMMON, 1)
    if KEY_BASE in text:
        use_base = True
    if use_base and KEY_BASE not in text:
        text = text.replace(KEY_BREAK, KEY_BASE, 1)
    parts = split_parts(text, break_chunks)
    if extract_extra_networks(show_tags(parts[-1], tags))[0].strip() in ("", ","):
        parts[-1] += " _"
    negative_parts = split_parts(negative, break_chunks)
    flip = OPT_FLIP_PROMPTS in options
    if use_common:
        parts = add_common(parts, flip)
        if not parts:
            raise RegionalPromptError("Regional Prompter: Use common prompt is on but the prompt has no part after the common one; "
                                      "separate the common prompt from the regions with BREAK or ADDCOMM.")
    if use_ncommon:
        negative_parts = add_common(negative_parts, flip) or [""]
    parts = [show_tags(part, tags) for part in parts]
    return RegionalPrompt(show_tags(text, tags), parts, negative_parts, use_base, use_common, use_ncommon, break_chunks,
                          asks_prompt_mode=KEY_PROMPT in text.upper())
