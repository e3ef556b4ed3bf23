"""What the ControlNet units add to the UNet at one model call, by the extension's rules
(sd-webui-controlnet v1.1.455 `scripts/hook.py`):

- guidance window: at sampler step i of N a unit is used when start <= i/N <= end (one step more at
  the end than diffusers' rule, which needs (i+1)/N <= end);
- Balanced: every residual times the weight, on the conditional and unconditional rows;
- My prompt is more important: residual i times weight * 0.825^(12-i) (i = 12 is the middle block;
  SDXL takes the first ten factors of that list of 13), on both rows;
- ControlNet is more important: the same factors, on the conditional rows only (so CFG multiplies
  the control);
- several units: their residuals are summed, layer by layer;
- rules on the predicted x0 at every model call, in or out of the window (`LatentRule`): inpaint_only
  holds the unmasked part of its picture's latent, tile_colorfix swaps the prediction's low
  frequencies for its picture's (the extension does both on eps; with x_t fixed, eps and x0 are
  affine in each other, so the same blend on x0 is the same step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


def box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    """The mean over a (2k+1)^2 window, edges repeated (the extension's `blur`)."""
    padded = torch.nn.functional.pad(x, (k, k, k, k), mode="replicate")
    return torch.nn.functional.avg_pool2d(padded, (2 * k + 1, 2 * k + 1), stride=1)


@dataclass
class LatentRule:
    """A unit's rule on the x0 the model predicts, row by row before CFG (the extension's hook.py):

    - inpaint: x0 <- x0*m + o*(1 - m), m the repaint mask max-pooled to the latent (10x10 window,
      stride 8, padding 1), o the latent of the unit's picture;
    - colorfix: x0 <- x0 - blur(x0, k) + blur(o, k), and with `sharpness` (tile_colorfix+sharp) the
      unconditional rows then become d*blur(x0, k) + (1 - d)*x0, d = sharpness / 100;

    each then mixed with the prediction by the weight clamped to [0, 1]."""

    kind: str  # "inpaint" or "colorfix"
    weight: float
    pixels: torch.Tensor  # (1, 3, H, W) in [0, 1]: the picture whose latent `o` is used
    mask: torch.Tensor | None = None  # inpaint: (1, 1, H, W), 1 = repaint
    variation: int = 8  # colorfix: k
    sharpness: float | None = None
    latent: torch.Tensor | None = None  # o, from the engine's VAE (`PassControl.encode_latents`)

    def apply(self, x0: torch.Tensor, uncond_rows: torch.Tensor | None) -> torch.Tensor:
        assert self.latent is not None, "the rule's picture was not encoded"
        origin = self.latent.to(x0.device, x0.dtype)
        if self.kind == "inpaint":
            assert self.mask is not None
            mask = torch.nn.functional.max_pool2d(self.mask.to(x0.device, x0.dtype), (10, 10), stride=(8, 8), padding=1)
            changed = x0 * mask + origin * (1 - mask)
        else:
            k = self.variation
            changed = x0 - box_blur(x0, k) + box_blur(origin, k)
            if self.sharpness is not None and uncond_rows is not None:
                detail = self.sharpness * 0.01
                softened = detail * box_blur(changed, k) + (1 - detail) * changed
                rows = uncond_rows.to(x0.device).view(-1, 1, 1, 1)
                changed = torch.where(rows, softened, changed)
        w = max(0.0, min(1.0, float(self.weight)))
        return changed * w + x0 * (1 - w)


@dataclass
class ControlPlan:
    """The units of one sampling pass; `step()` is the sampler step being taken (0-based)."""

    units: list[PreparedUnit]
    total_steps: int
    step: Callable[[], int]
    latent_rules: list[LatentRule] = field(default_factory=list)

    def adjust_x0(self, x0: torch.Tensor, uncond_rows: torch.Tensor | None) -> torch.Tensor:
        for rule in self.latent_rules:
            x0 = rule.apply(x0, uncond_rows)
        return x0

    def ruled(self, denoise: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """`denoise` with its x0 through the latent rules (itself when there are none)."""
        return RuledDenoiser(denoise, self) if self.latent_rules else denoise

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


class RuledDenoiser:
    """A denoiser `(x, sigma, **rows) -> x0` whose x0 goes through the plan's latent rules."""

    def __init__(self, inner: Callable[..., torch.Tensor], plan: ControlPlan):
        self.inner, self.plan = inner, plan

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.plan.adjust_x0(self.inner(x, sigma, **kwargs), kwargs.get("uncond_rows"))
