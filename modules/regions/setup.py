"""A generation's regions from its settings and prompts: what the engine is handed.

`prepare_regions(request, prompt, negative)` gives None when the extension would not act (not
active, or the prompt holds none of its keywords nor AND; then no infotext keys either), raises a
RegionalPromptError for settings Easel cannot run (Prompt mode, the Random submode; a Mask mode
without a mask; more regions than prompts), and otherwise the prompt parts, the layout and the
infotext keys. The engine then asks it for the conditioning (`schedules`), for each pass's
`RegionPlan` (`plan`, Attention mode) and for Latent mode's LoRA sets (`loras`). In a pass the
options turn regions off in ("Enabled only in Hires Fix", "Disabled in Hires Fix") the parts still
form the prompt, joined, as the extension's `hr_returner` runs plain attention over the whole
context. The hires pass uses the
regional prompt, not the hires prompt (the extension's `hrdealer` copies it over).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from modules.prompts.extra_networks import extract_extra_networks
from modules.prompts.schedule import prompt_schedule
from modules.regions.args import RegionalRequest
from modules.regions.attention import RegionPlan
from modules.regions.conditioning import Schedule, joined_schedule, latent_schedule, regional_schedule
from modules.regions.errors import RegionalPromptError
from modules.regions.grammar import swap_delimiters
from modules.regions.infotext import regional_infotext
from modules.regions.latent import PartLoras, PartWeight, part_loras
from modules.regions.layout import RegionLayout, mask_layout, matrix_layout
from modules.regions.prompt import KEY_PROMPT, OPT_HIRES_ONLY, OPT_NOT_HIRES, RegionalPrompt, activates, split_prompt
from modules.regions.prompt_mode import PromptRegionPlan, prompt_layout, target_positions, target_word, thresholds

if TYPE_CHECKING:
    from modules.lora.files import LoraFile
    from modules.lora.patch import LoraUse
    from modules.prompts.conditioning import PromptEncoder


@dataclass
class PreparedRegions:
    request: RegionalRequest
    prompt: RegionalPrompt
    layout: RegionLayout
    _prompt_plan: PromptRegionPlan | None = field(default=None, repr=False)  # Prompt mode: the first pass's (its masks)

    @property
    def infotext(self) -> dict[str, str]:
        return regional_infotext(self.request)

    @property
    def negative_is_regional(self) -> bool:
        return len(self.prompt.negative_parts) > 1

    @property
    def latent(self) -> bool:
        """Latent calc mode: a UNet pass per part (latent.py); else Attention mode."""
        return self.request.calc_mode == "Latent"

    def active_in(self, hires: bool) -> bool:
        """False for a pass the options leave without regions ("Enabled only in Hires Fix", "Disabled in Hires Fix")."""
        return (OPT_NOT_HIRES if hires else OPT_HIRES_ONLY) not in self.request.options

    def schedules(self, encoder: "PromptEncoder", steps: int, hires_steps: int | None = None,
                  encoder_for: "Callable[[int | None], PromptEncoder] | None" = None) -> tuple[Schedule, Schedule]:
        """(conditional, unconditional) `StepConditions.schedule`s. Attention mode: the parts joined,
        their spans kept; the negative is plain when it has one part. Latent mode: one entry per
        part, weighted by its region map; `encoder_for(part)` (None: the negative) encodes with
        that part's LoRAs in effect (default: `encoder` for all)."""
        if not self.latent:
            positive = regional_schedule(encoder, self.prompt.parts, steps, hires_steps)
            negative = regional_schedule(encoder, self.prompt.negative_parts, steps, hires_steps, plain_when_single=True)
            return positive, negative
        pick = encoder_for or (lambda part: encoder)
        negative = joined_schedule(pick(None), self.prompt.negative_parts, steps, hires_steps)
        if not self.active_in(hires_steps is not None):
            return joined_schedule(encoder, self.prompt.parts, steps, hires_steps), negative
        weights = {part: PartWeight(self.layout, part) for part in dict.fromkeys(self.layout.context_parts)}
        return latent_schedule(pick, self.prompt.parts, weights, steps, hires_steps), negative

    def plan(self, hires: bool = False, encoder: "PromptEncoder | None" = None, steps: int = 20, sdxl: bool = False) -> RegionPlan | None:
        """The pass's attention plan: None in Latent mode, and when the options leave this pass
        without regions. Prompt mode needs the `encoder` (to find the target words' tokens)."""
        if not self.active_in(hires) or self.latent:
            return None
        if self.request.mode != "Prompt":
            return RegionPlan(self.layout)
        if self._prompt_plan is None:
            assert encoder is not None, "Prompt mode finds its target words with the prompt encoder"
            base = prompt_schedule(extract_extra_networks(self.prompt.parts[0])[0], steps)[0][1]
            words = [target_word(extract_extra_networks(part)[0]) for part in self.prompt.parts[1:]]
            regions = len(words)
            self._prompt_plan = PromptRegionPlan(self.layout, target_positions(encoder.chunks, base, words),
                                                 thresholds(self.request.threshold, regions), self.request.prompt_submode == "Prompt-Ex", sdxl,
                                                 probes=self.active_in(False))
        return self._prompt_plan.follower(probes=not self.active_in(False)) if hires else self._prompt_plan

    def loras(self, files: "dict[str, LoraFile]", job_uses: "list[LoraUse] | tuple[LoraUse, ...]", hires: bool = False) -> PartLoras | None:
        """Latent mode's LoRA set per part and for the negative (None: Attention mode, a pass
        without regions, or no LoRA in any part nor the negative)."""
        if not self.latent or not self.active_in(hires):
            return None
        request = self.request
        found = part_loras(self.prompt.parts, files, job_uses, request.lora_neg_te, request.lora_neg_u,
                           request.lora_hires_stop if hires else request.lora_stop)
        return found if found.any() else None


def prepare_regions(request: RegionalRequest | None, prompt: str, negative: str) -> PreparedRegions | None:
    if request is None or not request.active or not activates(prompt):
        return None
    if KEY_PROMPT in extract_extra_networks(prompt)[0].upper():  # ADDP turns Prompt mode on
        request = replace(request, mode="Prompt")
    request.check_supported()
    matrix = request.mode == "Matrix"
    ratios = swap_delimiters(request.ratios) if request.flip else request.ratios
    split = split_prompt(prompt, negative, matrix=matrix, rows=request.rows, ratios=ratios, use_base=request.use_base,
                         use_common=request.use_common, use_ncommon=request.use_ncommon, options=request.options)
    if matrix:
        layout = matrix_layout(split.structure, ratios, request.base_ratios, rows=request.rows, use_base=split.use_base,
                               break_chunks=split.break_chunks)
    elif request.mode == "Prompt":
        if len(split.parts) < 2:
            raise RegionalPromptError("Regional Prompter Prompt mode: write the base prompt, then BREAK and each region's prompt ending in "
                                      "its target word (e.g. \"a girl holding an umbrella BREAK (red:1.7), umbrella\").")
        layout = prompt_layout(len(split.parts) - 1, request.base_ratios, split.use_base)
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
