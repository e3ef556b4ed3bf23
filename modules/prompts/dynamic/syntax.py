"""Dynamic Prompts syntax beside A1111's: the characters kept away from the dynamicprompts parser,
parsing with a readable error, and the wildcard references a template holds.

A1111's prompt syntax passes through dynamicprompts as plain text: emphasis `(a:1.2)` and `[a]`,
editing `[from:to:when]`, `BREAK`, `AND` and extra networks `<lora:name:0.8>` hold none of its
special characters. Three A1111 uses do, and break the extension (checked on dynamicprompts 0.31.0):

- `|` of an alternation `[a|b]` inside a variant: `{x [a|b]|c}` gives "x [a", "b]" and "c";
- `%` not followed by `{` (dynamicprompts' wrap command `%{...}`): "50% off" is a parse error;
- `$` not followed by `{` (a variable `${...}`) and not a variant's `$$` range separator:
  "a $5 bill" is a parse error.

`protect` swaps exactly those characters for private-use code points before parsing, and `restore`
puts them back in every expanded prompt, so a template the extension reads gives the same prompts
and a template it refused (or split) gives what A1111's syntax means. A backslash escapes the next
character for A1111 (`\\[`), so the character after one is left as it is.

Left as dynamicprompts reads them, as the extension does: `#` starts a comment that runs to the end
of the line (so does `//` where a new token starts, and `/* ... */` is one), and `__name__` is a wildcard (an embedding or LoRA name holding two underscores on each
side of something is read as one).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from dynamicprompts.commands import Command, WildcardCommand
from dynamicprompts.parser.parse import parse
from pyparsing import ParseBaseException

from modules.prompts.dynamic.args import DynamicPromptsError

PIPE, PERCENT, DOLLAR = "\ue000", "\ue001", "\ue002"
RESTORE = str.maketrans({PIPE: "|", PERCENT: "%", DOLLAR: "$"})
SPECIAL = ("{", "$", "%", "__")  # a text holding none of these is a plain literal to the parser


def protect(text: str) -> str:
    """`text` with A1111's `|` in `[...]`, lone `%` and lone `$` swapped out (module docstring)."""
    if not any(c in text for c in "|%$") or any(c in text for c in (PIPE, PERCENT, DOLLAR)):
        return text
    out: list[str] = []
    stack: list[str] = []
    escaped = False
    for i, ch in enumerate(text):
        after = text[i + 1] if i + 1 < len(text) else ""
        before = text[i - 1] if i else ""
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}":
            if stack and stack[-1] == ("[" if ch == "]" else "{"):
                stack.pop()
        elif ch == "|" and stack and stack[-1] == "[":
            ch = PIPE
        elif ch == "%" and after != "{":
            ch = PERCENT
        elif ch == "$" and after != "{" and not ("{" in stack and "$" in (before, after)):
            ch = DOLLAR
        out.append(ch)
    return "".join(out)


def restore(text: str) -> str:
    return text.translate(RESTORE)


def parse_template(text: str, wildcard: str | None = None, negative: bool = False) -> Command:
    """The dynamicprompts command tree of `text` (already protected): the prompt template, the
    negative one, or an entry of the file `wildcard`; a parse error says where."""
    try:
        return parse(text)
    except ParseBaseException as error:
        column = error.loc + 1
        near = restore(text)[max(0, error.loc - 15):error.loc + 15]
        if wildcard is not None:
            token = f"__{wildcard}__"
            raise DynamicPromptsError(f"An entry of wildcard {token} cannot be read at character {column} (near {near!r}): check its braces and __wildcard__ names.") from None
        if negative:
            raise DynamicPromptsError(f"The negative prompt template cannot be read at character {column} (near {near!r}): check its braces and __wildcard__ names.") from None
        raise DynamicPromptsError(f"The prompt template cannot be read at character {column} (near {near!r}): check its braces and __wildcard__ names.") from None


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, (list, tuple)):
        yield from node
    elif isinstance(node, dict):
        yield from node.values()
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for field in dataclasses.fields(node):
            yield getattr(node, field.name)


def wildcard_commands(command: Command) -> Iterator[WildcardCommand]:
    """Every wildcard reference in a command tree (inside variants, variables and wraps too)."""
    stack: list[Any] = [command]
    while stack:
        node = stack.pop()
        if isinstance(node, WildcardCommand):
            yield node
        if isinstance(node, (Command, list, tuple, dict)) or dataclasses.is_dataclass(node):
            stack.extend(_children(node))


def quick_wildcard_names(text: str) -> list[str] | None:
    """The wildcard names in `text` without the (slow: about 2 ms) parser when it holds nothing but
    literal text and plain `__name__` references, as the parser reads them; None when it must be parsed."""
    if any(c in text for c in "{}$%#") or "//" in text or "/*" in text:
        return None
    parts = text.split("__")
    if len(parts) % 2 == 0:
        return None
    names = parts[1::2]
    if any(not name or "(" in name or ")" in name or name.startswith("_") or name.endswith("_") for name in names):
        return None
    return names


def may_hold_syntax(text: str) -> bool:
    """Whether the parser could read `text` as anything but a literal (else it need not be parsed)."""
    return any(mark in text for mark in SPECIAL)
