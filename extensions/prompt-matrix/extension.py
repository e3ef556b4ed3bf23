"""Prompt matrix, built on Easel's extension API (A1111's script of the same name).

The prompt (or the negative prompt) is split at "|": the first part is always there, each other
part is on or off, so n options make 2^n images. A "|" inside braces belongs to a Dynamic Prompts
variant (`a {red|blue} house|snow`) and does not split: each cell's prompt is then a template the
job resolves from the cell's seed, so cells with the same seed pick the same variant. The grid has the first half of the options across
the columns and the rest down the rows, each label saying which options are on (+) and off (-).
Every image uses the
same seed unless "Use different seed for each picture" is ticked.
"""

from __future__ import annotations

import random
from dataclasses import replace

from modules.extensions.api import Checkbox, Dropdown, Script, combine_results, labelled_grid

MAX_OPTIONS = 8  # 256 images


def split_options(prompt: str) -> list[str]:
    """The prompt cut at each "|" outside braces."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(prompt):
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(depth - 1, 0)
        elif char == "|" and depth == 0:
            parts.append(prompt[start:index])
            start = index + 1
    return [part.strip() for part in [*parts, prompt[start:]]]


def combinations(prompt: str, at_start: bool, delimiter: str) -> tuple[list[str], list[str]]:
    """(options, prompts): prompt i has option j when bit j of i is set."""
    base, *options = split_options(prompt)
    if not options:
        raise ValueError('write the options after the prompt, separated by "|", e.g. "a house|snow|night"')
    if len(options) > MAX_OPTIONS:
        raise ValueError(f"{len(options)} options would make {2 ** len(options)} images; use at most {MAX_OPTIONS}")
    joiner = ", " if delimiter == "comma" else " "
    prompts = []
    for index in range(2 ** len(options)):
        chosen = [option for bit, option in enumerate(options) if index & (1 << bit)]
        parts = [*chosen, base] if at_start else [base, *chosen]
        prompts.append(joiner.join(part for part in parts if part))
    return options, prompts


def axis_labels(options: list[str]) -> tuple[list[str], list[str]]:
    """Column and row labels: one "+ snow" / "- snow" line per option of the group."""
    half = (len(options) + 1) // 2
    across, down = options[:half], options[half:]

    def labels(group: list[str]) -> list[str]:
        return ["\n".join(f"{'+' if (i >> j) & 1 else '-'} {name}" for j, name in enumerate(group)) for i in range(2 ** len(group))]

    return labels(across), labels(down)


def run_matrix(run):
    request = run.request
    negative = run.values["prompt_type"] == "negative"
    options, prompts = combinations(request.negative_prompt if negative else request.prompt, run.values["put_at_start"], run.values["delimiter"])
    if request.seed == -1:
        request = replace(request, seed=random.randrange(2**32))
    results = []
    for index, prompt in enumerate(prompts):
        if run.interrupted():
            break
        seed = request.seed + index if run.values["different_seeds"] else request.seed
        cell = replace(request, negative_prompt=prompt, seed=seed) if negative else replace(request, prompt=prompt, seed=seed)
        results.append(run.generate(replace(cell, n_iter=1, batch_size=1)))
        run.show([r.images[0] for r in results if r.images], f"Image {index + 1} of {len(prompts)}", (index + 1) / len(prompts))
    columns, rows = axis_labels(options)
    images = [r.images[0] if r.images else None for r in results] + [None] * (len(prompts) - len(results))
    width = len(columns)
    cells = [[images[row * width + col] for col in range(width)] for row in range(len(rows))]
    grid = labelled_grid(cells, columns, rows) if any(image is not None for image in images) else None
    return combine_results(results, grid=grid)


def setup(api):
    api.add_script(Script("Prompt matrix", [
        Checkbox("put_at_start", "Put variable parts at start of prompt", tooltip="Write the chosen parts before the fixed text, not after it."),
        Checkbox("different_seeds", "Use different seed for each picture", tooltip="Each combination gets its own seed (seed, seed+1, ...)."),
        Dropdown("prompt_type", "Select prompt", ["positive", "negative"], tooltip="Which prompt holds the 'a|b|c' parts."),
        Dropdown("delimiter", "Select joining char", ["comma", "space"], tooltip="What goes between the parts that are joined."),
    ], run=run_matrix))
