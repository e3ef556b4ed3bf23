"""Easel's demo model (models/Stable-diffusion/easel-demo-*.safetensors): when it is used, and the
size and CFG the generation tabs open with when Easel starts on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modules.i18n import N_

if TYPE_CHECKING:
    from modules.checkpoints.registry import ModelFile

DEMO_PREFIX = "easel-demo-"  # file names of the demo models Easel ships (models/Stable-diffusion)


@dataclass(frozen=True)
class GenerationDefaults:
    """The size and CFG the generation tabs open with."""

    width: int = 512
    height: int = 512
    cfg_scale: float = 7.0
    note: str = ""  # a line shown under the CFG slider when these are a model's own defaults
    outpaint_pixels: int = 128  # "Pixels to expand" (A1111's default)


# The demo model was trained on 64x64 pictures, and at CFG above about 4 its guided predictions
# overshoot (LMS, PLMS and Heun then draw the wrong colours; see its model card).
# Outpainting 128 pixels each way would make its 64x64 picture 320x320, which it fills with a
# crowd of small shapes; 32 makes 128x128.
DEMO_DEFAULTS = GenerationDefaults(64, 64, 2.5, N_("Easel's demo model: drawn at 64x64 and CFG 2.5, the size and scale it was trained and measured at."), 32)


def first_checkpoint(checkpoints: list["ModelFile"]) -> "ModelFile":
    """The first listed checkpoint that is not one of Easel's demo models, else the first listed:
    the demo is for a fresh install, and a user's own model wins as soon as there is one."""
    return next((entry for entry in checkpoints if not entry.path.name.startswith(DEMO_PREFIX)), checkpoints[0])


def defaults_for(checkpoint_name: str | None) -> GenerationDefaults:
    """The demo model's own size and CFG when Easel starts on it, else A1111's 512x512 and 7."""
    return DEMO_DEFAULTS if checkpoint_name is not None and checkpoint_name.startswith(DEMO_PREFIX) else GenerationDefaults()
