"""The typed request every task starts from, and its validation.

The UI and the API both build a `GenerationRequest` (never positional lists) and call `validate()`
before anything touches a model, so bad input fails at once with a sentence that says what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from modules.errors import UserError

RNG_SOURCES = ("GPU", "CPU", "NV")
LIMITS: dict[str, tuple[float, float]] = {
    "width": (64, 4096),
    "height": (64, 4096),
    "steps": (1, 500),
    "cfg_scale": (0.0, 100.0),
    "batch_size": (1, 64),
    "n_iter": (1, 1000),
    "clip_skip": (1, 12),
    "subseed_strength": (0.0, 1.0),
    "s_noise": (0.0, 10.0),
}


class RequestError(UserError):
    """A request field is out of range or unknown; the message names the field and the fix."""


@dataclass
class GenerationRequest:
    """txt2img parameters in A1111's names (img2img and hires add their own on top)."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = field(default_factory=list)
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    batch_size: int = 1
    n_iter: int = 1
    clip_skip: int = 1
    tiling: bool = False
    eta: float | None = None
    s_noise: float = 1.0
    eta_noise_seed_delta: int = 0
    rng_source: str = "GPU"
    checkpoint: str | None = None  # override for this request, restored after
    vae: str | None = None
    preview_every: int = 1  # steps between live previews; 0 = none

    def validate(self) -> "GenerationRequest":
        """Checks every field; raises RequestError naming the first problem and how to fix it."""
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise RequestError(f"{name} must be a whole number of pixels, not {value!r}.")
            if value % 8:
                lower = max(8, value - value % 8)
                raise RequestError(f"{name} {value} is not a multiple of 8: use {lower} or {lower + 8}.")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(f"{name} must be a number, not {value!r}.")
            if not low <= value <= high:
                raise RequestError(f"{name} must be between {low:g} and {high:g}, not {value:g}.")
        if self.rng_source not in RNG_SOURCES:
            raise RequestError(f"rng_source must be one of {', '.join(RNG_SOURCES)}, not {self.rng_source!r}.")
        if self.preview_every < 0:
            raise RequestError("preview_every must be 0 (no previews) or a number of steps.")
        for name in ("seed", "subseed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < -1 or value >= 2**32:
                raise RequestError(f"{name} must be -1 (random) or a whole number from 0 to 4294967295, not {value!r}.")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerationRequest":
        """Builds a request from A1111-style keys, ignoring unknown ones and nulls (as its clients send)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and v is not None})
