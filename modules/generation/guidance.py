"""The model as a sampler sees it: x0 prediction with classifier-free guidance and per-step prompts.

`UNetEps` adapts a diffusers UNet to `eps(x_in, t, cond)` (adding SDXL's pooled text embedding and
size ids). `GuidedDenoiser` wraps the k-diffusion-style denoiser: at every model call it takes the
conditioning that the prompt schedule gives for the current step, runs conditional and
unconditional in one batch when their lengths match (separately otherwise), and combines the x0
predictions A1111's way: uncond + Σ wᵢ·cfg·(condᵢ − uncond) (AND sub-prompts carry their weights;
a weight may also be a picture, `SpatialWeight`: regional Latent mode's region maps).

With an `entry_switch` (regional Latent mode's LoRA per region) the entries run one model call each,
and the switch is told which entry comes next so it can put that entry's LoRAs in effect.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, Union

import torch

from modules.prompts.conditioning import Conditioning
from modules.regions.conditioning import row_spans

if TYPE_CHECKING:
    from modules.controlnet.apply import ControlPlan
    from modules.regions.attention import RegionPlan


class SpatialWeight(Protocol):
    """A guidance weight that differs across the picture: (1, 1, h, w) at the latent's size."""

    def at(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor: ...


Weight = Union[float, SpatialWeight]


class EntrySwitch(Protocol):
    """Told before the model runs each entry (its conditioning, the model call's number); `close`
    after the pass (also when it fails) puts things back as they were before it."""

    def __call__(self, entry: Conditioning, call: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class StepConditions:
    """Per-step conditioning: `at(step)` returns the list of (Conditioning, weight) for that step
    (several when the prompt uses AND) built from the prompt's editing/alternation schedule."""

    schedule: Sequence[tuple[int, Sequence[tuple[Conditioning, Weight]]]]  # (last step it applies to, conds)

    def at(self, step: int) -> Sequence[tuple[Conditioning, Weight]]:
        for end_step, conds in self.schedule:
            if step <= end_step:
                return conds
        return self.schedule[0][1]  # past the end A1111 falls back to the first entry; so do we


def sdxl_time_ids(width: int, height: int, refiner: bool, aesthetic_score: float = 6.0) -> torch.Tensor:
    """SDXL size conditioning: original size, crop (0, 0), target size (base) or aesthetic score (refiner)."""
    if refiner:
        return torch.tensor([[height, width, 0, 0, aesthetic_score]], dtype=torch.float32)
    return torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)


class UNetEps:
    """`eps(x_in, t, hidden, pooled)` over a diffusers UNet (output is eps or v, as trained)."""

    def __init__(self, unet: torch.nn.Module, time_ids: torch.Tensor | None = None, image_conditioning: torch.Tensor | None = None,
                 control: "ControlPlan | None" = None, regions: "RegionPlan | None" = None, uncond_time_ids: torch.Tensor | None = None):
        self.unet = unet
        self.uncond_time_ids = uncond_time_ids  # the negative rows' size conditioning when it differs (an SDXL refiner's aesthetic score)
        self.control = control  # ControlNet units: residuals added to the UNet's skip connections
        self.regions = regions  # regional prompts: told each call's latent size and rows (the engine installs its processors)
        self.time_ids = time_ids
        # Inpainting UNets take 5 more channels (mask + masked-image latent), concatenated to x.
        self.image_conditioning = image_conditioning
        self.dtype = next(unet.parameters()).dtype

    def __call__(self, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, pooled: torch.Tensor | None = None,
                 uncond_rows: torch.Tensor | None = None, regions: list | None = None, region_images: list[int] | None = None,
                 region_conditional: list[bool] | None = None) -> torch.Tensor:
        if self.image_conditioning is not None:
            extra = self.image_conditioning.to(x.device, x.dtype)
            x = torch.cat([x, extra.repeat(x.shape[0] // extra.shape[0], 1, 1, 1)], dim=1)
        added = None
        if self.time_ids is not None:
            assert pooled is not None  # size-conditioned (SDXL) models have a pooled text embedding
            time_ids = self.time_ids.to(x.device, self.dtype).expand(x.shape[0], -1)
            if self.uncond_time_ids is not None and uncond_rows is not None:
                low = self.uncond_time_ids.to(x.device, self.dtype).expand(x.shape[0], -1)
                time_ids = torch.where(uncond_rows.to(x.device)[:, None], low, time_ids)
            added = {"text_embeds": pooled.to(self.dtype), "time_ids": time_ids}
        residuals: dict[str, object] = {}
        if self.control is not None:
            # ControlNets see the latent without an inpainting UNet's extra channels
            found = self.control.residuals(x[:, :4] if self.image_conditioning is not None else x, t, hidden, uncond_rows, added)
            if found is not None:
                residuals = {"down_block_additional_residuals": [r.to(self.dtype) for r in found[0]],
                             "mid_block_additional_residual": found[1].to(self.dtype)}
        bound = self.regions.bound(x.shape[-2:], regions, region_images, region_conditional) if self.regions is not None else nullcontext()
        with bound:
            out = self.unet(x.to(self.dtype), t, encoder_hidden_states=hidden.to(self.dtype), added_cond_kwargs=added, **residuals).sample
        return out.to(x.dtype)


class GuidedDenoiser:
    """x0 with classifier-free guidance; the sampler calls it like any Denoiser.

    With `keep_uncond` (samplers flagged `needs_uncond`: DDIM CFG++) it is an `UncondDenoiser`: it
    always runs the negative prompt, even at scale 1, and keeps its x0 as `last_uncond_x0`."""

    def __init__(
        self,
        denoise: Callable[..., torch.Tensor],
        conds: StepConditions,
        unconds: StepConditions,
        cfg_scale: float,
        sigma_min: float,
        sigma_max: float,
        keep_uncond: bool = False,
        row_roles: bool = False,
        entry_switch: EntrySwitch | None = None,
    ):
        self.entry_switch = entry_switch
        self.denoise = denoise  # (x, sigma, hidden=..., pooled=...) -> x0
        self.row_roles = row_roles  # tell the model which rows are unconditional (`uncond_rows`: ControlNet's modes need it)
        self.conds = conds
        self.unconds = unconds
        self.cfg_scale = cfg_scale
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.keep_uncond = keep_uncond
        self.last_uncond_x0: torch.Tensor | None = None
        # Counted per model call from 0, as A1111's CFGDenoiser does (second-order samplers call
        # twice a step).
        self.step = 0
        self.call = 0  # the model call being run (for entry_switch)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        # A1111's counter starts at 0 and takes the first schedule entry ending at or after it, so
        # `[cat:dog:5]` at 20 steps conditions on "cat" for model calls 0-5; we keep that for
        # identical images.
        conds = self.conds.at(self.step)
        uncond = self.unconds.at(self.step)[0][0]
        self.call = self.step
        self.step += 1
        batch = x.shape[0]
        sigma = sigma.reshape(-1).expand(batch) if sigma.numel() == 1 else sigma
        if self.cfg_scale == 1.0 and len(conds) == 1 and not self.keep_uncond:
            return self._run(x, sigma, [conds[0][0]])[0]
        entries = [c for c, _ in conds] + [uncond]
        outputs = self._run(x, sigma, entries)
        uncond_x0 = outputs[-1]
        if self.keep_uncond:
            self.last_uncond_x0 = uncond_x0
        result = uncond_x0.clone()
        for (_, weight), cond_x0 in zip(conds, outputs[:-1]):
            result += (cond_x0 - uncond_x0) * (_scale(weight, result) * self.cfg_scale)
        return result

    def _run(self, x: torch.Tensor, sigma: torch.Tensor, entries: list[Conditioning]) -> list[torch.Tensor]:
        batch = x.shape[0]
        if len({c.length for c in entries}) == 1 and self.entry_switch is None:
            n = len(entries)
            hidden = torch.cat([c.hidden.expand(batch, -1, -1) for c in entries])
            pooled = _batched_pooled(entries, batch)
            roles: dict[str, Any] = {}
            if self.row_roles:  # the last entry is the negative prompt when there is more than one
                rows = torch.zeros(batch * n, dtype=torch.bool)
                if n > 1:
                    rows[batch * (n - 1):] = True
                roles = {"uncond_rows": rows}
            regions = row_spans(entries, batch)  # regional prompts: each row's part spans, picture and role
            if regions is not None:
                roles.update(regions=regions, region_images=[row % batch for row in range(n * batch)],
                             region_conditional=[row < batch * (n - 1) or n == 1 for row in range(n * batch)])
            out = self.denoise(x.repeat(n, 1, 1, 1), sigma.repeat(n), hidden=hidden, pooled=pooled, **roles)
            return list(out.chunk(n))
        results = []
        for index, c in enumerate(entries):  # unequal chunk counts run separately (A1111's default)
            if self.entry_switch is not None:
                self.entry_switch(c, self.call)
            pooled = c.pooled.expand(batch, -1) if c.pooled is not None else None
            roles = {"uncond_rows": torch.full((batch,), index == len(entries) - 1 and len(entries) > 1)} if self.row_roles else {}
            regions = row_spans([c], batch)
            if regions is not None:
                conditional = index < len(entries) - 1 or len(entries) == 1
                roles.update(regions=regions, region_images=list(range(batch)), region_conditional=[conditional] * batch)
            results.append(self.denoise(x, sigma, hidden=c.hidden.expand(batch, -1, -1), pooled=pooled, **roles))
        return results


def _scale(weight: Weight, like: torch.Tensor) -> Any:
    if isinstance(weight, (int, float)):
        return weight
    return weight.at(like.shape[-2], like.shape[-1], like.device, like.dtype)


def _batched_pooled(entries: list[Conditioning], batch: int) -> torch.Tensor | None:
    """The entries' pooled embeddings for one batched model call; the same encoders made every
    entry, so all have one (SDXL) or none has."""
    if entries[0].pooled is None:
        return None
    pooled = [c.pooled for c in entries if c.pooled is not None]
    assert len(pooled) == len(entries)
    return torch.cat([p.expand(batch, -1) for p in pooled])
