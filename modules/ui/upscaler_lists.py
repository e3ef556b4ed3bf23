"""The upscaler dropdowns (hires fix, Extras, SD upscale): their choices, and refreshing them when
model files were added (the 🔄 button and each page load read the folders again)."""

from __future__ import annotations

import gradio as gr

from modules.generation.request import LATENT_UPSCALE_MODES
from modules.ui.text import L
from modules.upscalers.catalog import BUILT_IN

BUILT_IN_NAMES = {*LATENT_UPSCALE_MODES, *BUILT_IN}  # translated in dropdowns; model files keep their names
HIRES_CLASS = "easel-hires-upscaler"  # elem class of dropdowns that list the latent modes too
UPSCALER_CLASS = "easel-upscaler-choice"


def upscaler_choices(names: list[str]) -> list:
    """Dropdown choices: the built-in names translated, model file names as they are."""
    return [(L(name), name) if name in BUILT_IN_NAMES else name for name in names]


def hires_upscaler_names(upscaler_names: list[str]) -> list[str]:
    """A1111's hires list: the latent modes, then the upscalers (None, Lanczos, Nearest, models)."""
    return [*LATENT_UPSCALE_MODES, *upscaler_names]


def refreshed(dropdown: gr.Dropdown, upscaler_names: list[str], current: str | None) -> gr.Dropdown:
    """The dropdown's new choices; the chosen value stays when it is still there."""
    names = hires_upscaler_names(upscaler_names) if HIRES_CLASS in (dropdown.elem_classes or []) else upscaler_names
    return gr.Dropdown(choices=upscaler_choices(names), value=current if current in names else names[0])
