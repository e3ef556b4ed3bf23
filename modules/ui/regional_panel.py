"""The Regional prompts section of txt2img and img2img (Regional Prompter's settings): Active, the
divide mode (Matrix: columns or rows with their ratios; Mask: each region painted in its colour on a
canvas, or an uploaded colour-coded picture), the calculation mode (Attention, or Latent with each
region's LoRAs for its own pass: the LoRA stop step and the negative's LoRA ratios), the base prompt
and its ratio, the common prompt and common negative, and a live drawing of the layout over the
canvas size, each region in a colour with the start of its prompt. The prompt box holds the regions' prompts, separated by BREAK (ADDCOL / ADDROW / ADDBASE /
ADDCOMM as the extension reads them). Send to / paste restore a picture's settings here."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from modules.errors import UserError
from modules.prompts.extra_networks import extract_extra_networks
from modules.regions.args import RegionalRequest, parse_mask
from modules.regions.masks import palette_colour
from modules.regions.setup import prepare_regions
from modules.ui.progress_view import error_html
from modules.ui.text import L, Words

COLOURS = [(230, 80, 80), (80, 140, 230), (90, 190, 110), (230, 190, 60), (170, 100, 210), (60, 190, 200), (230, 130, 40), (140, 140, 140)]
BASE_COLOUR = (200, 200, 200)
DRAWING = 256  # the longer side of the layout drawing
BRUSH_REGIONS = 8  # the mask brush's colours: regions 1-8 in the extension's palette
CANVAS = 512  # the longer side of a blank mask canvas


def palette_hex(region: int) -> str:
    return "#%02x%02x%02x" % palette_colour(region)


def blank_canvas(width: int, height: int) -> dict:
    """A white canvas with the picture's shape for painting the regions on."""
    scale = CANVAS / max(width, height, 1)
    picture = Image.new("RGB", (max(int(width * scale), 8), max(int(height * scale), 8)), (255, 255, 255))
    return {"background": picture, "layers": [], "composite": picture}


def mask_picture(value: Any) -> Image.Image | None:
    """The painted (or uploaded) mask as an RGB picture; transparent pixels count as white (no region)."""
    picked = parse_mask(value, None)
    if not isinstance(picked, Image.Image):
        return None
    if picked.mode in ("RGBA", "LA", "P"):
        white = Image.new("RGBA", picked.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, picked.convert("RGBA")).convert("RGB")
    return picked.convert("RGB")


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
    calc_mode: gr.Radio
    prompt_submode: gr.Radio
    threshold: gr.Textbox
    lora_stop: gr.Number
    lora_neg_u: gr.Textbox
    lora_neg_te: gr.Textbox
    mask: gr.ImageEditor

    def components(self) -> set:
        return set(self.settings()) | {self.mask}

    def settings(self) -> list:
        """What restoring a picture sets (all but the mask, which a picture does not carry)."""
        return [self.active, self.mode, self.submode, self.ratios, self.use_base, self.base_ratios, self.use_common, self.use_ncommon,
                self.calc_mode, self.prompt_submode, self.threshold, self.lora_stop, self.lora_neg_u, self.lora_neg_te]

    def request(self, values: dict[Any, Any]) -> RegionalRequest:
        stop = values.get(self.lora_stop)
        return RegionalRequest(active=True, mode=values.get(self.mode) or "Matrix", matrix_submode=values.get(self.submode) or "Columns",
                               ratios=str(values.get(self.ratios) or "1,1"), use_base=bool(values.get(self.use_base)),
                               base_ratios=str(values.get(self.base_ratios) or "0.2"), use_common=bool(values.get(self.use_common)),
                               use_ncommon=bool(values.get(self.use_ncommon)), calc_mode=values.get(self.calc_mode) or "Attention",
                               prompt_submode=values.get(self.prompt_submode) or "Prompt", threshold=str(values.get(self.threshold) or "0.4"),
                               lora_stop=str(int(stop or 0)), lora_neg_u=str(values.get(self.lora_neg_u) or "0"),
                               lora_neg_te=str(values.get(self.lora_neg_te) or "0"), mask=mask_picture(values.get(self.mask)))

    def apply(self, values: dict[Any, Any], request: Any) -> Any:
        return replace(request, regional=self.request(values)) if values.get(self.active) else request

    def restore_updates(self, regional: RegionalRequest | None) -> dict:
        if regional is None:
            return {self.active: False}
        submode = "Rows" if regional.matrix_submode in ("Rows", "Vertical") else "Columns"
        return {self.active: regional.active, self.mode: regional.mode, self.submode: submode, self.prompt_submode: regional.prompt_submode,
                self.threshold: regional.threshold,
                self.ratios: regional.ratios, self.use_base: regional.use_base, self.base_ratios: regional.base_ratios,
                self.use_common: regional.use_common, self.use_ncommon: regional.use_ncommon, self.calc_mode: regional.calc_mode,
                self.lora_stop: int(regional.lora_stop.strip() or "0"), self.lora_neg_u: regional.lora_neg_u, self.lora_neg_te: regional.lora_neg_te}


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
            label = extract_extra_networks(parts[part])[0].strip()[:18] if part < len(parts) else ""
            pen.text((int(xs.min()) + 3, int(ys.min()) + 2), f"{region + 1}: {label}", fill=(0, 0, 0))
    return picture


def build_regional_panel(prefix: str, words: Words, prompt: gr.Textbox, width: gr.Slider, height: gr.Slider) -> RegionalPanel:
    with gr.Accordion(L("Regional prompts"), open=False, elem_id=f"{prefix}-regional"):
        active = gr.Checkbox(value=False, label=L("Active"), elem_id=f"{prefix}-regional-active",
                             info=L("Different prompts in different parts of the picture: one prompt per region, separated by BREAK."))
        with gr.Row():
            mode = gr.Radio([(L("Matrix"), "Matrix"), (L("Mask"), "Mask"), (L("Prompt"), "Prompt")], value="Matrix", label=L("Divide mode"),
                            elem_id=f"{prefix}-regional-mode", info=L("Regions as a grid of ratios, painted in a mask, or found where the base prompt's attention looks at each region's last word."))
            submode = gr.Radio([(L("Columns"), "Columns"), (L("Rows"), "Rows")], value="Columns", label=L("Matrix divide"),
                               elem_id=f"{prefix}-regional-submode", info=L("Side by side, or stacked from top to bottom."))
        with gr.Row():
            prompt_submode = gr.Radio([(L("Prompt"), "Prompt"), (L("Prompt-Ex"), "Prompt-Ex")], value="Prompt", label=L("Prompt divide"),
                                      elem_id=f"{prefix}-regional-prompt-submode",
                                      info=L("Prompt mode: overlapping regions add up (Prompt) or the later one covers the earlier (Prompt-Ex)."))
            threshold = gr.Textbox(value="0.4", label=L("Threshold"), elem_id=f"{prefix}-regional-threshold",
                                   info=L("Prompt mode: how strongly a place must attend to the word to join its region (one per region; lower: wider)."))
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
            calc_mode = gr.Radio([(L("Attention"), "Attention"), (L("Latent"), "Latent")], value="Attention", label=L("Calculation mode"),
                                 elem_id=f"{prefix}-regional-calc-mode",
                                 info=L("Attention: the regions inside one model pass. Latent: a pass per region, so each region's LoRAs apply there only."))
            lora_stop = gr.Number(value=0, precision=0, minimum=0, label=L("LoRA stop step"), elem_id=f"{prefix}-regional-lora-stop",
                                  info=L("Latent mode: LoRAs stop at this step (0: never)."))
        with gr.Row():
            lora_neg_u = gr.Textbox(value="0", label=L("LoRA in the negative: U-Net ratios"), elem_id=f"{prefix}-regional-lora-neg-u",
                                    info=L("Latent mode: how much of each LoRA the negative prompt's pass uses (one number per LoRA, or one for all)."))
            lora_neg_te = gr.Textbox(value="0", label=L("LoRA in the negative: text encoder ratios"), elem_id=f"{prefix}-regional-lora-neg-te",
                                     info=L("The same for the negative prompt's text encoding."))
        with gr.Row():
            with gr.Column():
                mask = gr.ImageEditor(
                    label=L("Region mask"), type="pil", image_mode="RGBA", format="png",
                    sources=["upload", "clipboard"], layers=False, transforms=(), height=300, elem_id=f"{prefix}-regional-mask",
                    brush=gr.Brush(colors=list[str | tuple[str, float]]([palette_hex(k) for k in range(BRUSH_REGIONS)]),
                                   default_color=palette_hex(0), color_mode="fixed", default_size=40),
                )
                gr.Markdown(L("Mask mode: paint each region in its colour; the brush's first colour is region 1, the next region 2, and so on."),
                            elem_id=f"{prefix}-regional-mask-hint")
                new_canvas = gr.Button(L("Blank canvas at the picture's size"), size="sm", elem_id=f"{prefix}-regional-new-canvas")
            drawing = gr.Image(label=L("Layout"), type="pil", interactive=False, elem_id=f"{prefix}-regional-layout", height=300)
        message = gr.HTML("", elem_id=f"{prefix}-regional-message")
    panel = RegionalPanel(active, mode, submode, ratios, use_base, base_ratios, use_common, use_ncommon, calc_mode, prompt_submode, threshold,
                          lora_stop, lora_neg_u, lora_neg_te, mask)

    def on_new_canvas(w: float, h: float) -> dict:
        return blank_canvas(int(w or 512), int(h or 512))

    new_canvas.click(on_new_canvas, [width, height], [mask], show_progress="hidden")

    def on_layout_change(text: str, w: float, h: float, mode_value: str, submode_value: str, ratios_value: str, base: bool, base_value: str,
                  common: bool, ncommon: bool, mask_value: Any, request: gr.Request) -> tuple:
        values = (mode_value, submode_value, ratios_value, base, base_value, common, ncommon, mask_value)
        settings = panel.request(dict(zip([mode, submode, ratios, use_base, base_ratios, use_common, use_ncommon, mask], values)))
        if settings.mode == "Prompt":
            return None, "<p>" + words.html(request, "Prompt mode finds the regions while the picture forms; they are shown beside the results.") + "</p>"
        try:
            return draw_layout(settings, text or "", int(w or 512), int(h or 512)), ""
        except UserError as error:
            return None, error_html(str(error), lambda t, **v: words.say(request, t, **v))

    inputs = [prompt, width, height, mode, submode, ratios, use_base, base_ratios, use_common, use_ncommon, mask]
    for component in (active, mode, submode, ratios, use_base, base_ratios, use_common, mask):
        component.change(on_layout_change, inputs, [drawing, message], show_progress="hidden")
    return panel
