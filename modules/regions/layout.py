"""Where each region is: the Matrix layout from the ratios and the prompt's keywords, or the Mask
layout from a colour-coded picture, and the weight maps the Attention mode mixes with.

Matrix (scripts/regions.py `matrixdealer` l.350-406, scripts/attention.py `matsepcalc` l.170-293):

- the layout is read from the prompt after the base/common parts (`ADDBASE`, `ADDCOMM`): with
  `ADDROW`/`ADDCOL` in it, the keywords give the groups and cells and the ratios are broadcast onto
  them (with only one kind of keyword and no `;`, the ratios are one group: a leading `1,` is added,
  or, with ADDROW in Columns mode / ADDCOL in Rows mode, the ratios are read with `,` as the group
  delimiter); without keywords the ratios alone give it. `BREAK`s left inside a cell count as
  extra parts the cell skips (it uses its first);
- Columns (Horizontal): groups are rows stacked top to bottom, their cells side by side left to
  right; Rows (Vertical): groups are columns left to right, their cells stacked top to bottom;
- on a token grid of h × w a range (a, b) covers int(h·a) to int(h·b), the last one to the edge
  (the extension takes int(h·b) there too and shifts the last cell one token back when the sum of
  the shares is just under 1, e.g. six equal columns: Easel does not copy that shift);
- base ratios are per cell, broadcast the same way; a cell mixes (1 − b)·its prompt + b·base.

Mask (scripts/attention.py `masksepcalc` l.295-366): the picture's regions (masks.py) resized to the
token grid with nearest-neighbour sampling; with a base, region k mixes (1 − bₖ)·its prompt + bₖ·base
(bₖ from the base ratios, the last value repeated) and the uncovered pixels take the base alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from modules.regions.errors import RegionalPromptError
from modules.regions.grammar import CELL_DELIMITER, ROW_DELIMITER, number_or, ranges, split_grid, split_weighted_grid
from modules.regions.masks import mask_assignment
from modules.regions.prompt import KEY_BASE, KEY_BREAK, KEY_COL, KEY_COMMON, KEY_ROW

RATIOS = "RP Ratios"
BASE_RATIOS = "RP Base Ratios"


@dataclass(frozen=True)
class Cell:
    """One Matrix region as fractions of the picture; `*_last`: it reaches that edge."""

    top: float
    bottom: float
    left: float
    right: float
    bottom_last: bool
    right_last: bool

    def rows(self, height: int) -> slice:
        return slice(int(height * self.top), height if self.bottom_last else int(height * self.bottom))

    def columns(self, width: int) -> slice:
        return slice(int(width * self.left), width if self.right_last else int(width * self.right))


@dataclass
class RegionLayout:
    """Region k uses prompt part `parts[k]` and mixes in the base prompt (part `base_part`) by
    `base_weights[k]`; where it is comes from `cells` (Matrix) or `mask` (Mask: region number per
    mask pixel, −1 for the base alone)."""

    parts: list[int]
    base_weights: list[float]
    base_part: int | None = None
    cells: list[Cell] = field(default_factory=list)
    mask: np.ndarray | None = None

    @property
    def context_parts(self) -> list[int]:
        """The prompt part of each weight map `weights` gives: the regions', then the base's."""
        return self.parts + ([self.base_part] if self.base_part is not None else [])

    def assignment(self, height: int, width: int) -> torch.Tensor:
        """(height, width) int64: the region of every position of a grid (−1: the base alone)."""
        if self.mask is not None:
            source = torch.from_numpy(self.mask).to(torch.float32)[None, None]
            resized = torch.nn.functional.interpolate(source, size=(height, width), mode="nearest")
            return resized[0, 0].round().to(torch.int64)
        grid = torch.full((height, width), -1, dtype=torch.int64)
        for region, cell in enumerate(self.cells):
            grid[cell.rows(height), cell.columns(width)] = region
        return grid

    def weights(self, height: int, width: int) -> torch.Tensor:
        """(J, height, width) float32, J = regions (+1 with a base): how much of each prompt every
        position takes; they add up to 1 everywhere."""
        grid = self.assignment(height, width)
        maps = [(grid == k).to(torch.float32) * (1.0 - b) for k, b in enumerate(self.base_weights)]
        if self.base_part is not None:
            base = (grid == -1).to(torch.float32)
            for k, b in enumerate(self.base_weights):
                base = base + (grid == k).to(torch.float32) * b
            maps.append(base)
        return torch.stack(maps)


def _structure_text(structure: str, break_chunks: bool) -> str:
    text = structure.replace(KEY_BREAK, "") if break_chunks else structure
    if KEY_COMMON in text:
        text = text.split(KEY_COMMON, 1)[1]
    if KEY_BASE in text:
        text = text.split(KEY_BASE, 1)[1]
    return text


def _float_list(values: list[list[float]], setting: str) -> None:
    if any(not np.isfinite(v) for group in values for v in group):
        raise RegionalPromptError(f"{setting}: every value must be a finite number.")


def matrix_layout(structure: str, ratios: str, base_ratios: str, *, rows: bool, use_base: bool, break_chunks: bool) -> RegionLayout:
    """The Matrix layout (see the module docstring); `ratios` after the flip option, `rows`: Rows
    (Vertical) submode."""
    text = _structure_text(structure, break_chunks)
    upper = text.upper()
    has_row, has_col = KEY_ROW in upper, KEY_COL in upper
    as_ratio, as_base = number_or(1.0), number_or(0.0)
    if has_row or has_col:
        breaks = split_grid(text, KEY_ROW, KEY_COL, lambda cell: cell.count(KEY_BREAK), flip=rows)
        flip = rows
        if ROW_DELIMITER not in ratios and has_row != has_col:
            flip = False
            if has_row == rows:
                ratios = "1" + CELL_DELIMITER + ratios
            else:
                flip = True
        group_weights, cells = split_weighted_grid(ratios, ROW_DELIMITER, CELL_DELIMITER, as_ratio, shape=breaks, flip=flip)
    else:
        group_weights, cells = split_weighted_grid(ratios, ROW_DELIMITER, CELL_DELIMITER, as_ratio, flip=rows)
        breaks = [[0] * len(group) for group in cells]
    bases = split_grid(base_ratios, ROW_DELIMITER, CELL_DELIMITER, as_base, shape=breaks, flip=rows)
    _float_list(bases, BASE_RATIOS)
    group_ranges = ranges(group_weights, RATIOS)
    part = 1 if use_base else 0
    layout = RegionLayout([], [], 0 if use_base else None)
    for g, ((start, end), group) in enumerate(zip(group_ranges, cells)):
        last_group = g == len(cells) - 1
        for c, (cell_start, cell_end) in enumerate(ranges(group, RATIOS)):
            last_cell = c == len(group) - 1
            if rows:  # groups are columns, their cells stacked
                cell = Cell(cell_start, cell_end, start, end, bottom_last=last_cell, right_last=last_group)
            else:
                cell = Cell(start, end, cell_start, cell_end, bottom_last=last_group, right_last=last_cell)
            layout.cells.append(cell)
            layout.parts.append(part)
            layout.base_weights.append(float(bases[g][c]) if use_base else 0.0)
            part += 1 + breaks[g][c]
    return layout


def mask_layout(mask: Any, base_ratios: str, *, region_parts: int, use_base: bool) -> RegionLayout:
    """The Mask layout: region k of the picture uses part k (after the base); `region_parts`: how
    many parts the prompt has for regions (the base ratios are broadcast over them)."""
    assignment, count = mask_assignment(mask, use_base)
    bases = split_grid(base_ratios, ROW_DELIMITER, CELL_DELIMITER, number_or(0.0), shape=[[0] * max(region_parts, 1)])[0]
    _float_list([bases], BASE_RATIOS)
    start = 1 if use_base else 0
    if count > region_parts:
        raise RegionalPromptError(f"Regional Prompter mask: it has {count} regions but the prompt has {region_parts} region prompts; "
                                  "separate one prompt for each colour with BREAK.")
    weights = [float(bases[k]) if use_base else 0.0 for k in range(count)]
    return RegionLayout([start + k for k in range(count)], weights, 0 if use_base else None, mask=assignment)
