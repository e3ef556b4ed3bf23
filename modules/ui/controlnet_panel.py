"""The ControlNet section of txt2img and img2img: three unit tabs (the extension's default unit
count), each with Enable, a Control Type that narrows the preprocessor and model lists, the control
image (img2img: empty uses the img2img picture), the preprocessor with its own sliders (resolution,
thresholds, as `/controlnet/module_list` describes them) and a Preview of its map, the model,
weight, guidance start and end, control mode, resize mode and pixel perfect. The values become
`ControlUnit`s of the request; the same checks as the API's run when the job is submitted, and their
sentences show in the progress line. Send to / paste restore a picture's units here (`restore_updates`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import gradio as gr
from PIL import Image

from modules.controlnet.control_types import ALL, control_types
from modules.controlnet.preprocess import DEFAULT_RESOLUTION, PREPROCESSORS, Preprocessor, Slider, detect, find_preprocessor
from modules.controlnet.units import CONTROL_MODES, DEFAULT_UNIT_COUNT, RESIZE_MODES, ControlUnit
from modules.errors import UserError
from modules.i18n import N_
from modules.services import Services
from modules.ui.progress_view import Say, english, error_html
from modules.ui.text import L, Words

MODEL_CLASS = "easel-controlnet-model"  # refreshed with the upscaler lists (modules/ui/app.py)
NONE = "None"
UNIT_LABELS = ("Unit 0", "Unit 1", "Unit 2")


RESOLUTION = Slider("Preprocessor Resolution", DEFAULT_RESOLUTION, 64, 2048, 8)


def slider_update(slider: Slider | None, value: float | None, say: Say) -> gr.Slider:
    """A unit's resolution or threshold slider shown as `slider` describes it (hidden for None)."""
    if slider is None:
        return gr.Slider(visible=False)
    return gr.Slider(visible=True, label=say(slider.name), minimum=slider.minimum, maximum=slider.maximum, step=slider.step,
                     value=slider.value if value is None or value == -1 else value)


def preprocessor_or_none(name: str | None) -> Preprocessor:
    return PREPROCESSORS.get(name or "none") or PREPROCESSORS["none"]


@dataclass
class UnitControls:
    enabled: gr.Checkbox
    control_type: gr.Radio
    image: gr.Image
    module: gr.Dropdown
    model: gr.Dropdown
    processor_res: gr.Slider
    threshold_a: gr.Slider
    threshold_b: gr.Slider
    weight: gr.Slider
    guidance_start: gr.Slider
    guidance_end: gr.Slider
    control_mode: gr.Radio
    resize_mode: gr.Radio
    pixel_perfect: gr.Checkbox

    def components(self) -> list:
        """What a generation reads."""
        return [self.enabled, self.image, self.module, self.model, self.processor_res, self.threshold_a, self.threshold_b, self.weight,
                self.guidance_start, self.guidance_end, self.control_mode, self.resize_mode, self.pixel_perfect]

    def settings(self) -> list:
        """What restoring a picture sets (all but the image, which a picture does not carry)."""
        return [self.enabled, self.control_type, self.module, self.model, self.processor_res, self.threshold_a, self.threshold_b,
                self.weight, self.guidance_start, self.guidance_end, self.control_mode, self.resize_mode, self.pixel_perfect]

    def unit(self, values: dict[Any, Any]) -> ControlUnit | None:
        if not values.get(self.enabled):
            return None
        image = values.get(self.image)
        preprocessor = preprocessor_or_none(values.get(self.module))

        def shown(component: gr.Slider, present: bool) -> float:
            value = values.get(component)
            return float(value) if present and value is not None else -1

        return ControlUnit(
            image=image.convert("RGB") if isinstance(image, Image.Image) else None, module=values.get(self.module) or "none",
            model=values.get(self.model) or NONE, weight=float(values.get(self.weight) or 0), guidance_start=float(values.get(self.guidance_start) or 0),
            guidance_end=float(1 if values.get(self.guidance_end) is None else values[self.guidance_end]),
            control_mode=values.get(self.control_mode) or CONTROL_MODES[0], resize_mode=values.get(self.resize_mode) or RESIZE_MODES[1],
            pixel_perfect=bool(values.get(self.pixel_perfect)), processor_res=int(shown(self.processor_res, preprocessor.resolution)),
            threshold_a=shown(self.threshold_a, preprocessor.slider_a is not None), threshold_b=shown(self.threshold_b, preprocessor.slider_b is not None),
        )

    def module_updates(self, name: str | None, say: Say, unit: ControlUnit | None = None) -> dict:
        """The three sliders for preprocessor `name`: its defaults, or `unit`'s values."""
        preprocessor = preprocessor_or_none(name)
        return {
            self.processor_res: slider_update(RESOLUTION if preprocessor.resolution else None, unit.processor_res if unit else None, say),
            self.threshold_a: slider_update(preprocessor.slider_a, unit.threshold_a if unit else None, say),
            self.threshold_b: slider_update(preprocessor.slider_b, unit.threshold_b if unit else None, say),
        }

    def restore_updates(self, unit: ControlUnit | None, say: Say) -> dict:
        """This tab set to a picture's unit (None: the picture has none in this slot, so it is off)."""
        if unit is None:
            return {self.enabled: False}
        return {
            self.enabled: True, self.control_type: ALL, self.module: gr.Dropdown(choices=list(PREPROCESSORS), value=unit.module),
            self.model: unit.model, self.weight: unit.weight, self.guidance_start: unit.guidance_start, self.guidance_end: unit.guidance_end,
            self.control_mode: unit.control_mode, self.resize_mode: unit.resize_mode, self.pixel_perfect: unit.pixel_perfect,
            **self.module_updates(unit.module, say, unit),
        }


@dataclass
class ControlNetPanel:
    units: list[UnitControls] = field(default_factory=list)

    def components(self) -> set:
        return {component for unit in self.units for component in unit.components()}

    def settings(self) -> list:
        return [component for unit in self.units for component in unit.settings()]

    def apply(self, values: dict[Any, Any], request: Any) -> Any:
        """The request with the enabled units (None of them: unchanged)."""
        units = [u for u in (controls.unit(values) for controls in self.units) if u is not None]
        return replace(request, control_units=units) if units else request

    def restore_updates(self, units: dict[int, ControlUnit], say: Say = english) -> dict:
        """Every unit tab set to the picture's units (`PictureSettings.fields["control_units"]`)."""
        updates: dict = {}
        for slot, controls in enumerate(self.units):
            updates.update(controls.restore_updates(units.get(slot), say))
        return updates


def model_choices(services: Services) -> list:
    return [(L(NONE), NONE), *services.controlnets.catalog.titles()]


def type_choices() -> list:
    return [(L(name), name) if name == ALL else name for name in control_types([])]


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
                    control_type = gr.Radio(type_choices(), value=ALL, label=L("Control Type"), elem_id=f"{unit_id}-type",
                                            info=L("Narrows the preprocessors and models to one kind of control."))
                    with gr.Row():
                        image = gr.Image(label=L("Control image"), type="pil", sources=["upload", "clipboard"], elem_id=f"{unit_id}-image", height=200)
                        preview = gr.Image(label=L("Preprocessor preview"), type="pil", interactive=False, elem_id=f"{unit_id}-preview", height=200)
                    gr.Markdown(L(image_hint), elem_classes="easel-hint")
                    with gr.Row():
                        module = gr.Dropdown(list(PREPROCESSORS), value="none", label=L("Preprocessor"), elem_id=f"{unit_id}-module",
                                             info=L("Turns the control image into a map (none: the image is the map)."))
                        model = gr.Dropdown(model_choices(services), value=NONE, label=L("Model"), elem_id=f"{unit_id}-model",
                                            elem_classes=MODEL_CLASS, info=L("A ControlNet from models/ControlNet, made for this kind of checkpoint."))
                    with gr.Row():
                        processor_res = gr.Slider(64, 2048, value=DEFAULT_RESOLUTION, step=8, label=L(RESOLUTION.name), visible=False,
                                                  elem_id=f"{unit_id}-resolution", info=L("The size of the map's shorter side."))
                        threshold_a = gr.Slider(0, 255, value=100, label=L("Threshold A"), visible=False, elem_id=f"{unit_id}-threshold-a",
                                                info=L("A setting of this preprocessor."))
                        threshold_b = gr.Slider(0, 255, value=200, label=L("Threshold B"), visible=False, elem_id=f"{unit_id}-threshold-b",
                                                info=L("A setting of this preprocessor."))
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
                controls = UnitControls(enabled, control_type, image, module, model, processor_res, threshold_a, threshold_b, weight, start, end,
                                        mode, resize, pixel_perfect)
                panel.units.append(controls)
                _wire_unit(services, controls, preview, preview_button, message, words, index)
    return panel


def _wire_unit(services: Services, controls: UnitControls, preview: gr.Image, button: gr.Button, message: gr.HTML, words: Words,
               index: int) -> None:
    sliders = [controls.processor_res, controls.threshold_a, controls.threshold_b]

    def on_type(name: str, request: gr.Request) -> tuple:
        kind = control_types(services.controlnets.catalog.titles()).get(name or ALL) or control_types([])[ALL]
        module = kind.default_module if name != ALL else "none"
        models: list[Any] = [(L(NONE), NONE), *kind.models]
        updates = controls.module_updates(module, lambda text, **values: words.say(request, text, **values))
        return (gr.Dropdown(choices=kind.modules, value=module), gr.Dropdown(choices=models, value=kind.default_model if name != ALL else NONE),
                *(updates[slider] for slider in sliders))

    def on_module(name: str, request: gr.Request) -> tuple:
        updates = controls.module_updates(name, lambda text, **values: words.say(request, text, **values))
        return tuple(updates[slider] for slider in sliders)

    def on_preview(picture: Image.Image | None, name: str, resolution: float, a: float, b: float, request: gr.Request) -> tuple:
        def say(text: str, **values: Any) -> str:
            return words.say(request, text, **values)
        if picture is None:
            return None, error_html("There is no control image to preview: add one first.", say)
        try:
            annotators = services.controlnets.annotators
            preprocessor = find_preprocessor(name or "none", f"ControlNet unit {index}", annotators)
            found = detect(preprocessor, picture, int(resolution or -1), float(a) if preprocessor.slider_a and a is not None else -1,
                           float(b) if preprocessor.slider_b and b is not None else -1, annotators=annotators)
        except UserError as error:
            return None, error_html(str(error), say)
        return Image.fromarray(found), ""

    controls.control_type.input(on_type, controls.control_type, [controls.module, controls.model, *sliders], show_progress="hidden")
    controls.module.input(on_module, controls.module, sliders, show_progress="hidden")
    button.click(on_preview, [controls.image, controls.module, *sliders], [preview, message], show_progress="hidden")
