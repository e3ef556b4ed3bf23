"""A pass's regional prompt (modules/regions) turned into what the sampler runs: the per-step
conditioning, the attention plan (Attention mode) and, in Latent mode with LoRAs in the parts, the
switch that puts each part's LoRAs in effect for its model call (and its text's encoding).

txt2img, its hires pass and img2img all ask here, so the three set regions up the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modules.checkpoints.manager import LoadedModel
from modules.generation.guidance import StepConditions
from modules.generation.loras import JobLoras
from modules.generation.text import build_prompt_encoder
from modules.prompts.conditioning import Conditioning, PromptEncoder

if TYPE_CHECKING:
    from modules.regions.attention import RegionPlan
    from modules.regions.latent import PartLoras
    from modules.regions.setup import PreparedRegions


class PartLoraSwitch:
    """Latent mode's LoRAs per part: before each model call, the part's set (the negative's for the
    unconditional entry); the job's set again after the pass."""

    def __init__(self, model: LoadedModel, sets: "PartLoras", loras: JobLoras):
        self.model, self.sets, self.loras = model, sets, loras

    def __call__(self, entry: Conditioning, call: int) -> None:
        self.loras.apply(self.model, self.sets.at(getattr(entry, "part", None), call))

    def close(self) -> None:
        self.loras.apply(self.model, self.loras.uses)


@dataclass
class RegionalPass:
    conds: StepConditions
    unconds: StepConditions
    plan: "RegionPlan | None"
    switch: PartLoraSwitch | None


def regional_pass(regional: "PreparedRegions", model: LoadedModel, encoder: PromptEncoder, clip_skip: int, steps: int,
                  loras: JobLoras | None, hires_steps: int | None = None) -> RegionalPass:
    """The first pass's (or with `hires_steps`, the hires pass's) regional conditioning and plan."""
    hires = hires_steps is not None
    sets = regional.loras(loras.files, loras.uses, hires) if loras is not None else None
    if sets is None or loras is None:
        positive, negative = regional.schedules(encoder, steps, hires_steps)
        plan = regional.plan(hires, encoder=encoder, steps=steps, sdxl=model.spec.family.latent_space == "sdxl")
        return RegionalPass(StepConditions(positive), StepConditions(negative), plan, None)

    def encoder_for(part: int | None) -> PromptEncoder:
        loras.apply(model, sets.parts[part] if part is not None else sets.negative)  # the text encoder's LoRAs ignore the stop step
        return build_prompt_encoder(model, clip_skip)  # a new one when the text encoder's weights changed

    try:
        positive, negative = regional.schedules(encoder, steps, hires_steps, encoder_for)
    finally:
        loras.apply(model, loras.uses)
    return RegionalPass(StepConditions(positive), StepConditions(negative), None, PartLoraSwitch(model, sets, loras))


def region_previews(plan: "RegionPlan | None", images: list) -> list:
    """Prompt mode: the regions found, painted over each picture (nothing for other modes, or
    when the pass stopped before any region was found)."""
    from modules.regions.prompt_mode import PromptRegionPlan, region_pictures

    if not isinstance(plan, PromptRegionPlan) or not images:
        return []
    source = plan if plan.probes or plan.source is None else plan.source
    return region_pictures(plan, images) if source.masks is not None else []
