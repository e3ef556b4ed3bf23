"""Latent mode: one UNet pass per prompt part, the parts' predictions mixed by where their regions are.

The extension (scripts/latent.py) turns the parts into AND sub-prompts, runs the UNet once for each
and, after the model call, keeps each part's prediction inside its region and the unconditional one
outside (`denoised_callback_s`: x_a ← x_a·f_a + uncond·(1 − f_a)); A1111's AND then sums them:
uncond + cfg·Σ_a f_a·(x_a − uncond). With the region maps `f_a` adding up to 1 that is an AND
whose weights are pictures: `PartWeight` is such a weight, the part's map at the latent's size (the
same maps as Attention mode: a cell mixes (1 − b)·its part + b·base, `RegionLayout.weights`).

Because every part has its own pass, each can have its own LoRAs (`PartLoras`, the extension's
`lora_namer` and `LoRARegioner`): a part's pass, and the encoding of its text, run with the LoRAs
written in that part (a LoRA in the common prompt is in every part) at the part's multipliers and
the others off; the negative prompt's with every LoRA of the prompt scaled by the "LoRA negative
text encoder / U-Net ratios" (args 14 and 15: one number per LoRA in the order they first appear,
the last repeated; default 0: none). From model call `stop - 1` on ("LoRA stop step", arg 18; arg
19 in the hires pass; 0: never) every pass runs without LoRAs, as the extension's `u_start`
(`step + 2 > stop`) does. Easel reads a part's multipliers as A1111 does everywhere (te for the
text encoder, unet for the UNet); the extension gives both the unet one.

The negative prompt is one conditioning in Latent mode: its parts, if it has several, are joined
as BREAK joins them (A1111 does not read AND in a negative prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from modules.lora.files import LoraFile
from modules.lora.patch import LoraUse
from modules.prompts.conditioning import Conditioning
from modules.prompts.extra_networks import extract_extra_networks, lora_call
from modules.regions.errors import RegionalPromptError
from modules.regions.layout import RegionLayout


class PartWeight:
    """A prompt part's weight in the guidance sum: its region map at the latent's size, (1, 1, h, w)."""

    def __init__(self, layout: RegionLayout, part: int):
        self.layout, self.part = layout, part
        self._maps: dict[tuple, torch.Tensor] = {}

    def at(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (height, width, device, dtype)
        if key not in self._maps:
            maps = self.layout.weights(height, width)
            total = torch.zeros(height, width)
            for index, part in enumerate(self.layout.context_parts):
                if part == self.part:
                    total += maps[index]
            self._maps[key] = total[None, None].to(device, dtype)
        return self._maps[key]

    def used(self) -> bool:
        return self.part in self.layout.context_parts

    def __repr__(self) -> str:
        return f"PartWeight(part={self.part})"


@dataclass
class PartConditioning(Conditioning):
    """A part's conditioning in Latent mode: which part it is (None: the negative prompt)."""

    part: int | None = None


def _ratios(text: str, count: int, position: int, name: str) -> list[float]:
    """A comma list of numbers broadcast to `count` LoRAs (the last value repeated, extras dropped)."""
    values = []
    for item in text.split(","):
        try:
            values.append(float(item.strip() or "0"))
        except ValueError:
            raise RegionalPromptError(f"Regional Prompter arg {position} ({name}) must be numbers separated by commas, not {text!r}.") from None
    values = values[:count] if count else values
    return values + [values[-1]] * (count - len(values))


@dataclass
class PartLoras:
    """The LoRA set of every part's pass and of the negative's, and when LoRAs stop."""

    parts: list[list[LoraUse]]
    negative: list[LoraUse]
    stop: int = 0  # LoRAs off from model call stop - 1 on (0: never)
    files: dict[str, LoraFile] = field(default_factory=dict)

    def at(self, part: int | None, call: int) -> list[LoraUse]:
        if self.stop and call + 2 > self.stop:
            return []
        return self.negative if part is None else self.parts[part]

    def any(self) -> bool:
        return any(self.parts) or bool(self.negative)


def part_loras(parts: Sequence[str], files: dict[str, LoraFile], job_uses: Sequence[LoraUse], negative_te: str, negative_unet: str,
               stop: str) -> PartLoras:
    """Each part's LoRAs from its tags (`files`: tag name -> the file the job found for it; a tag the
    job could not find is left out, as the job already said); the negative's from the job's."""
    order: list[str] = []
    sets: list[list[LoraUse]] = []
    for part in parts:
        uses: dict[str, LoraUse] = {}
        for call in extract_extra_networks(part)[1]:
            if call.kind != "lora":
                continue
            wanted = lora_call(call)
            if wanted.name in files and wanted.name not in uses:
                uses[wanted.name] = LoraUse(files[wanted.name], wanted.te, wanted.unet)
                if wanted.name not in order:
                    order.append(wanted.name)
        sets.append(list(uses.values()))
    by_file = {use.lora.path: use for use in job_uses}
    te_ratios = _ratios(negative_te, len(order), 14, "LoRA negative text encoder ratios")
    unet_ratios = _ratios(negative_unet, len(order), 15, "LoRA negative U-Net ratios")
    negative = []
    for name, te_ratio, unet_ratio in zip(order, te_ratios, unet_ratios):
        job = by_file.get(files[name].path)
        if job is not None:
            unet = job.unet_multiplier if job.unet_multiplier is not None else job.te_multiplier
            negative.append(LoraUse(job.lora, job.te_multiplier * te_ratio, unet * unet_ratio))
    return PartLoras(sets, negative, int(stop.strip() or "0"), dict(files))
