"""The Outpainting tab: a picture, the sides to extend and by how much, the fill method, and the
usual prompt / sampler / seed controls; the enlarged canvas is shown (new area checkered) before
anything runs, and the job streams its live preview like the other tabs.

Elem ids are `outpaint-*`. The method's own controls show only with it: the fall-off exponent and
colour variation for "Outpainting mk2", masked content for "Poor man's outpainting", the window /
tile size for both A1111 methods (Easel fill paints the whole canvas at once). Picking a method puts
its default mask blur in the slider.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import gradio as gr
from PIL import Image

from modules.demo_model import GenerationDefaults
from modules.errors import UserError
from modules.generation.image_ops import to_rgb
from modules.generation.outpaint import DIRECTIONS, OUTPAINT_METHODS, OutpaintRequest, resolve
from modules.generation.outpaint.canvas import canvas_preview
from modules.generation.outpaint.request import MASK_BLUR_RANGE, PIXELS_RANGE
from modules.generation.request import MASKED_CONTENT, Img2ImgRequest
from modules.infotext.restore import restore_outpaint
from modules.services import Services
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
from modules.ui.progress_view import Say, english
from modules.ui.sessions import SessionRuns
from modules.ui.text import L, Words

if TYPE_CHECKING:
    from modules.picture_restore import PictureSettings

PREFIX = "outpaint"
DEFAULT_METHOD = "Easel fill"
WINDOW_METHODS = tuple(label for label, method in OUTPAINT_METHODS.items() if method.size_multiple > 8)  # they use width x height
IMAGE_HEIGHT = 360
OUTPAINT_CSS = "#outpaint-image img, #outpaint-canvas img { width: 100%; height: 100%; object-fit: contain; }\n" \
               ".easel-canvas-size { opacity: .8; }\n"


@dataclass
class OutpaintingTab:
    """The components the shell needs to send pictures and parameters here."""

    fields: Fields  # the base img2img request's fields
    settings: Fields  # OutpaintRequest fields: method, directions, pixels, mask_blur, noise_q, color_variation, inpainting_fill
    image: gr.Image
    gallery: gr.Gallery
    progress: gr.HTML
    send_buttons: dict[str, gr.Button]
    generations: list
    prompt_row: PromptRow  # its paste button and restore notice are wired by send_to.py

    # Restored by the outpaint settings of an outpainted picture, not by its request fields: the
    # enlarged size, and the blur and fill its method chose.
    OWN_FIELDS: ClassVar[tuple[str, ...]] = ("width", "height", "mask_blur", "inpainting_fill")

    def settable(self) -> set[str]:
        """The request fields a picture's infotext may set here (see modules/infotext/restore.py)."""
        return set(self.fields) - set(self.OWN_FIELDS)

    def receive(self, image: Image.Image, restored: "PictureSettings | None") -> dict:
        """Updates that put `image` in as the picture to extend, with what its infotext restores."""
        return {self.image: image, **self.parameter_updates(restored)}

    def parameter_updates(self, restored: "PictureSettings | None") -> dict:
        """The prompt, sampler, seed... a picture's infotext restores and, when it was outpainted,
        the outpaint settings it records (what these could not apply joins `restored.not_applied`)."""
        if restored is None:
            return {}
        updates: dict[Any, Any] = {component: restored.fields[name] for name, component in self.fields.items() if name in restored.fields}
        outpainted = restore_outpaint(restored.params)
        restored.not_applied.extend(outpainted.not_applied)
        shown = settings_display_values(outpainted.fields)
        updates.update({component: shown[name] for name, component in self.settings.items() if name in shown})
        return updates

    def receive_outputs(self) -> list:
        return [self.image, *self.fields.values(), *self.settings.values()]


def settings_display_values(values: dict[str, Any]) -> dict[str, Any]:
    """Outpaint settings (from an infotext) as the controls show them; unknown ones left out."""
    shown = dict(values)
    if shown.get("method") not in OUTPAINT_METHODS:
        shown.pop("method", None)
    if "directions" in shown:
        shown["directions"] = [d for d in DIRECTIONS if d in shown["directions"]]
        if not shown["directions"]:
            del shown["directions"]
    method = OUTPAINT_METHODS.get(shown.get("method", ""))
    if "inpainting_fill" in shown and method is not None and method.fill_is_choice:
        shown["inpainting_fill"] = MASKED_CONTENT[shown["inpainting_fill"]]
    else:  # only poor man's records its own; the others' would be A1111's default for a missing key
        shown.pop("inpainting_fill", None)
    if "pixels" in shown:
        shown["pixels"] = min(max(shown["pixels"], PIXELS_RANGE[0]), PIXELS_RANGE[1])
    return shown


def plan_canvas(image: Image.Image | None, directions: list[str], pixels: float | None, method: str, say: Say = english) -> tuple[Image.Image | None, str]:
    """The enlarged canvas to show and a line about it (sizes, each side's growth, rounding)."""
    def span(text: str) -> str:
        return f'<span class="easel-canvas-size" id="outpaint-canvas-size">{text}</span>'

    if image is None:
        return None, span(html.escape(say("Upload a picture, or send one here from another tab.")))
    if not directions:
        return to_rgb(image), span(html.escape(say("Tick at least one side to extend.")))
    request = OutpaintRequest(Img2ImgRequest(), method=method if method in OUTPAINT_METHODS else DEFAULT_METHOD,
                              directions=tuple(directions), pixels=int(pixels or PIXELS_RANGE[0]))
    picture = to_rgb(image)
    expansion = resolve(request, picture.size).expansion
    width, height = expansion.size(picture.size)
    grown = ", ".join(f"{say(side)} +{amount}" for side, amount in expansion.sides())
    rounded = any(amount != request.pixels for _, amount in expansion.sides())
    note = say(" (rounded up to a multiple of {multiple})", multiple=OUTPAINT_METHODS[request.method].size_multiple) if rounded else ""
    line = f"{picture.width}x{picture.height} → <b>{width}x{height}</b>: {html.escape(grown)}{html.escape(note)}"
    return canvas_preview(picture, expansion), span(line)


def _build_settings(settings: Fields, defaults: GenerationDefaults) -> tuple[gr.Markdown, gr.Group, gr.Radio]:
    """Directions, pixels, method and its own controls; returns the hint, mk2's group and poor man's fill."""
    settings["directions"] = gr.CheckboxGroup([(L(side), side) for side in DIRECTIONS], value=list(DIRECTIONS), label=L("Outpainting direction"),
                                              elem_id="outpaint-directions")
    settings["pixels"] = gr.Slider(*PIXELS_RANGE, value=defaults.outpaint_pixels, step=8, label=L("Pixels to expand"), elem_id="outpaint-pixels")
    settings["method"] = gr.Radio([(L(name), name) for name in OUTPAINT_METHODS], value=DEFAULT_METHOD, label=L("Method"), elem_id="outpaint-method")
    hint = gr.Markdown(L(OUTPAINT_METHODS[DEFAULT_METHOD].hint), elem_id="outpaint-method-hint")
    settings["mask_blur"] = gr.Slider(*MASK_BLUR_RANGE, value=OUTPAINT_METHODS[DEFAULT_METHOD].mask_blur, step=1, label=L("Mask blur"), elem_id="outpaint-mask-blur")
    with gr.Group(visible=False, elem_id="outpaint-mk2-controls") as mk2_controls, gr.Row():
        settings["noise_q"] = gr.Slider(0.0, 4.0, value=1.0, step=0.01, label=L("Fall-off exponent (lower=higher detail)"), elem_id="outpaint-falloff")
        settings["color_variation"] = gr.Slider(0.0, 1.0, value=0.05, step=0.01, label=L("Color variation"), elem_id="outpaint-color-variation")
    settings["inpainting_fill"] = gr.Radio([(L(label), label) for label in MASKED_CONTENT], value="fill", type="index", label=L("Masked content"),
                                           visible=False, elem_id="outpaint-masked-content")
    return hint, mk2_controls, settings["inpainting_fill"]


def build_outpainting_tab(services: Services, runs: SessionRuns) -> OutpaintingTab:
    fields: Fields = {}
    defaults = services.models.generation_defaults()  # the demo model's size, CFG and pixels to expand when Easel starts on it
    settings: Fields = {}
    prompt_row = build_prompt_row(services, PREFIX, fields)
    words = Words(services.translations)
    with gr.Row(elem_classes="easel-workspace"):
        with gr.Column(scale=5, min_width=340, elem_id=f"{PREFIX}-parameters"):
            with gr.Row():
                image = gr.Image(label=L("Picture to extend"), type="pil", image_mode=None, format="png", sources=["upload", "clipboard"],
                                 height=IMAGE_HEIGHT, elem_id="outpaint-image")
                canvas = gr.Image(label=L("Enlarged canvas (new area checkered)"), type="pil", format="png", interactive=False,
                                  height=IMAGE_HEIGHT, elem_id="outpaint-canvas")
            canvas_line = gr.HTML(L("Upload a picture, or send one here from another tab."), elem_id="outpaint-canvas-line", padding=False,
                                  elem_classes="easel-canvas-size")
            hint, mk2_controls, poor_mans_fill = _build_settings(settings, defaults)
            build_sampler_controls(services, PREFIX, fields)
            with gr.Column(visible=False, elem_id="outpaint-window") as window:
                gr.Markdown(L("Window (mk2) / tile (poor man's) size:"))
                build_size_sliders(PREFIX, fields, defaults)
            build_batch_sliders(PREFIX, fields)
            build_cfg_slider(PREFIX, fields, defaults)
            fields["denoising_strength"] = gr.Slider(0.0, 1.0, value=0.8, step=0.01, label=L("Denoising strength"), elem_id="outpaint-denoising")
            reuse_seed = build_seed_controls(PREFIX, fields)
        with gr.Column(scale=6, min_width=340, elem_id=f"{PREFIX}-results"):
            output = build_output_column(PREFIX)
    panel = GenerationPanel(PREFIX, fields, prompt_row, reuse_seed, output)

    def prepare(values: dict[Any, Any]) -> Prepared:
        picture = values[image]
        if picture is None:
            raise UserError("Upload a picture to extend first (or send one here from another tab).")
        base = Img2ImgRequest(**field_values(values, fields, Img2ImgRequest), init_images=[picture], preview_every=preview_every(services))
        method = values[settings["method"]]
        chosen_fill = values[settings["inpainting_fill"]]
        request = OutpaintRequest(
            base, method=method, directions=tuple(values[settings["directions"]] or ()), pixels=int(values[settings["pixels"]]),
            mask_blur=int(values[settings["mask_blur"]]), noise_q=float(values[settings["noise_q"]]),
            color_variation=float(values[settings["color_variation"]]),
            inpainting_fill=chosen_fill if method in OUTPAINT_METHODS and OUTPAINT_METHODS[method].fill_is_choice else None,
        )
        return Prepared(request)

    def on_method(method: str) -> tuple:
        row = OUTPAINT_METHODS.get(method, OUTPAINT_METHODS[DEFAULT_METHOD])
        return (L(row.hint), row.mask_blur, gr.Group(visible=method == "Outpainting mk2"),
                gr.Radio(visible=row.fill_is_choice), gr.Column(visible=method in WINDOW_METHODS))

    settings["method"].input(on_method, settings["method"], [hint, settings["mask_blur"], mk2_controls, poor_mans_fill, window], show_progress="hidden")
    # .change too (without touching the mask blur), so a method restored by a send shows its controls
    settings["method"].change(lambda method: on_method(method)[2:], settings["method"], [mk2_controls, poor_mans_fill, window], show_progress="hidden")
    planned = [image, settings["directions"], settings["pixels"], settings["method"]]
    def planned_canvas(image: Image.Image | None, directions: list[str], pixels: float | None, method: str, request: gr.Request) -> tuple:
        return plan_canvas(image, directions, pixels, method, lambda text, **v: words.say(request, text, **v))

    gr.on([c.change for c in planned], planned_canvas, planned, [canvas, canvas_line], show_progress="hidden",
          concurrency_limit=None, trigger_mode="always_last")
    wire_prompt_row(services, prompt_row, fields, output.progress)
    inputs = {*fields.values(), *settings.values(), image}
    generations = wire_generation(services, runs, panel, prepare, services.generation.submit_outpaint, inputs, "img2img-images")
    return OutpaintingTab(fields=fields, settings=settings, image=image, gallery=output.gallery, progress=output.progress,
                          send_buttons=output.send, generations=generations, prompt_row=prompt_row)
