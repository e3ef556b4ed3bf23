"""What the ControlNet units add to the UNet at one model call, by the extension's rules
(sd-webui-controlnet v1.1.455 `scripts/hook.py`):

- guidance window: at sampler step i of N a unit is used when start <= i/N <= end (one step more at
  the end than diffusers' rule, which needs (i+1)/N <= end);
- Balanced: every residual times the weight, on the conditional and unconditional rows;
- My prompt is more important: residual i times weight * 0.825^(12-i) (i = 12 is the middle block;
  SDXL takes the first ten factors of that list of 13), on both rows;
- ControlNet is more important: the same factors, on the conditional rows only (so CFG multiplies
  the control);
- several units: their residuals are summed, layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

SOFT_BASE = 0.825
A1111_LAYERS = 13  # SD1/SD2: 12 down residuals + the middle block


def soft_scales(weight: float, count: int, sdxl: bool = False) -> list[float]:
    """weight * 0.825^(12-i) for the `count` residuals (the last is the middle block). SDXL takes the
    first ten of the 13 factors, as the extension does; other counts (tiny test models) keep the
    middle block at 1 and go down from there."""
    if count == A1111_LAYERS or (sdxl and count == 10):
        return [weight * SOFT_BASE ** (A1111_LAYERS - 1 - i) for i in range(count)]
    return [weight * SOFT_BASE ** (count - 1 - i) for i in range(count)]


def layer_scales(weight: float, mode: str, count: int, sdxl: bool = False) -> list[float]:
    if mode == "Balanced":
        return [weight] * count
    return soft_scales(weight, count, sdxl)


def in_window(step: int, total: int, start: float, end: float) -> bool:
    """The extension's rule: skipped when step/total < start or > end."""
    fraction = step / max(total, 1)
    return not (fraction < start or fraction > end)


@dataclass
class PreparedUnit:
    """A unit ready to run: its model on the device, its control map (1, 3, H, W) in [0, 1] at 8x
    the latent size, and its rules."""

    model: Any  # diffusers ControlNetModel
    hint: torch.Tensor
    weight: float
    mode: str
    guidance_start: float
    guidance_end: float
    sdxl: bool = False

    @property
    def cond_only(self) -> bool:
        return self.mode == "ControlNet is more important"


@dataclass
class ControlPlan:
    """The units of one sampling pass; `step()` is the sampler step being taken (0-based)."""

    units: list[PreparedUnit]
    total_steps: int
    step: Callable[[], int]

    def residuals(self, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, uncond_rows: torch.Tensor | None,
                  added: dict[str, torch.Tensor] | None) -> tuple[list[torch.Tensor], torch.Tensor] | None:
        """(down residuals, middle residual) summed over the units in their window, or None."""
        down_total: list[torch.Tensor] | None = None
        mid_total: torch.Tensor | None = None
        step = self.step()
        for unit in self.units:
            if not in_window(step, self.total_steps, unit.guidance_start, unit.guidance_end):
                continue
            dtype = next(unit.model.parameters()).dtype
            hint = unit.hint.to(x.device, dtype).expand(x.shape[0], -1, -1, -1)
            down, mid = unit.model(x.to(dtype), t, encoder_hidden_states=hidden.to(dtype), controlnet_cond=hint, conditioning_scale=1.0,
                                   added_cond_kwargs=added, return_dict=False)
            scales = layer_scales(unit.weight, unit.mode, len(down) + 1, unit.sdxl)
            down = [d * s for d, s in zip(down, scales[:-1])]
            mid = mid * scales[-1]
            if unit.cond_only and uncond_rows is not None:
                keep = (~uncond_rows).to(x.device, mid.dtype).view(-1, 1, 1, 1)
                down = [d * keep for d in down]
                mid = mid * keep
            down_total = down if down_total is None else [a + b for a, b in zip(down_total, down)]
            mid_total = mid if mid_total is None else mid_total + mid
        if down_total is None or mid_total is None:
            return None
        return down_total, mid_total
