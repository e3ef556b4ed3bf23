"""The "Refiner" section of txt2img and img2img (A1111's accordion): the checkpoint that takes the
last steps of a pass, and the share of the steps after which it takes over (0.01-1, default 0.8);
"switch by sampling steps" is A1111's setting, here per job (it starts as the setting says, and a
picture made before A1111 1.8 turns it on when pasted). Components go into the tab's fields under
the request's refiner_* names, so generation and Send to / paste use them like any other field."""

from __future__ import annotations

import gradio as gr

from modules.services import Services
from modules.ui.generation_panel import Fields
from modules.ui.text import L

NONE = "None"


def build_refiner_section(services: Services, prefix: str, fields: Fields) -> None:
    choices = [(L("None"), NONE), *services.models.checkpoint_choices()]
    with gr.Accordion(L("Refiner"), open=False, elem_id=f"{prefix}-refiner"):
        with gr.Row():
            fields["refiner_checkpoint"] = gr.Dropdown(choices, value=NONE, label=L("Checkpoint"), elem_id=f"{prefix}-refiner-checkpoint",
                                                       info=L("Takes over the last steps of the picture (an SDXL refiner, or any checkpoint)."))
            fields["refiner_switch_at"] = gr.Slider(0.01, 1.0, value=0.8, step=0.01, label=L("Switch at"), elem_id=f"{prefix}-refiner-switch-at",
                                                    info=L("The share of the steps after which the refiner takes over (1: never)."))
        fields["refiner_by_steps"] = gr.Checkbox(value=services.settings.refiner_switch_by_sample_steps, label=L("Switch by sampling steps"),
                                                 elem_id=f"{prefix}-refiner-by-steps",
                                                 info=L("Count the share in sampling steps, as A1111 did before 1.8, instead of model timesteps."))
