"""Emphasis parsing: prompt text -> weighted segments, with A1111's exact weights.

A1111 (`prompt_parser.parse_prompt_attention`) reads a prompt left to right:

- `(` opens a group that multiplies everything inside by 1.1 when it closes; `[` one that divides by
  1.1; `(text:1.3)` closes a round group with an explicit multiplier instead.
- Groups nest (the multipliers multiply). Groups still open at the end are closed there, round
  ones first (outermost first), then square ones.
- `\\(`, `\\)`, `\\[`, `\\]` and `\\\\` are the literal characters; a backslash before anything else
  disappears.
- A closing bracket with no open group of its kind is plain text; so is a `:` that does not start
  an explicit weight.
- `BREAK` as a whole upper-case word (with any whitespace around it) becomes the marker segment
  `("BREAK", -1)`. Being a weight, the marker is multiplied like any segment, so a `BREAK` inside
  brackets stops being a marker; A1111 does the same.
- Neighbouring segments with equal weights are joined; an empty prompt gives `[("", 1.0)]`.

The weights are computed with the same float operations in the same order as A1111, so they are
equal to its values bit for bit (e.g. `(((sky)))` -> 1.4641000000000006).
"""

from __future__ import annotations

import math
import re

from modules.errors import UserError

BREAK = "BREAK"
BREAK_WEIGHT = -1.0
ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

# Closing a group scales every segment since it opened, so n open groups cost n x segments: 30,000
# unclosed "(|" took minutes. More than this many open at once is refused (prompt editing refuses
# nesting deeper than this too); A1111 accepts them, with weights of 1.1**100 = 13,780 and beyond.
MAX_OPEN_GROUPS = 100
_ESCAPABLE = "()[]\\"
_SPECIAL = "\\()[]:"
# `:1.3)` (spaces allowed around the number) closes a round group with that multiplier.
_EXPLICIT_WEIGHT = re.compile(r":\s*([+-]?[.\d]+)\s*\)")
# A1111's `\s*\bBREAK\b\s*`, split the same way. Written as is, it retries the leading `\s*` at every
# position of a whitespace run, which is quadratic (a prompt of 8,000 spaces took seconds); a match
# can only start where whitespace starts (or right after the previous BREAK's whitespace), so the
# first branch refuses to start inside a run and the second covers the start after a match.
_BREAK_SPLIT = re.compile(r"(?<!\s)\s*\bBREAK\b\s*|\bBREAK\b\s*")


class PromptSyntaxError(UserError):
    """A prompt that A1111 would also refuse, e.g. an emphasis weight that is not a number."""


def _plain_run_end(text: str, start: int) -> int:
    """End of the run of ordinary characters (none of `\\ ( ) [ ] :`) that starts at `start`."""
    end = start
    while end < len(text) and text[end] not in _SPECIAL:
        end += 1
    return end


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """Splits a prompt into (text, weight) segments exactly as A1111's emphasis parser does.

    >>> parse_emphasis("an (important) word")
    [('an ', 1.0), ('important', 1.1), (' word', 1.0)]
    >>> parse_emphasis("a BREAK b")
    [('a', 1.0), ('BREAK', -1.0), ('b', 1.0)]

    Raises PromptSyntaxError for an explicit weight that is not a number, such as `(a:1.2.3)`
    (A1111 fails the generation there too), for a weight too large for a float (`(a:1e999)`
    written out in digits), which A1111 turns into a black image, and for more than
    MAX_OPEN_GROUPS brackets open at once.
    """
    segments: list[list] = []  # [text, weight]; lists so weights can be scaled in place
    open_round: list[int] = []  # index into `segments` where each open group starts
    open_square: list[int] = []

    def scale_from(start: int, multiplier: float) -> None:
        for segment in segments[start:]:
            segment[1] *= multiplier

    def add_text(piece: str) -> None:
        for index, part in enumerate(_BREAK_SPLIT.split(piece)):
            if index > 0:
                segments.append([BREAK, BREAK_WEIGHT])
            segments.append([part, 1.0])

    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            following = text[pos + 1] if pos + 1 < len(text) else ""
            if following and following in _ESCAPABLE:
                segments.append([following, 1.0])
                pos += 2
            else:
                segments.append(["", 1.0])  # a lone backslash vanishes (but still makes a segment)
                pos += 1
        elif char in "([":
            if len(open_round) + len(open_square) >= MAX_OPEN_GROUPS:
                raise PromptSyntaxError(
                    f"The prompt has more than {MAX_OPEN_GROUPS} brackets open at once; close them or use fewer."
                )
            (open_round if char == "(" else open_square).append(len(segments))
            pos += 1
        elif char == ":":
            match = _EXPLICIT_WEIGHT.match(text, pos)
            if match and open_round:
                scale_from(open_round.pop(), _weight_value(match.group(1)))
                pos = match.end()
            elif match:
                add_text(match.group(0))  # `:1.2)` with no open group is just text
                pos = match.end()
            else:
                add_text(":")
                pos += 1
        elif char == ")" and open_round:
            scale_from(open_round.pop(), ROUND_MULTIPLIER)
            pos += 1
        elif char == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_MULTIPLIER)
            pos += 1
        elif char in ")]":
            add_text(char)
            pos += 1
        else:
            end = _plain_run_end(text, pos)
            add_text(text[pos:end])
            pos = end

    for start in open_round:
        scale_from(start, ROUND_MULTIPLIER)
    for start in open_square:
        scale_from(start, SQUARE_MULTIPLIER)

    if not segments:
        return [("", 1.0)]
    if not all(math.isfinite(weight) for _, weight in segments):
        raise PromptSyntaxError(
            "The prompt's emphasis makes a weight too large to compute; use weights below 100."
        )
    merged: list[list] = [segments[0]]
    for segment in segments[1:]:
        if segment[1] == merged[-1][1]:
            merged[-1][0] += segment[0]
        else:
            merged.append(segment)
    return [(segment_text, float(weight)) for segment_text, weight in merged]


def _weight_value(written: str) -> float:
    try:
        value = float(written)
    except ValueError:
        raise PromptSyntaxError(
            f"The emphasis weight '{written}' in the prompt is not a number: write one number, "
            f"like (word:1.2)."
        ) from None
    if not math.isfinite(value):
        raise PromptSyntaxError(f"The emphasis weight '{written:.20}...' in the prompt is too large; write a number like (word:1.2).")
    return value


def is_break(segment: tuple[str, float]) -> bool:
    """Whether a segment from `parse_emphasis` is the BREAK marker (a chunk boundary)."""
    return segment[0] == BREAK and segment[1] == BREAK_WEIGHT

