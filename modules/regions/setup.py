"""A generation's regions from its settings and prompts: what the engine is handed.

`prepare_regions(request, prompt, negative)` gives None when the extension would not act (not
active, or the prompt holds none of its keywords nor AND; then no infotext keys either), raises a
RegionalPromptError for settings Easel cannot run (Latent calc mode, Prompt mode, the Random
submode; a Mask mode without a mask; more regions than prompts), and otherwise the prompt parts,
the layout and the infotext keys. The engine then asks it for the conditioning (`schedules`) and
for each pass's `RegionPlan` (`plan`): None for a pass the options turn regions off in ("Enabled
only in Hires Fix", "Disabled in Hires Fix"), where the parts still form the prompt, joined, as the
extension's `hr_returner` runs plain attention over the whole context. The hires pass uses the
regional prompt, not the hires prompt (the extension's `hrdealer` copies it over).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modules.regions.args import RegionalRequest
from modules.regions.attention import RegionPlan
from modules.regions.conditioning import Schedule, regional_schedule
from modules.regions.errors import RegionalPromptError
from modules.regions.grammar import swap_delimiters
from modules.regions.infotext import regional_infotext
from modules.regions.layout import RegionLayout, mask_layout, matrix_layout
from modules.regions.prompt import OPT_HIRES_ONLY, OPT_NOT_HIRES, RegionalPrompt, activates, split_prompt

if TYPE_CHECKING:
    from modules.prompts.conditioning import PromptEncoder


@dataclass
class PreparedRegions:
    request: RegionalRequest
    prompt: RegionalPrompt
    layout: RegionLayout

    @property
    def infotext(self) -> dict[str, str]:
        return regional_infotext(self.request)

    @property
    def negative_is_regional(self) -> bool:
        return len(self.prompt.negative_parts) > 1

    def schedules(self, encoder: "PromptEncoder", steps: int, hires_steps: int | None = None) -> tuple[Schedule, Schedule]:
        """(conditional, unconditional) `StepConditions.schedule`s; the negative is plain when it has one part."""
        positive = regional_schedule(encoder, self.prompt.parts, steps, hires_steps)
        negative = regional_schedule(encoder, self.prompt.negative_parts, steps, hires_steps, plain_when_single=True)
        return positive, negative

    def plan(self, hires: bool = False) -> RegionPlan | None:
        """The pass's plan, or None when the options leave this pass without regions."""
        off = OPT_NOT_HIRES if hires else OPT_HIRES_ONLY
        return None if off in self.request.options else RegionPlan(self.layout)


def prepare_regions(request: RegionalRequest | None, prompt: str, negative: str) -> PreparedRegions | None:
    if request is None or not request.active or not activates(prompt):
        return None
    request.check_supported()
    matrix = request.mode == "Matrix"
    ratios = swap_delimiters(request.ratios) if request.flip else request.ratios
    split = split_prompt(prompt, negative, matrix=matrix, rows=request.rows, ratios=ratios, use_base=request.use_base,
                         use_common=request.use_common, use_ncommon=request.use_ncommon, options=request.options)
    if matrix:
        layout = matrix_layout(split.structure, ratios, request.base_ratios, rows=request.rows, use_base=split.use_base,
                               break_chunks=split.break_chunks)
    else:
        if request.mask is None:
            raise RegionalPromptError("Regional Prompter Mask mode needs a mask picture (arg 17): each region painted in its colour.")
        region_parts = len(split.parts) - (1 if split.use_base else 0)
        layout = mask_layout(request.mask, request.base_ratios, region_parts=region_parts, use_base=split.use_base)
    needed = max(layout.context_parts) + 1
    if needed > len(split.parts):
        parts = len(split.parts)
        raise RegionalPromptError(f"Regional Prompter: the layout needs {needed} prompt parts (its regions, and the base if used) but the "
                                  f"prompt has {parts}; separate one prompt per region with BREAK (or give fewer ratios).")
    if len(split.negative_parts) > 1 and needed > len(split.negative_parts):
        parts = len(split.negative_parts)
        raise RegionalPromptError(f"Regional Prompter: the negative prompt has {parts} parts but the layout needs "
                                  f"{needed}; give each region its negative with BREAK, or none (one negative for all).")
    return PreparedRegions(request, split, layout)
