"""X/Y/Z plot, built on Easel's extension API: one image per combination of the axes' values,
shown as each finishes, then a labelled grid (one per Z value, side by side) first in the gallery,
followed by every cell's image with its own infotext.

All values are checked before the first image (a typo in the 9th value fails at once, not after
eight images). The model, and the prompt conditioning cached on it, stay loaded across cells; a
checkpoint axis goes through its values in order and the original model is put back afterwards.
With "Keep -1 for seeds" off (A1111's default), a random seed is drawn once so every cell shares it.
"""

from __future__ import annotations

import random
from dataclasses import replace
from itertools import product

from modules.extensions.api import Checkbox, Dropdown, Script, Textbox, combine_results, labelled_grid, side_by_side

from .axes import AXES

AXIS_NAMES = list(AXES)
MAX_CELLS = 500
VALUES_TIP = "Comma-separated values; ranges as 1-5, 1-10 (+3) or 1-10 [4]."


def controls():
    return [
        Dropdown("x_type", "X type", AXIS_NAMES, "Seed", tooltip="The setting that changes from column to column."),
        Textbox("x_values", "X values", tooltip=VALUES_TIP),
        Dropdown("y_type", "Y type", AXIS_NAMES, "Nothing", tooltip="The setting that changes from row to row."),
        Textbox("y_values", "Y values", tooltip=VALUES_TIP),
        Dropdown("z_type", "Z type", AXIS_NAMES, "Nothing", tooltip="The setting that makes a separate grid for each value."),
        Textbox("z_values", "Z values", tooltip=VALUES_TIP),
        Checkbox("draw_legend", "Draw legend", True, tooltip="Write each row's and column's value beside the grid."),
        Checkbox("include_lone_images", "Include sub images", True, tooltip="Show and save each picture on its own as well as the grid."),
        Checkbox("no_fixed_seeds", "Keep -1 for seeds", False, tooltip="On: a seed of -1 draws a new seed for every cell; off: one is drawn and all cells share it."),
    ]


def resolve_axes(run) -> list[tuple[object, list]]:
    """(axis, values) for X, Y, Z; an unused axis is (None, [None])."""
    axes = []
    for letter in "xyz":
        axis = AXES[run.values[f"{letter}_type"]]
        if axis is None:
            axes.append((None, [None]))
            continue
        try:
            values = axis.parse(run.values[f"{letter}_values"], run)
        except Exception as error:  # a bad number, or a sampler/checkpoint Easel does not know: say which axis
            raise ValueError(f"{letter.upper()} axis ({axis.label}): {error}") from None
        if not values:
            raise ValueError(f"{letter.upper()} axis ({axis.label}) has no values: type some, e.g. 1-4 or 5, 7.5, 10")
        axes.append((axis, values))
    cells = len(axes[0][1]) * len(axes[1][1]) * len(axes[2][1])
    if cells > MAX_CELLS:
        raise ValueError(f"{cells} cells is more than the {MAX_CELLS} a plot may have: use fewer values")
    return axes


def label(axis, value) -> str:
    return "" if axis is None else axis.fmt(value)


def run_plot(run):
    (x_axis, xs), (y_axis, ys), (z_axis, zs) = resolve_axes(run)
    request = run.request
    if not run.values["no_fixed_seeds"] and request.seed == -1:
        request = replace(request, seed=random.randrange(2**32))
    if not run.values["no_fixed_seeds"] and request.subseed == -1:
        request = replace(request, subseed=random.randrange(2**32))
    total = len(xs) * len(ys) * len(zs)
    # Z outermost, then Y, then X (as A1111); a checkpoint axis changes least often when outermost.
    results, shown, cells = [], [], {}
    for index, (z, y, x) in enumerate(product(zs, ys, xs)):
        if run.interrupted():
            break
        cell = request
        for axis, value, values in ((z_axis, z, zs), (y_axis, y, ys), (x_axis, x, xs)):
            if axis is not None:
                cell = axis.apply(cell, value, values)
        result = run.generate(cell)
        if not result.images:
            continue
        results.append(result)
        cells[(z, y, x)] = result.images[0]
        shown.append(result.images[0])
        run.show(shown, f"Cell {index + 1} of {total}", (index + 1) / total)
    if not results:
        return combine_results([])
    grids = []
    for z in zs:
        rows = [[cells.get((z, y, x)) for x in xs] for y in ys]
        if all(image is None for row in rows for image in row):
            continue
        legend = run.values["draw_legend"]
        grids.append(labelled_grid(rows, [label(x_axis, x) for x in xs] if legend else [], [label(y_axis, y) for y in ys] if legend else []))
    grid = side_by_side(grids, [label(z_axis, z) for z in zs]) if grids else None
    combined = combine_results(results, grid=grid)
    if not run.values["include_lone_images"]:
        combined.images, combined.infotexts, combined.image_seeds = combined.images[:1], combined.infotexts[:1], combined.image_seeds[:1]
    return combined


def setup(api):
    api.add_script(Script("X/Y/Z plot", controls(), run=run_plot))
