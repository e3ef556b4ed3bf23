"""The PNG Info tab: drop an image, see how it was made, send its parameters to txt2img (or the
image and its parameters to img2img / inpaint).

A file is read as bytes (never re-encoded by the browser or Gradio, so its metadata survives);
A1111 infotext and other tools' metadata are parsed by `modules.infotext`; a file that is not an
image, or is damaged, gives one clear sentence.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from modules.errors import UserError
from modules.infotext.foreign import ImageParameters, read_image_parameters
from modules.ui.progress_view import Say, english, error_html
from modules.ui.text import L, Words
from modules.uploads import pixel_limit_problem

log = logging.getLogger(__name__)


@dataclass
class PngInfoTab:
    image_file: gr.File
    parameters: gr.State  # the last read ImageParameters' infotext for "Send to txt2img"
    send_txt2img: gr.Button
    send_img2img: gr.Button  # the image (and its parameters, if any) to img2img / inpaint
    send_inpaint: gr.Button
    send_outpainting: gr.Button
    message: gr.HTML


def parameters_table(found: ImageParameters, say: Say = english) -> str:
    """The parameters as a table: the three headings in the user's language, the picture's own keys as written (a format)."""
    rows = [(say("Made with"), found.source), (say("Prompt"), found.prompt), (say("Negative prompt"), found.negative_prompt)]
    rows += [(key, value) for key, value in found.params.items() if key not in ("Prompt", "Negative prompt")]
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows if v not in (None, ""))
    return f'<table class="easel-params" id="png-info-table">{body}</table>'


def raw_text(found: ImageParameters) -> str:
    return "\n\n".join(f"[{key}]\n{value}" for key, value in found.raw.items())


def build_png_info_tab(max_megapixels: Callable[[], float], words: Words) -> PngInfoTab:
    """`max_megapixels()`: the largest picture read (the live setting); a larger one is refused
    from its header, with a sentence, before anything else reads it."""
    with gr.Row():
        with gr.Column(scale=4):
            image_file = gr.File(label=L("Drop an image (PNG, JPEG, WebP)"), file_types=["image"], type="filepath", elem_id="png-info-file")
            shown = gr.Image(label=L("Image"), interactive=False, type="filepath", elem_id="png-info-image")
        with gr.Column(scale=6):
            message = gr.HTML("", elem_id="png-info-message")
            table = gr.HTML("", elem_id="png-info-parameters")
            with gr.Row():
                send_txt2img = gr.Button(L("Send to txt2img"), variant="primary", interactive=False, elem_id="png-info-send-txt2img")
                send_img2img = gr.Button(L("Send to img2img"), interactive=False, elem_id="png-info-send-img2img")
                send_inpaint = gr.Button(L("Send to inpaint"), interactive=False, elem_id="png-info-send-inpaint")
                send_outpainting = gr.Button(L("Send to outpainting"), interactive=False, elem_id="png-info-send-outpainting")
            raw = gr.Textbox(label=L("Raw metadata"), lines=8, interactive=False, elem_id="png-info-raw")
    parameters = gr.State(None)

    def on_file(path: str | None, request: gr.Request):
        def say(text: str, **values: object) -> str:
            return words.say(request, text, **values)

        off = (gr.Button(interactive=False),) * 4
        if not path:
            return None, "", "", "", None, *off
        try:
            too_large = pixel_limit_problem(path, max_megapixels(), "The picture")
            if too_large:
                raise UserError(too_large)
            found = read_image_parameters(path)
        except UserError as error:
            return None, error_html(str(error), say), "", "", None, *off
        note = "" if found.raw else f'<span id="png-info-none">{html.escape(say("This image carries no generation parameters."))}</span>'
        usable = found.infotext is not None
        return (
            path, note, parameters_table(found, say) if found.raw else "", raw_text(found), found.infotext,
            gr.Button(interactive=usable), *(gr.Button(interactive=True),) * 3,
        )

    outputs = [shown, message, table, raw, parameters, send_txt2img, send_img2img, send_inpaint, send_outpainting]
    image_file.change(on_file, image_file, outputs, show_progress="hidden")
    return PngInfoTab(image_file=image_file, parameters=parameters, send_txt2img=send_txt2img, send_img2img=send_img2img,
                      send_inpaint=send_inpaint, send_outpainting=send_outpainting, message=message)

