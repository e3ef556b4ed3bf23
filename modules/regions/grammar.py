"""The Regional Prompter's ratio grammar (hako-mikan/sd-webui-regional-prompter, scripts/regions.py:
`split_l2` l.94-173, `list_percentify`/`list_cumsum`/`list_rangify` l.178-235, `changecs` l.263,
`floatdef` l.83), written anew.

A ratio text such as `1,2,1,1;2,4,6` is split into groups by one delimiter and each group into
items by the other (`flip` swaps them: Rows mode reads `,` as the group delimiter). With `singles`
the first item of each group is the group's own weight and the rest are its cells (a group of one
item uses it for both). With a `shape` (a list of groups of cells, from the prompt's keywords) the
values are broadcast onto it the extension's way:

- a group shorter than its place repeats its last value;
- a group longer than its place overflows into the next place (with `singles`, the first overflowing
  value becomes that next group's weight);
- values beyond the shape are ignored; places left over get the last value read;
- with `singles`, missing group weights repeat the last weight.

A value that is not a number takes the default (1 for ratios, 0 for base ratios), as the extension
does.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, TypeVar

from modules.regions.errors import RegionalPromptError

T = TypeVar("T")
ROW_DELIMITER = ";"
CELL_DELIMITER = ","


def number_or(default: float) -> Callable[[str], float]:
    """`float(text)`, or `default` when the text is not a number (empty items, double commas)."""

    def convert(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return default

    return convert


def split_grid(text: str, outer: str, inner: str, convert: Callable[[str], T], *, flip: bool = False,
               shape: Sequence[Sequence[object]] | None = None) -> list[list[T]]:
    """`text` split into groups (by `outer`) of items (by `inner`), each item converted; with
    `shape`, broadcast onto it (see the module docstring)."""
    return _split(text, outer, inner, convert, flip, shape, singles=False)[1]


def split_weighted_grid(text: str, outer: str, inner: str, convert: Callable[[str], T], *, flip: bool = False,
                        shape: Sequence[Sequence[object]] | None = None) -> tuple[list[T], list[list[T]]]:
    """(group weights, cells of each group): the first item of each group is its weight."""
    return _split(text, outer, inner, convert, flip, shape, singles=True)


def _split(text: str, outer: str, inner: str, convert: Callable[[str], T], flip: bool,
           shape: Sequence[Sequence[object]] | None, singles: bool) -> tuple[list[T], list[list[T]]]:
    if flip:
        outer, inner = inner, outer
    groups = [[convert(item) for item in group.split(inner)] for group in text.split(outer)]
    if shape is None:
        if not singles:
            return [], groups
        return [g[0] for g in groups], [g[1:] if len(g) > 1 else g for g in groups]
    weights: list[T] = []
    cells: list[list[T]] = []
    place = 0
    last: T | None = None
    for values in groups:
        last = values[-1]
        while place < len(shape):
            if singles:
                weights.append(values[0])
                if len(values) > 1:
                    values = values[1:]
            width = len(shape[place])
            place += 1
            if width >= len(values):
                cells.append(values + [values[-1]] * (width - len(values)))
                break
            cells.append(values[:width])
            values = values[width:]
    while len(cells) < len(shape):
        cells.append([last] * len(shape[len(cells)]))  # type: ignore[list-item]
    if singles and weights:
        weights += [weights[-1]] * (len(shape) - len(weights))
    return weights, cells


def ranges(values: Sequence[float], setting: str) -> list[tuple[float, float]]:
    """Each value's share of the whole as (start, end) fractions, summed left to right as the
    extension sums them (so the float boundaries are the same)."""
    if any(not math.isfinite(v) or v < 0 for v in values):
        given = ", ".join(f"{v:g}" for v in values)
        raise RegionalPromptError(f"{setting}: every ratio must be a number of 0 or more (got {given}).")
    total = sum(values)
    if total <= 0:
        raise RegionalPromptError(f"{setting}: the ratios of a group add up to 0; give at least one a positive value.")
    ends: list[float] = []
    for share in (v / total for v in values):
        ends.append(share if not ends else share + ends[-1])
    return list(zip([0.0, *ends[:-1]], ends))


def swap_delimiters(ratios: str) -> str:
    """The "flip" option: `,` and `;` swapped (the extension's `changecs`, `_` as its go-between)."""
    return ratios.replace(",", "_").replace(";", ",").replace("_", ";")
