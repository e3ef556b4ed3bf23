"""The Regional prompts section of txt2img and img2img (Regional Prompter's settings, Attention mode):
Active, the divide mode (Matrix: columns or rows with their ratios; Mask: a picture with each region
painted in its colour), the base prompt and its ratio, the common prompt and common negative, and a
live drawing of the layout over the canvas size, each region in a colour with the start of its
prompt. The prompt box holds the regions' prompts, separated by BREAK (ADDCOL / ADDROW / ADDBASE /
ADDCOMM as the extension reads them). Send to / paste restore a picture's settings here."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from modules.errors import UserError
from modules.regions.args import RegionalRequest
from modules.regions.setup import prepare_regions
from modules.ui.progress_view import error_html
from modules.ui.text import L, Words

COLOURS = [(230, 80, 80), (80, 140, 230), (90, 190, 110), (230, 190, 60), (170, 100, 210), (60, 190, 200), (230, 130, 40), (140, 140, 140)]
BASE_COLOUR = (200, 200, 200)
DRAWING = 256  # the longer side of the layout drawing


@dataclass
class RegionalPanel:
    active: gr.Checkbox
    mode: gr.Radio
    submode: gr.Radio
    ratios: gr.Textbox
    use_base: gr.Checkbox
    base_ratios: gr.Textbox
    use_common: gr.Checkbox
    use_ncommon: gr.Checkbox
    mask: gr.Image

    def components(self) -> set:
        return set(self.settings()) | {self.mask}

    def settings(self) -> list:
        """What restoring a picture sets (all but the mask, which a picture does not carry)."""
        return [self.active, self.mode, self.submode, self.ratios, self.use_base, self.base_ratios, self.use_common, self.use_ncommon]

    def request(self, values: dict[Any, Any]) -> RegionalRequest:
        mask = values.get(self.mask)
        return RegionalRequest(active=True, mode=values.get(self.mode) or "Matrix", matrix_submode=values.get(self.submode) or "Columns",
                               ratios=str(values.get(self.ratios) or "1,1"), use_base=bool(values.get(self.use_base)),
                               base_ratios=str(values.get(self.base_ratios) or "0.2"), use_common=bool(values.get(self.use_common)),
                               use_ncommon=bool(values.get(self.use_ncommon)), mask=mask.convert("RGB") if isinstance(mask, Image.Image) else None)

    def apply(self, values: dict[Any, Any], request: Any) -> Any:
        return replace(request, regional=self.request(values)) if values.get(self.active) else request

    def restore_updates(self, regional: RegionalRequest | None) -> dict:
        if regional is None:
            return {self.active: False}
        submode = "Rows" if regional.matrix_submode in ("Rows", "Vertical") else "Columns"
        return {self.active: regional.active, self.mode: regional.mode if regional.mode in ("Matrix", "Mask") else "Matrix", self.submode: submode,
                self.ratios: regional.ratios, self.use_base: regional.use_base, self.base_ratios: regional.base_ratios,
                self.use_common: regional.use_common, self.use_ncommon: regional.use_ncommon}


def draw_layout(request: RegionalRequest, prompt: str, width: int, height: int) -> Image.Image:
    """Each region of the layout in its colour at the canvas's shape, labelled with its prompt part."""
    prepared = prepare_regions(replace(request, active=True), prompt, "")
    if prepared is None:
        raise UserError("The prompt has no BREAK (or ADDCOL / ADDROW): write one prompt per region, separated by BREAK.")
    scale = DRAWING / max(width, height, 1)
    w, h = max(int(width * scale), 8), max(int(height * scale), 8)
    grid = prepared.layout.assignment(h, w).numpy()
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[:] = BASE_COLOUR
    for region in range(len(prepared.layout.parts)):
        pixels[grid == region] = COLOURS[region % len(COLOURS)]
    picture = Image.fromarray(pixels)
    pen = ImageDraw.Draw(picture)
    parts = prepared.prompt.parts
    for region, part in enumerate(prepared.layout.parts):
        ys, xs = np.nonzero(grid == region)
        if len(xs):
            label = parts[part][:18] if part < len(parts) else ""
            pen.text((int(xs.min()) + 3, int(ys.min()) + 2), f"{region + 1}: {label}", fill=(0, 0, 0))
    return picture


def build_regional_panel(prefix: str, words: Words, prompt: gr.Textbox, width: gr.Slider, height: gr.Slider) -> RegionalPanel:
    with gr.Accordion(L("Regional prompts"), open=False, elem_id=f"{prefix}-regional"):
        active = gr.Checkbox(value=False, label=L("Active"), elem_id=f"{prefix}-regional-active",
                             info=L("Different prompts in different parts of the picture: one prompt per region, separated by BREAK."))
        with gr.Row():
            mode = gr.Radio([(L("Matrix"), "Matrix"), (L("Mask"), "Mask")], value="Matrix", label=L("Divide mode"),
                            elem_id=f"{prefix}-regional-mode", info=L("Regions as a grid of ratios, or painted in a mask picture."))
            submode = gr.Radio([(L("Columns"), "Columns"), (L("Rows"), "Rows")], value="Columns", label=L("Matrix divide"),
                               elem_id=f"{prefix}-regional-submode", info=L("Side by side, or stacked from top to bottom."))
        ratios = gr.Textbox(value="1,1", label=L("Divide ratio"), elem_id=f"{prefix}-regional-ratios",
                            info=L("1,1: two equal parts; 1,2,1,1;2,4,6: each ; group is a row (column) whose first number is its weight."))
        with gr.Row():
            use_base = gr.Checkbox(value=False, label=L("Use base prompt"), elem_id=f"{prefix}-regional-use-base",
                                   info=L("The first part (before ADDBASE) is mixed into every region."))
            base_ratios = gr.Textbox(value="0.2", label=L("Base ratio"), elem_id=f"{prefix}-regional-base-ratios",
                                     info=L("How much of the base each region takes (one number, or one per region)."))
        with gr.Row():
            use_common = gr.Checkbox(value=False, label=L("Use common prompt"), elem_id=f"{prefix}-regional-use-common",
                                     info=L("The first part is put in front of every region's prompt."))
            use_ncommon = gr.Checkbox(value=False, label=L("Use common negative prompt"), elem_id=f"{prefix}-regional-use-ncommon",
                                      info=L("The same for the negative prompt."))
        with gr.Row():
            mask = gr.Image(label=L("Region mask (Mask mode)"), type="pil", sources=["upload", "clipboard"], elem_id=f"{prefix}-regional-mask",
                            height=200)
            drawing = gr.Image(label=L("Layout"), type="pil", interactive=False, elem_id=f"{prefix}-regional-layout", height=200)
        message = gr.HTML("", elem_id=f"{prefix}-regional-message")
    panel = RegionalPanel(active, mode, submode, ratios, use_base, base_ratios, use_common, use_ncommon, mask)

    def on_layout_change(text: str, w: float, h: float, mode_value: str, submode_value: str, ratios_value: str, base: bool, base_value: str,
                  common: bool, ncommon: bool, mask_value: Any, request: gr.Request) -> tuple:
        values = (mode_value, submode_value, ratios_value, base, base_value, common, ncommon, mask_value)
        settings = panel.request(dict(zip([mode, submode, ratios, use_base, base_ratios, use_common, use_ncommon, mask], values)))
        try:
            return draw_layout(settings, text or "", int(w or 512), int(h or 512)), ""
        except UserError as error:
            return None, error_html(str(error), lambda t, **v: words.say(request, t, **v))

    inputs = [prompt, width, height, mode, submode, ratios, use_base, base_ratios, use_common, use_ncommon, mask]
    for component in (active, mode, submode, ratios, use_base, base_ratios, use_common, mask):
        component.change(on_layout_change, inputs, [drawing, message], show_progress="hidden")
    return panel
