"""The ControlNet section of txt2img and img2img: three unit tabs (the extension's default unit
count), each with Enable, the control image (img2img: empty uses the img2img picture), the
preprocessor and model, weight, guidance start and end, control mode, resize mode, pixel perfect,
and a Preview of the preprocessor's map. The values become `ControlUnit`s of the request; the same
checks as the API's run when the job is submitted, and their sentences show in the progress line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import gradio as gr
from PIL import Image

from modules.controlnet.preprocess import PREPROCESSORS, detect, find_preprocessor
from modules.controlnet.units import CONTROL_MODES, DEFAULT_UNIT_COUNT, RESIZE_MODES, ControlUnit
from modules.errors import UserError
from modules.i18n import N_
from modules.services import Services
from modules.ui.progress_view import error_html
from modules.ui.text import L, Words

MODEL_CLASS = "easel-controlnet-model"  # refreshed with the upscaler lists (modules/ui/app.py)
NONE = "None"
UNIT_LABELS = ("Unit 0", "Unit 1", "Unit 2")


@dataclass
class UnitControls:
    enabled: gr.Checkbox
    image: gr.Image
    module: gr.Dropdown
    model: gr.Dropdown
    weight: gr.Slider
    guidance_start: gr.Slider
    guidance_end: gr.Slider
    control_mode: gr.Radio
    resize_mode: gr.Radio
    pixel_perfect: gr.Checkbox

    def components(self) -> list:
        return [self.enabled, self.image, self.module, self.model, self.weight, self.guidance_start, self.guidance_end,
                self.control_mode, self.resize_mode, self.pixel_perfect]

    def unit(self, values: dict[Any, Any]) -> ControlUnit | None:
        if not values.get(self.enabled):
            return None
        image = values.get(self.image)
        return ControlUnit(
            image=image.convert("RGB") if isinstance(image, Image.Image) else None, module=values.get(self.module) or "none",
            model=values.get(self.model) or NONE, weight=float(values.get(self.weight) or 0), guidance_start=float(values.get(self.guidance_start) or 0),
            guidance_end=float(1 if values.get(self.guidance_end) is None else values[self.guidance_end]),
            control_mode=values.get(self.control_mode) or CONTROL_MODES[0], resize_mode=values.get(self.resize_mode) or RESIZE_MODES[1],
            pixel_perfect=bool(values.get(self.pixel_perfect)),
        )


@dataclass
class ControlNetPanel:
    units: list[UnitControls] = field(default_factory=list)

    def components(self) -> set:
        return {component for unit in self.units for component in unit.components()}

    def apply(self, values: dict[Any, Any], request: Any) -> Any:
        """The request with the enabled units (None of them: unchanged)."""
        units = [u for u in (controls.unit(values) for controls in self.units) if u is not None]
        return replace(request, control_units=units) if units else request


def model_choices(services: Services) -> list:
    return [(L(NONE), NONE), *services.controlnets.catalog.titles()]


def build_controlnet_panel(services: Services, prefix: str, words: Words, img2img: bool = False) -> ControlNetPanel:
    panel = ControlNetPanel()
    image_hint = N_("Empty: the img2img picture is used.") if img2img else N_("The picture the preprocessor turns into a control map.")
    with gr.Accordion(L("ControlNet"), open=False, elem_id=f"{prefix}-controlnet"):
        with gr.Tabs():
            for index in range(DEFAULT_UNIT_COUNT):
                unit_id = f"{prefix}-controlnet-{index}"
                with gr.Tab(L(UNIT_LABELS[index]), elem_id=f"{unit_id}-tab"):
                    enabled = gr.Checkbox(label=L("Enable"), value=False, elem_id=f"{unit_id}-enable",
                                          info=L("Use this unit when the picture is made."))
                    with gr.Row():
                        image = gr.Image(label=L("Control image"), type="pil", sources=["upload", "clipboard"], elem_id=f"{unit_id}-image", height=200)
                        preview = gr.Image(label=L("Preprocessor preview"), type="pil", interactive=False, elem_id=f"{unit_id}-preview", height=200)
                    gr.Markdown(L(image_hint), elem_classes="easel-hint")
                    with gr.Row():
                        module = gr.Dropdown(list(PREPROCESSORS), value="none", label=L("Preprocessor"), elem_id=f"{unit_id}-module",
                                             info=L("Turns the control image into a map (none: the image is the map)."))
                        model = gr.Dropdown(model_choices(services), value=NONE, label=L("Model"), elem_id=f"{unit_id}-model",
                                            elem_classes=MODEL_CLASS, info=L("A ControlNet from models/ControlNet, made for this kind of checkpoint."))
                    preview_button = gr.Button(L("Preview"), elem_id=f"{unit_id}-preview-button", size="sm")
                    message = gr.HTML("", elem_id=f"{unit_id}-message")
                    with gr.Row():
                        weight = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label=L("Control Weight"), elem_id=f"{unit_id}-weight",
                                           info=L("How strongly the map steers the picture."))
                        start = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label=L("Starting Control Step"), elem_id=f"{unit_id}-start",
                                          info=L("Fraction of the steps after which the control begins."))
                        end = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label=L("Ending Control Step"), elem_id=f"{unit_id}-end",
                                        info=L("Fraction of the steps after which the control stops."))
                    mode = gr.Radio([(L(m), m) for m in CONTROL_MODES], value=CONTROL_MODES[0], label=L("Control Mode"), elem_id=f"{unit_id}-mode",
                                    info=L("Balanced, or weaker on the shallow layers (prompt first), or on the prompt side of CFG only (ControlNet first)."))
                    resize = gr.Radio([(L(m), m) for m in RESIZE_MODES], value=RESIZE_MODES[1], label=L("Resize Mode"), elem_id=f"{unit_id}-resize",
                                      info=L("How the map is fitted to the picture's size."))
                    pixel_perfect = gr.Checkbox(label=L("Pixel Perfect"), value=False, elem_id=f"{unit_id}-pixel-perfect",
                                                info=L("Run the preprocessor at the resolution that lands exactly on the picture's size."))
                controls = UnitControls(enabled, image, module, model, weight, start, end, mode, resize, pixel_perfect)
                panel.units.append(controls)

                def on_preview(picture: Image.Image | None, name: str, request: gr.Request, index: int = index) -> tuple:
                    def say(text: str, **values: Any) -> str:
                        return words.say(request, text, **values)
                    if picture is None:
                        return None, error_html("There is no control image to preview: add one first.", say)
                    try:
                        found = detect(find_preprocessor(name or "none", f"ControlNet unit {index}"), picture, -1, -1, -1)
                    except UserError as error:
                        return None, error_html(str(error), say)
                    return Image.fromarray(found), ""

                preview_button.click(on_preview, [image, module], [preview, message], show_progress="hidden")
    return panel
