"""A regional prompt's conditioning: its parts encoded one by one and joined along the token axis,
with each part's token range kept (`spans`), at every step of the prompt-editing schedule.

The extension encodes the whole prompt (its parts separated by BREAK, so each part starts a new
77-token chunk) and finds each part's tokens by counting its chunks. A chunk is encoded on its own,
so encoding the parts one by one and joining them gives the same hidden states and tells exactly
where each part is (the extension's count is one chunk off for a part of exactly 75 tokens). The
pooled embedding (SDXL) is the first part's, which is the whole prompt's first chunk, as in A1111.

Latent mode (latent.py) encodes the parts the same way but keeps them apart: one conditioning per
part, each with its weight map (`latent_schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from modules.prompts.conditioning import Conditioning, PromptEncoder
from modules.prompts.extra_networks import extract_extra_networks
from modules.prompts.schedule import prompt_schedule, text_at_step
from modules.regions.latent import PartConditioning

Schedule = list[tuple[int, list[tuple[Conditioning, float]]]]  # StepConditions.schedule


@dataclass
class RegionalConditioning(Conditioning):
    """The parts' hidden states joined; `spans[i]` = (first token, end) of part i in `hidden`."""

    spans: tuple[tuple[int, int], ...] = ()


def join_parts(pieces: Sequence[Conditioning]) -> RegionalConditioning:
    spans = []
    start = 0
    for piece in pieces:
        spans.append((start, start + piece.length))
        start += piece.length
    return RegionalConditioning(torch.cat([p.hidden for p in pieces], dim=1), pieces[0].pooled, tuple(spans))


def regional_schedule(encoder: PromptEncoder, parts: Sequence[str], steps: int, hires_steps: int | None = None,
                      plain_when_single: bool = False) -> Schedule:
    """`StepConditions.schedule` for the parts: one entry per boundary of any part's editing
    schedule (each part's `[from:to:when]` and `[a|b]` as A1111 reads them; extra-network tags
    removed). With `plain_when_single` a single part gives plain Conditioning (the negative prompt
    when it has no regions: its rows run plain attention)."""
    texts = [extract_extra_networks(part)[0] for part in parts]
    schedules = [prompt_schedule(text, steps, hires_steps) for text in texts]
    boundaries = sorted({end for schedule in schedules for end, _ in schedule})
    merged: Schedule = []
    for end in boundaries:
        pieces = [encoder.encode(text_at_step(schedule, end)) for schedule in schedules]
        condition = pieces[0] if plain_when_single and len(pieces) == 1 else join_parts(pieces)
        merged.append((end, [(condition, 1.0)]))
    return merged


def row_spans(conditionings: Sequence[Conditioning], batch: int) -> list[tuple[tuple[int, int], ...] | None] | None:
    """For one model call over `conditionings` (each repeated `batch` times, in order): every row's
    part spans (None: a plain row), or None when no row is regional."""
    spans = [getattr(c, "spans", None) or None for c in conditionings]
    if all(s is None for s in spans):
        return None
    return [s for s in spans for _ in range(batch)]


def _part_schedules(parts: Sequence[str], steps: int, hires_steps: int | None) -> tuple[list, list[int]]:
    schedules = [prompt_schedule(extract_extra_networks(part)[0], steps, hires_steps) for part in parts]
    return schedules, sorted({end for schedule in schedules for end, _ in schedule})


def latent_schedule(encoder_for: Callable[[int | None], PromptEncoder], parts: Sequence[str], weights: dict[int, Any], steps: int,
                    hires_steps: int | None = None) -> Schedule:
    """Latent mode's conditional `StepConditions.schedule`: at every boundary one entry per part in
    `weights` (part -> its weight), each part encoded by `encoder_for(part)` (its LoRAs in effect)."""
    schedules, boundaries = _part_schedules(parts, steps, hires_steps)
    encoded: dict[int, list[Conditioning]] = {}
    for part in weights:
        encoder = encoder_for(part)
        encoded[part] = [encoder.encode(text_at_step(schedules[part], end)) for end in boundaries]
    return [(end, [(PartConditioning(encoded[part][i].hidden, encoded[part][i].pooled, part=part), weight) for part, weight in weights.items()])
            for i, end in enumerate(boundaries)]


def joined_schedule(encoder: PromptEncoder, parts: Sequence[str], steps: int, hires_steps: int | None = None) -> Schedule:
    """The parts as one plain conditioning (as BREAK joins them): Latent mode's negative prompt, and
    its prompt in a pass the options leave without regions."""
    schedules, boundaries = _part_schedules(parts, steps, hires_steps)
    merged: Schedule = []
    for end in boundaries:
        joined = join_parts([encoder.encode(text_at_step(schedule, end)) for schedule in schedules])
        merged.append((end, [(PartConditioning(joined.hidden, joined.pooled, part=None), 1.0)]))
    return merged
