"""Prompt editing, alternation and AND: which text the model sees at each sampling step.

This reproduces A1111's `get_learned_conditioning_prompt_schedules` and `get_multicond_prompt_list`
(v1.10.1) without lark. A1111 parses with this grammar (Earley, ambiguities resolved by lark):

    start:       (prompt | stray bracket or colon)*
    prompt:      (emphasized | scheduled | alternate | plain | whitespace)*
    emphasized:  "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
    scheduled:   "[" [prompt ":"] prompt ":" [ws] NUMBER [ws] "]"
    alternate:   "[" prompt ("|" [prompt])+ "]"
    plain:       (any character but \\ [ ] ( ) : |  or  a backslash and the character after it)+

Facts that follow and that we keep:

1. Brackets that do not form a construct are kept as text, but only at the top level; inside a
   construct every bracket must be balanced, otherwise the enclosing construct is plain text.
2. When a `[` can start a construct, the construct is taken (the outer one, for nested ones).
   A1111 does the same except where stray brackets or colons are left over at the top level
   (`[a:1]))`): there lark breaks the tie by set order, so A1111's answer depends on Python's
   hash seed and changes between launches. We always take the construct, one of its answers.
3. A `|` outside an alternation, or a final backslash with nothing to escape, makes the whole
   prompt unparseable: A1111 then uses the prompt as written at every step, schedules and all.
4. Emphasis brackets stay in the text (the emphasis parser reads them later), so a construct only
   changes the text through its scheduled and alternate parts.
5. `when` with a "." is a fraction of the steps, without one a step number; `int()` truncates,
   the result is clamped to at most `steps`, and a boundary below 1 means "after" at every step.
   For the hires pass, integers count on from the first pass (`when - base_steps`) and fractions
   from 1 (`(when - 1) * hires_steps`). `use_old_scheduling` is A1111's legacy rule: below 1 is a
   fraction, otherwise a step, whatever is written.
6. Step t (1-based, as A1111 numbers the schedule) uses `before` while t <= boundary. Each
   alternation makes every step a boundary; step t uses item (t - 1) mod n.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from modules.prompts.parser import PromptSyntaxError

MAX_NESTING = 100  # brackets deeper than this are refused rather than overflow Python's stack

_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
# lark's common SIGNED_NUMBER, alternatives in the same order (the first that matches is taken).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+[eE][+-]?[0-9]+|(?:[0-9]+\.(?:[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+)")
_SPACES = re.compile(r"\s*")
_AND = re.compile(r"\bAND\b")
# A1111 reads a sub-prompt with `(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*` (fullmatch); that
# pattern is quadratic on long whitespace runs, so `_subprompt_weight` does the same by hand.
_SUBPROMPT_NUMBER = re.compile(r"[-+]?(?:\d+\.?|\d*\.\d+)")


@dataclass(frozen=True)
class Scheduled:
    """`[before:after:when]`; `before` is empty for `[after:when]`."""

    before: tuple["Node", ...]
    after: tuple["Node", ...]
    when: str  # the number as written; its meaning depends on the step counts


@dataclass(frozen=True)
class Alternation:
    """`[a|b|c]`: one option per step, in turn."""

    options: tuple[tuple["Node", ...], ...]


Node = Union[str, Scheduled, Alternation]


class _Grammar:
    """Recursive descent over the grammar above. A construct starting at a given position has at
    most one possible extent, so results are memoised by position and each is parsed once."""

    def __init__(self, text: str):
        self.text = text
        self._constructs: dict[int, tuple[list[Node], int] | None] = {}
        self._depth = 0

    def parse(self) -> list[Node] | None:
        """The prompt's nodes, or None when A1111's parser would reject the whole prompt."""
        text, pos, nodes = self.text, 0, []
        while pos < len(text):
            char = text[pos]
            found = self._construct(pos) if char in "[(" else None
            if found is not None:
                parsed, pos = found
                nodes.extend(parsed)
            elif char in "[]():":
                nodes.append(char)  # a stray bracket or colon is text at the top level
                pos += 1
            else:
                match = _PLAIN.match(text, pos)
                if match is None:  # `|` outside an alternation, or a lone final backslash
                    return None
                nodes.append(match.group())
                pos = match.end()
        return nodes

    def _prompt(self, pos: int) -> tuple[list[Node], int]:
        """The longest prompt from `pos`: text and complete constructs, up to the first character
        that can only belong to an enclosing construct (or cannot be parsed there)."""
        text, nodes = self.text, []
        while pos < len(text):
            if text[pos] in "[(":
                found = self._construct(pos)
                if found is None:
                    break
                parsed, pos = found
                nodes.extend(parsed)
                continue
            match = _PLAIN.match(text, pos)
            if match is None:
                break
            nodes.append(match.group())
            pos = match.end()
        return nodes, pos

    def _construct(self, pos: int) -> tuple[list[Node], int] | None:
        if pos not in self._constructs:
            self._depth += 1
            if self._depth > MAX_NESTING:
                raise PromptSyntaxError(f"The prompt nests brackets more than {MAX_NESTING} deep; use fewer brackets.")
            try:
                parsed = self._round(pos) if self.text[pos] == "(" else self._square(pos)
            finally:
                self._depth -= 1
            self._constructs[pos] = parsed
        return self._constructs[pos]

    def _at(self, pos: int) -> str:
        return self.text[pos] if pos < len(self.text) else ""

    def _round(self, pos: int) -> tuple[list[Node], int] | None:
        first, pos = self._prompt(pos + 1)
        if self._at(pos) == ")":
            return ["(", *first, ")"], pos + 1
        if self._at(pos) != ":":
            return None
        second, pos = self._prompt(pos + 1)
        if self._at(pos) != ")":
            return None
        return ["(", *first, ":", *second, ")"], pos + 1

    def _square(self, pos: int) -> tuple[list[Node], int] | None:
        first, pos = self._prompt(pos + 1)
        delimiter = self._at(pos)
        if delimiter == "]":
            return ["[", *first, "]"], pos + 1
        if delimiter == "|":
            options = [tuple(first)]
            while self._at(pos) == "|":
                option, pos = self._prompt(pos + 1)
                options.append(tuple(option))
            if self._at(pos) != "]":
                return None
            return [Alternation(tuple(options))], pos + 1
        if delimiter != ":":
            return None
        ending = self._when(pos + 1)  # `[after:when]`
        if ending is not None:
            when, end = ending
            return [Scheduled((), tuple(first), when)], end
        second, pos = self._prompt(pos + 1)  # `[before:after:when]`
        if self._at(pos) != ":":
            return None
        ending = self._when(pos + 1)
        if ending is None:
            return None
        when, end = ending
        return [Scheduled(tuple(first), tuple(second), when)], end

    def _when(self, pos: int) -> tuple[str, int] | None:
        """`[ws] NUMBER [ws] ]` from `pos`: the number and the position after the `]`."""
        pos = _after_spaces(self.text, pos)
        number = _NUMBER.match(self.text, pos)
        if number is None:
            return None
        pos = _after_spaces(self.text, number.end())
        if self._at(pos) != "]":
            return None
        return number.group(), pos + 1


def _after_spaces(text: str, pos: int) -> int:
    """The position after the whitespace (if any) at `pos`."""
    spaces = _SPACES.match(text, pos)
    assert spaces is not None  # `\s*` matches everywhere, if only the empty string
    return spaces.end()


def parse_schedule(prompt: str) -> list[Node] | None:
    """The prompt as text pieces and scheduled/alternate nodes; None when A1111 could not parse it
    (it then uses the prompt unchanged at every step)."""
    try:
        return _Grammar(prompt).parse()
    except RecursionError:  # only when called from an already deep stack
        raise PromptSyntaxError("The prompt nests brackets too deeply; use fewer brackets.") from None


def _boundary(when: str, steps: int, base_steps: int, hires: bool, use_old_scheduling: bool) -> int:
    value = float(when)
    if use_old_scheduling:
        value = value * steps if value < 1 else value
    elif "." in when:
        value = (value - (1.0 if hires else 0.0)) * steps
    else:
        value = value - (base_steps if hires else 0)
    if math.isinf(value):  # A1111 raises OverflowError here; "forever" / "never" is what was meant
        return steps if value > 0 else 0
    return min(steps, int(value))


def _walk(nodes: Sequence[Node], visit: Callable[[Node], None]) -> None:
    for node in nodes:
        visit(node)
        if isinstance(node, Scheduled):
            _walk(node.before, visit)
            _walk(node.after, visit)
        elif isinstance(node, Alternation):
            for option in node.options:
                _walk(option, visit)


def _render(nodes: Sequence[Node], step: int, boundary: Callable[[str], int]) -> str:
    pieces: list[str] = []

    def emit(items: Sequence[Node]) -> None:
        for node in items:
            if isinstance(node, str):
                pieces.append(node)
            elif isinstance(node, Scheduled):
                emit(node.before if step <= boundary(node.when) else node.after)
            else:
                emit(node.options[(step - 1) % len(node.options)])

    emit(nodes)
    return "".join(pieces)


def prompt_schedule(prompt: str, steps: int, hires_steps: int | None = None,
                    use_old_scheduling: bool = False) -> list[tuple[int, str]]:
    """The prompt's texts over the sampling steps as (last step, text) pairs, in step order.

    `steps` is the first pass's step count; with `hires_steps` the schedule is the hires pass's
    (its steps numbered 1..hires_steps). The last entry always ends at the pass's step count.

    >>> prompt_schedule("a [cat:dog:5]", 20)
    [(5, 'a cat'), (20, 'a dog')]
    """
    hires = hires_steps is not None and not use_old_scheduling
    total = hires_steps if hires and hires_steps is not None else steps  # `hires` implies it is not None
    nodes = parse_schedule(prompt)
    if nodes is None:
        return [(total, prompt)]

    def boundary(when: str) -> int:
        return _boundary(when, total, steps, hires, use_old_scheduling)

    ends = {total}

    def collect(node: Node) -> None:
        if isinstance(node, Scheduled):
            end = boundary(node.when)
            if end >= 1:
                ends.add(end)
        elif isinstance(node, Alternation):
            ends.update(range(1, total + 1))

    _walk(nodes, collect)
    return [(end, _render(nodes, end, boundary)) for end in sorted(ends)]


def text_at_step(schedule: list[tuple[int, str]], step: int) -> str:
    """The text of the first entry whose last step is >= `step`.

    This is A1111's `reconstruct_cond_batch` lookup. A1111 passes its sampler's step counter there,
    which starts at 0, so in A1111 `[cat:dog:5]` at 20 steps is sampled with "cat" for six model
    calls (counter 0..5). Like A1111, a step past the last entry gets the first entry.
    """
    for end, text in schedule:
        if step <= end:
            return text
    return schedule[0][1]


def split_and(prompt: str) -> list[tuple[str, float]]:
    """Splits a positive prompt into composable-diffusion parts, as A1111 does.

    The separator is the word `AND` (upper case, whole word: `\\bAND\\b`). Each part may end with
    `:weight` (default 1.0); the weight and trailing whitespace are removed from the part's text,
    leading whitespace is kept.

    >>> split_and("a cat AND a dog:0.5")
    [('a cat', 1.0), (' a dog', 0.5)]

    Raises PromptSyntaxError for a weight too large for a float (hundreds of digits).
    """
    parts = []
    for part in _AND.split(prompt):
        text, written = _subprompt_weight(part)
        weight = float(written) if written is not None else 1.0
        if not math.isfinite(weight):
            raise PromptSyntaxError(f"The AND weight '{written:.20}...' in the prompt is too large; write a number like 0.5.")
        parts.append((text, weight))
    return parts


def _subprompt_weight(part: str) -> tuple[str, str | None]:
    """A1111's sub-prompt pattern by hand: the shortest text such that the rest is optional
    whitespace, `:`, whitespace, a number and whitespace; the number as written, or None."""
    stripped = part.rstrip()
    colon = stripped.rfind(":")
    if colon >= 0:
        written = stripped[colon + 1:].lstrip()
        if _SUBPROMPT_NUMBER.fullmatch(written):
            return stripped[:colon].rstrip(), written
    return stripped, None
