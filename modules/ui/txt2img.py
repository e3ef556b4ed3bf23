"""The txt2img tab: prompt, parameters (with Hires. fix), Generate / Interrupt / Skip, live preview,
progress, gallery.

Every parameter component is named after the `GenerationRequest` field it fills, and the handlers
receive them as a dict, so adding a parameter is one line, never a positional shuffle. The pieces
shared with img2img are in generation_panel.py (layout) and generation_run.py (running a job).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from modules.generation.request import GenerationRequest
from modules.services import Services
from modules.ui.controlnet_panel import ControlNetPanel, build_controlnet_panel
from modules.ui.detailer_panel import DetailerPanel, build_detailer_panel
from modules.ui.dynamic_panel import build_dynamic_panel
from modules.ui.extra_networks import build_extra_networks
from modules.ui.generation_panel import (
    Fields,
    GenerationPanel,
    PromptRow,
    build_batch_sliders,
    build_cfg_slider,
    build_output_column,
    build_prompt_row,
    build_sampler_controls,
    build_seed_controls,
    build_size_sliders,
    wire_prompt_row,
)
from modules.ui.generation_run import Prepared, field_values, preview_every, wire_generation
from modules.ui.hires_fix import build_hires_fix, hires_request_values, wire_size_line
from modules.ui.refiner_section import build_refiner_section
from modules.ui.regional_panel import RegionalPanel, build_regional_panel
from modules.ui.scripts_panel import build_scripts_panel
from modules.ui.sessions import SessionRuns
from modules.ui.text import Words

PREFIX = "txt2img"


@dataclass
class Txt2ImgTab:
    """The components other tabs and the shell need."""

    gallery: gr.Gallery
    prompt: gr.Textbox
    send_buttons: dict[str, gr.Button]
    generations: list  # the Generate events, for the shell to refresh the model line after them
    fields: Fields  # GenerationRequest field -> its component
    prompt_row: PromptRow  # its paste button and restore notice are wired by send_to.py
    controlnet: ControlNetPanel  # its units are restored by send_to.py
    detailer: DetailerPanel  # its tabs are restored by send_to.py
    regional: RegionalPanel  # its settings are restored by send_to.py


def build_txt2img_tab(services: Services, runs: SessionRuns) -> Txt2ImgTab:
    fields: Fields = {}
    defaults = services.models.generation_defaults()  # the demo model's size and CFG when Easel starts on it
    prompt_row = build_prompt_row(services, PREFIX, fields)
    with gr.Row(elem_classes="easel-workspace"):
        with gr.Column(scale=5, min_width=340, elem_id=f"{PREFIX}-parameters"):
            build_sampler_controls(services, PREFIX, fields)
            with gr.Row():
                with gr.Column(scale=4, min_width=200):
                    build_size_sliders(PREFIX, fields, defaults)
                with gr.Column(scale=3, min_width=140):
                    build_batch_sliders(PREFIX, fields)
            build_cfg_slider(PREFIX, fields, defaults)
            reuse_seed = build_seed_controls(PREFIX, fields)
            # The sections, in SECTION_ORDER (modules/ui/sections.py).
            hires_size_line = build_hires_fix(fields, services.upscalers.names())
            build_refiner_section(services, PREFIX, fields)
            controlnet = build_controlnet_panel(services, PREFIX, Words(services.translations))
            detailer = build_detailer_panel(services, PREFIX)
            regional = build_regional_panel(PREFIX, Words(services.translations), fields["prompt"], fields["width"], fields["height"])
            dynamic = build_dynamic_panel(services, PREFIX, fields["prompt"], fields["seed"], fields["n_iter"], fields["batch_size"])
            scripts = build_scripts_panel(services.extensions, "txt2img", PREFIX, services.upscalers.names())
            build_extra_networks(services, PREFIX, fields["prompt"])
        with gr.Column(scale=6, min_width=340, elem_id=f"{PREFIX}-results"):
            output = build_output_column(PREFIX)
    wire_size_line(fields, hires_size_line, Words(services.translations))
    panel = GenerationPanel(PREFIX, fields, prompt_row, reuse_seed, output)

    def prepare(values: dict[Any, Any]) -> Prepared:
        data = hires_request_values(field_values(values, fields, GenerationRequest))
        request = controlnet.apply(values, GenerationRequest(**data, preview_every=preview_every(services)))
        request, script = scripts.apply(values, regional.apply(values, dynamic.apply(values, detailer.apply(values, request))))
        return Prepared(request, script=script)

    wire_prompt_row(services, prompt_row, fields, output.progress)
    generations = wire_generation(services, runs, panel, prepare, services.generation.submit_txt2img, {*fields.values(), *scripts.components(), *controlnet.components(), *detailer.components(), *dynamic.components(), *regional.components()}, "txt2img-images")
    return Txt2ImgTab(gallery=output.gallery, prompt=fields["prompt"], send_buttons=output.send, generations=generations, fields=fields,
                      prompt_row=prompt_row, controlnet=controlnet, detailer=detailer, regional=regional)
