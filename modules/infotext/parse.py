"""Reading infotext back into its parameters, as A1111 1.10.1's ``parse_generation_parameters``.

1. The last line holds the parameters only when A1111's ``Key: value`` pattern matches it at least
   3 times; otherwise it belongs to the prompt.
2. Lines up to the first one starting with "Negative prompt:" are the prompt (each line stripped);
   that line without its prefix and all after it are the negative prompt.
3. Quoted values are JSON strings; ``WxH`` values become ``Key-1`` (W) and ``Key-2`` (H).
4. Keys A1111 leaves out when they hold their default get that default back.
5. A sampler written with its schedule ("DPM++ 2M Karras", as before A1111 1.9) is split into
   "Sampler" and "Schedule type".

Values stay strings; ``modules/infotext/restore.py`` turns them into request fields and names the
settings it cannot apply.
"""

from __future__ import annotations

import json
import re

from modules.errors import UserError
from modules.infotext.create import NEGATIVE_PROMPT_PREFIX
from modules.sampling.sampler_table import parse_sampler_name
from modules.sampling.schedules import find_schedule

PARAM_PATTERN = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# Runs of the key's characters; `_KEY_RUN_AT` maps each run's end to its start.
_KEY_RUN = re.compile(r"[\w \-/]+")
_WORD_CHAR = re.compile(r"\w")
SIZE_PATTERN = re.compile(r"^(\d+)x(\d+)$")
MIN_PARAMETER_MATCHES = 3

# A1111 leaves these out of infotext when they hold their default, and fills them in on reading.
MISSING_DEFAULTS: dict[str, str] = {
    "Clip skip": "1",
    "Schedule type": "Automatic",
    "RNG": "GPU",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": "32",
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "Emphasis": "Original",
}


def unquote(text: str) -> str:
    """A1111's ``unquote``: a JSON string literal decoded, anything else as written."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, str) else text


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    prompt: list[str] = []
    negative: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not negative and line.startswith(NEGATIVE_PROMPT_PREFIX):
            negative.append(line[len(NEGATIVE_PROMPT_PREFIX):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    return "\n".join(prompt), "\n".join(negative)


def _split_sampler_schedule(params: dict[str, str]) -> None:
    """"DPM++ 2M Karras" -> Sampler "DPM++ 2M", Schedule type "Karras" (names A1111 wrote before
    1.9, and clients still send). A name Easel does not know is left as written."""
    name = params.get("Sampler")
    if not name:
        return
    try:
        row, schedule = parse_sampler_name(name)
    except UserError:
        return  # someone else's sampler: keep its name so the user sees it
    if schedule is not None:
        params["Sampler"] = row.label
        params["Schedule type"] = find_schedule(schedule).label


def find_parameters(line: str) -> list[tuple[str, str]]:
    r"""``PARAM_PATTERN.findall(line)``, in time linear in the line's length.

    findall retries the pattern at every position, and at each one ``[\w \-/]+`` runs to the end of
    the run of key characters before failing for want of a ``:``, so a long line without colons
    (a 100 kB text chunk in an uploaded PNG) took minutes. Here the pattern is only tried where
    findall's next match must start. A match's key is a word character followed by key characters
    up to a ``:`` (none of them a ``:``), so it ends at the end of a run of key characters that a
    colon follows; its value part always matches (``[^,]*`` then ``,`` or the end). Hence, for
    each colon in turn, the leftmost start is the first word character of the run before it (at
    least two characters before the colon), moved back over the whitespace ``\s*`` takes."""
    runs = {match.end(): match.start() for match in _KEY_RUN.finditer(line)}
    found: list[tuple[str, str]] = []
    pos = 0
    colon = line.find(":")
    while colon >= 0:
        run_start = runs.get(colon)
        word = _WORD_CHAR.search(line, max(run_start, pos), colon - 1) if run_start is not None else None
        match = None
        if word is not None:
            start = word.start()
            while start > pos and line[start - 1].isspace():  # `\s*`: str.isspace is the same set
                start -= 1
            match = PARAM_PATTERN.match(line, start)
        if match is None:
            colon = line.find(":", colon + 1)
            continue
        found.append((match.group(1), match.group(2)))  # key, value: both groups always match
        pos = match.end()
        colon = line.find(":", pos)
    return found


def parse_infotext(text: str) -> dict[str, str]:
    """The parameters in an infotext, with "Prompt" and "Negative prompt", as A1111 reads them."""
    *lines, last_line = text.strip().split("\n")
    found = find_parameters(last_line)
    if len(found) < MIN_PARAMETER_MATCHES:
        lines.append(last_line)
        last_line, found = "", []
    prompt, negative_prompt = _split_prompts(lines)

    params: dict[str, str] = {}
    for key, raw in found:
        value = unquote(raw)
        size = SIZE_PATTERN.match(value)
        if size is not None:
            params[f"{key}-1"], params[f"{key}-2"] = size.group(1), size.group(2)
        else:
            params[key] = value
    params["Prompt"] = prompt
    params["Negative prompt"] = negative_prompt
    for key, default in MISSING_DEFAULTS.items():
        params.setdefault(key, default)
    _split_sampler_schedule(params)
    return params
