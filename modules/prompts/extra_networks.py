"""Extra networks written in a prompt: `<lora:name:0.8>`, `<hypernet:name:0.5>`.

A1111 (`extra_networks.parse_prompt`) removes every `<kind:args>` (kind = word characters, args =
anything up to the next `>`) from the prompt before anything else reads it, so a tag inside an
editing or alternation construct still applies at every step. The arguments are split on `:`;
an argument of the form `key=value` (exactly one `=`) is named, every other one is positional.
Nothing else is touched: the text around a removed tag keeps its spaces and commas.

LoRA (`extra_networks_lora.py`): `<lora:name[:te[:unet[:dyn]]]>` or named `te=`, `unet=`, `dyn=`.
te defaults to 1.0; unet defaults to te (after a named `te=` was applied); a named value wins over
the positional one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TypeVar

from modules.prompts.parser import PromptSyntaxError

TAG_PATTERN = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True)
class ExtraNetworkCall:
    """One `<kind:arg:arg...>` tag as written."""

    kind: str  # "lora", "hypernet", ...
    items: tuple[str, ...]
    positional: tuple[str, ...] = field(init=False, repr=False)
    named: dict[str, str] = field(init=False, repr=False, hash=False, compare=False)

    def __post_init__(self) -> None:
        positional: list[str] = []
        named: dict[str, str] = {}
        for item in self.items:
            parts = item.split("=")
            if len(parts) == 2:
                named[parts[0]] = parts[1]  # a later `te=` replaces an earlier one
            else:
                positional.append(item)
        object.__setattr__(self, "positional", tuple(positional))
        object.__setattr__(self, "named", named)

    @property
    def tag(self) -> str:
        """The tag as it appears in a prompt."""
        return f"<{self.kind}:{':'.join(self.items)}>"


@dataclass(frozen=True)
class LoraCall:
    """A LoRA to apply: its name (file stem or alias) and multipliers for text encoder and UNet."""

    name: str
    te: float
    unet: float
    dyn: int | None = None  # "dynamic dim": use only the first `dyn` ranks (LyCORIS)


def extract_extra_networks(prompt: str) -> tuple[str, list[ExtraNetworkCall]]:
    """The prompt without its extra-network tags, and the tags in the order written.

    >>> extract_extra_networks("a cat <lora:fluffy:0.8>, best")
    ('a cat , best', [ExtraNetworkCall(kind='lora', items=('fluffy', '0.8'))])
    """
    calls: list[ExtraNetworkCall] = []

    def remove(match: re.Match[str]) -> str:
        calls.append(ExtraNetworkCall(match.group(1), tuple(match.group(2).split(":"))))
        return ""

    return TAG_PATTERN.sub(remove, prompt), calls


def lora_call(call: ExtraNetworkCall) -> LoraCall:
    """Reads a `<lora:...>` tag's arguments as A1111's LoRA extension does.

    Raises PromptSyntaxError when the name is missing or a multiplier is not a number.
    """
    if not call.positional:
        raise PromptSyntaxError(f"{call.tag} names no LoRA: write <lora:name:0.8>.")
    te = _number(call, call.positional[1], float) if len(call.positional) > 1 else 1.0
    if "te" in call.named:
        te = _number(call, call.named["te"], float)
    unet = _number(call, call.positional[2], float) if len(call.positional) > 2 else te
    if "unet" in call.named:
        unet = _number(call, call.named["unet"], float)
    dyn = _number(call, call.positional[3], int) if len(call.positional) > 3 else None
    if "dyn" in call.named:
        dyn = _number(call, call.named["dyn"], int)
    return LoraCall(call.positional[0], te, unet, dyn)


def hypernetwork_call(call: ExtraNetworkCall) -> tuple[str, float]:
    """A `<hypernet:name[:multiplier]>` tag's name and multiplier (default 1.0)."""
    multiplier = _number(call, call.items[1], float) if len(call.items) > 1 else 1.0
    return call.items[0], multiplier


Number = TypeVar("Number", int, float)


def _number(call: ExtraNetworkCall, written: str, kind: type[Number]) -> Number:
    """`written` as an int or a finite float: float() also takes "nan", "inf" and "1e999", which
    would scale the weights to NaN (a black image), so they are refused like any other non-number."""
    try:
        value: Number | None = kind(written)
    except ValueError:
        value = None
    if value is None or (kind is float and not math.isfinite(value)):
        expected = "a whole number" if kind is int else "a number"
        raise PromptSyntaxError(f"In {call.tag}, '{written}' should be {expected}, as in <lora:name:0.8>.")
    return value
