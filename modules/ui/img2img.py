"""The img2img tab: txt2img's prompt row and parameters, plus the picture to start from in four
sub-tabs (img2img, Sketch, Inpaint with a painted mask, Inpaint upload), resize mode, "Resize to"
or "Resize by", denoising strength, and the inpainting controls (shown on the inpaint sub-tabs).

Elem ids are `img2img-*`. The sub-tab in use is kept in a State (its select events set it, and so
do the send-to handlers, which switch it), because Gradio does not pass a Tabs' selection as input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gradio as gr
from PIL import Image

from modules.generation.request import INPAINT_AREAS, MASK_MODES, MASKED_CONTENT, RESIZE_MODES, Img2ImgRequest
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
from modules.ui.img2img_inputs import INPAINT_TABS, SOURCE_TABS, multiple_of_8, resize_by_html, scaled_size, source_picture
from modules.ui.refiner_section import build_refiner_section
from modules.ui.regional_panel import RegionalPanel, build_regional_panel
from modules.ui.scripts_panel import build_scripts_panel
from modules.ui.sessions import SessionRuns
from modules.ui.text import L, Words

PREFIX = "img2img"
Size = tuple[int, int] | None  # a sub-tab's picture size, None before a picture arrives
IMAGE_HEIGHT = 420
SKETCH_COLOURS = ["#000000", "#ffffff", "#ff0000", "#00a000", "#0000ff", "#ffff00"]
# A small picture is shown filling its box (as the editors do), not at its own few pixels.
IMG2IMG_CSS = """
#img2img-image img, #img2img-inpaint-upload-image img, #img2img-inpaint-upload-mask img {
  width: 100%; height: 100%; object-fit: contain; }
.easel-hr-size, .easel-resize-by { opacity: .8; }
"""
# Radios that hold an index into a table: the request wants the index, the radio shows the label.
INDEX_RADIOS = {
    "resize_mode": RESIZE_MODES, "inpainting_mask_invert": MASK_MODES, "inpainting_fill": MASKED_CONTENT,
    "inpaint_full_res": INPAINT_AREAS,
}


@dataclass
class Img2ImgTab:
    """The components the shell needs to send pictures and parameters here."""

    fields: Fields
    pictures: dict[str, gr.components.Component]  # sub-tab id -> its picture component
    sizes: dict[str, gr.State]  # sub-tab id -> (width, height) of its picture, for "Resize by"
    source: gr.State  # the sub-tab id in use
    inpaint_controls: gr.Column
    gallery: gr.Gallery
    progress: gr.HTML
    send_buttons: dict[str, gr.Button]
    generations: list
    prompt_row: PromptRow  # its paste button and restore notice are wired by send_to.py
    controlnet: ControlNetPanel  # its units are restored by send_to.py
    detailer: DetailerPanel  # its tabs are restored by send_to.py
    regional: RegionalPanel  # its settings are restored by send_to.py

    def receive(self, tab: str, image: Image.Image) -> dict:
        """Updates that put `image` into sub-tab `tab` ("img2img" or "inpaint") and make it the one
        used (a new picture on the Inpaint tab comes with no mask painted). The browser shows the
        sub-tab (see send_to.py)."""
        return {
            self.pictures[tab]: image, self.sizes[tab]: image.size,
            self.source: tab, self.inpaint_controls: gr.Column(visible=tab in INPAINT_TABS),
        }

    def receive_outputs(self, tab: str) -> list:
        return [self.pictures[tab], self.sizes[tab], self.source, self.inpaint_controls]


def display_values(values: dict[str, Any], image_size: tuple[int, int] | None) -> dict[str, Any]:
    """Request field values (e.g. from an infotext) as this tab's components show them: index radios
    take A1111's index (one out of range is left out); the size is the picture's own (as A1111's
    send-to), rounded to a multiple of 8."""
    shown = dict(values)
    for name, labels in INDEX_RADIOS.items():
        if name in shown:
            index = int(shown[name])
            if 0 <= index < len(labels):
                shown[name] = index
            else:
                del shown[name]
    if image_size is not None:
        shown["width"], shown["height"] = (multiple_of_8(side) for side in image_size)
    return shown


def _build_sources() -> tuple[dict, gr.Image, dict]:
    """The four sub-tabs; returns their picture components, the inpaint-upload mask and the Tab items."""
    pictures: dict[str, Any] = {}
    items: dict[str, gr.Tab] = {}
    uploads: list[Literal["upload", "webcam", "clipboard"]] = ["upload", "clipboard"]
    with gr.Tabs(elem_id="img2img-source-tabs", selected="img2img"):
        with gr.Tab(L(SOURCE_TABS["img2img"]), id="img2img", elem_id="img2img-source-img2img") as items["img2img"]:
            pictures["img2img"] = gr.Image(
                label=L("Image for img2img"), type="pil", image_mode=None, format="png", sources=uploads, height=IMAGE_HEIGHT,
                elem_id="img2img-image",
            )
        with gr.Tab(L(SOURCE_TABS["sketch"]), id="sketch", elem_id="img2img-source-sketch") as items["sketch"]:
            pictures["sketch"] = gr.ImageEditor(
                label=L("Image for img2img (draw on it)"), type="pil", image_mode="RGBA", format="png", sources=uploads,
                brush=gr.Brush(colors=list[str | tuple[str, float]](SKETCH_COLOURS), default_color="#000000", color_mode="defaults"),
                layers=False, transforms=(), height=IMAGE_HEIGHT, elem_id="img2img-sketch",
            )
        with gr.Tab(L(SOURCE_TABS["inpaint"]), id="inpaint", elem_id="img2img-source-inpaint") as items["inpaint"]:
            pictures["inpaint"] = gr.ImageEditor(
                label=L("Image for inpainting (paint over what to change)"), type="pil", image_mode="RGBA", format="png",
                sources=uploads, brush=gr.Brush(colors=list[str | tuple[str, float]](["#ffffff"]), color_mode="fixed"), layers=False, transforms=(),
                height=IMAGE_HEIGHT, elem_id="img2img-inpaint",
            )
        with gr.Tab(L(SOURCE_TABS["inpaint-upload"]), id="inpaint-upload", elem_id="img2img-source-inpaint-upload") as items["inpaint-upload"]:
            with gr.Row():
                pictures["inpaint-upload"] = gr.Image(
                    label=L("Image"), type="pil", image_mode=None, format="png", sources=uploads, height=IMAGE_HEIGHT - 60,
                    elem_id="img2img-inpaint-upload-image",
                )
                upload_mask = gr.Image(
                    label=L("Mask (white = repaint)"), type="pil", image_mode=None, format="png", sources=uploads,
                    height=IMAGE_HEIGHT - 60, elem_id="img2img-inpaint-upload-mask",
                )
    return pictures, upload_mask, items


def _labelled(labels: tuple[str, ...]) -> list[tuple[Any, int]]:
    """Radio choices for one of A1111's index settings: the label in the page's language, the index as value."""
    return [(L(label), index) for index, label in enumerate(labels)]


def _build_inpaint_controls(fields: Fields) -> gr.Column:
    with gr.Column(visible=False, elem_id="img2img-inpaint-controls") as controls, gr.Group():
        fields["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label=L("Mask blur"), elem_id="img2img-mask-blur")
        with gr.Row():
            fields["inpainting_mask_invert"] = gr.Radio(_labelled(MASK_MODES), value=0, type="value", label=L("Mask mode"), elem_id="img2img-mask-mode")
            fields["inpainting_fill"] = gr.Radio(_labelled(MASKED_CONTENT), value=1, type="value", label=L("Masked content"), elem_id="img2img-masked-content")
        with gr.Row():
            fields["inpaint_full_res"] = gr.Radio(_labelled(INPAINT_AREAS), value=0, type="value", label=L("Inpaint area"), elem_id="img2img-inpaint-area")
            fields["inpaint_full_res_padding"] = gr.Slider(0, 256, value=32, step=4, label=L("Only masked padding, pixels"), elem_id="img2img-inpaint-padding")
    return controls


def build_img2img_tab(services: Services, runs: SessionRuns) -> Img2ImgTab:
    fields: Fields = {}
    defaults = services.models.generation_defaults()  # the demo model's size and CFG when Easel starts on it
    prompt_row = build_prompt_row(services, PREFIX, fields)
    with gr.Row(elem_classes="easel-workspace"):
        with gr.Column(scale=5, min_width=340, elem_id=f"{PREFIX}-parameters"):
            pictures, upload_mask, source_items = _build_sources()
            fields["resize_mode"] = gr.Radio(_labelled(RESIZE_MODES), value=0, type="value", label=L("Resize mode"), elem_id="img2img-resize-mode")
            inpaint_controls = _build_inpaint_controls(fields)
            build_sampler_controls(services, PREFIX, fields)
            with gr.Tabs(elem_id="img2img-resize-tabs", selected="to"):
                with gr.Tab(L("Resize to"), id="to", elem_id="img2img-resize-to") as resize_to_tab:
                    build_size_sliders(PREFIX, fields, defaults)
                with gr.Tab(L("Resize by"), id="by", elem_id="img2img-resize-by") as resize_by_tab:
                    scale = gr.Slider(0.05, 4.0, value=1.0, step=0.05, label=L("Scale"), elem_id="img2img-scale")
                    scale_line = gr.HTML(resize_by_html(None, 1.0), elem_id="img2img-scale-size", padding=True)
            build_batch_sliders(PREFIX, fields)
            build_cfg_slider(PREFIX, fields, defaults)
            fields["denoising_strength"] = gr.Slider(0.0, 1.0, value=0.75, step=0.01, label=L("Denoising strength"), elem_id="img2img-denoising")
            reuse_seed = build_seed_controls(PREFIX, fields)
            # The sections, in SECTION_ORDER (modules/ui/sections.py).
            build_refiner_section(services, PREFIX, fields)
            controlnet = build_controlnet_panel(services, PREFIX, Words(services.translations), img2img=True)
            detailer = build_detailer_panel(services, PREFIX, img2img=True)
            regional = build_regional_panel(PREFIX, Words(services.translations), fields["prompt"], fields["width"], fields["height"])
            dynamic = build_dynamic_panel(services, PREFIX, fields["prompt"], fields["seed"], fields["n_iter"], fields["batch_size"])
            scripts = build_scripts_panel(services.extensions, "img2img", PREFIX, services.upscalers.names())
            build_extra_networks(services, PREFIX, fields["prompt"])
        with gr.Column(scale=6, min_width=340, elem_id=f"{PREFIX}-results"):
            output = build_output_column(PREFIX)
    source = gr.State("img2img")
    resize_by = gr.State(False)
    sizes = {tab: gr.State(None) for tab in SOURCE_TABS}
    panel = GenerationPanel(PREFIX, fields, prompt_row, reuse_seed, output)

    def prepare(values: dict[Any, Any]) -> Prepared:
        data = field_values(values, fields, Img2ImgRequest)
        picture_values = {tab: values[component] for tab, component in pictures.items()}
        picture_values["inpaint-upload"] = (values[pictures["inpaint-upload"]], values[upload_mask])
        picture = source_picture(values[source], picture_values)
        if values[resize_by] and picture.image is not None:
            data["width"], data["height"] = scaled_size(picture.image.size, float(values[scale]))
        request = Img2ImgRequest(
            **data, init_images=[picture.image] if picture.image is not None else [], mask=picture.mask,
            preview_every=preview_every(services),
        )
        request, script = scripts.apply(values, regional.apply(values, dynamic.apply(values, detailer.apply(values, controlnet.apply(values, request)))))
        return Prepared(request, script=script)

    _wire_sources(source_items, source, inpaint_controls)
    _wire_sizes(pictures, sizes, source, scale, scale_line, Words(services.translations))
    resize_to_tab.select(lambda: False, None, resize_by, show_progress="hidden")
    resize_by_tab.select(lambda: True, None, resize_by, show_progress="hidden")
    wire_prompt_row(services, prompt_row, fields, output.progress)
    inputs = {*fields.values(), *pictures.values(), upload_mask, source, resize_by, scale, *scripts.components(), *controlnet.components(), *detailer.components(), *dynamic.components(), *regional.components()}
    generations = wire_generation(services, runs, panel, prepare, services.generation.submit_img2img, inputs, "img2img-images")
    return Img2ImgTab(
        fields=fields, pictures=pictures, sizes=sizes, source=source, inpaint_controls=inpaint_controls,
        gallery=output.gallery, progress=output.progress, send_buttons=output.send, generations=generations, prompt_row=prompt_row,
        controlnet=controlnet, detailer=detailer, regional=regional,
    )


def _wire_sources(items: dict[str, gr.Tab], source: gr.State, inpaint_controls: gr.Column) -> None:
    for tab, item in items.items():
        item.select(
            lambda tab=tab: (tab, gr.Column(visible=tab in INPAINT_TABS)), None, [source, inpaint_controls], show_progress="hidden",
        )


def _wire_sizes(pictures: dict, sizes: dict[str, gr.State], source: gr.State, scale: gr.Slider, scale_line: gr.HTML, words: Words) -> None:
    """Each sub-tab's picture size (kept when a picture arrives, so the "Resize by" line does not
    have to send the pictures back each time the slider moves)."""
    def image_size(image: Image.Image | None) -> tuple[int, int] | None:
        return image.size if image is not None else None

    def editor_size(value: dict | None) -> tuple[int, int] | None:
        background = value.get("background") if isinstance(value, dict) else None
        return background.size if background is not None else None

    for tab in ("img2img", "inpaint-upload"):
        pictures[tab].change(image_size, pictures[tab], sizes[tab], show_progress="hidden")
    for tab in ("sketch", "inpaint"):
        pictures[tab].upload(editor_size, pictures[tab], sizes[tab], show_progress="hidden")
        pictures[tab].clear(lambda: None, None, sizes[tab], show_progress="hidden")

    tabs = list(sizes)

    assert len(tabs) == 4  # img2img, sketch, inpaint, inpaint-upload: one size each

    def line(tab: str, factor: float, first: Size, second: Size, third: Size, fourth: Size, request: gr.Request) -> str:
        known = dict(zip(tabs, (first, second, third, fourth)))
        return resize_by_html(known.get(tab), factor, lambda text, **v: words.say(request, text, **v))

    triggers = [scale.change, source.change, *(state.change for state in sizes.values())]
    gr.on(triggers, line, [source, scale, *sizes.values()], scale_line, show_progress="hidden", concurrency_limit=None)
