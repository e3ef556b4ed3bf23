"""txt2img's "Hires. fix": a checkbox that opens the second-pass settings (upscaler, steps, strength,
upscale by / resize to, and, folded, the pass's own sampler, schedule and prompts), with A1111's
"from 512x512 to 1024x1024" line. Components go into the tab's fields under the request's hr_* names.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from modules.generation.hires import hires_target
from modules.generation.request import GenerationRequest
from modules.sampling.sampler_table import sampler_labels
from modules.sampling.schedules import schedule_labels
from modules.ui.generation_panel import Fields
from modules.ui.progress_view import Say, english
from modules.ui.text import L, Words
from modules.ui.upscaler_lists import HIRES_CLASS, UPSCALER_CLASS, hires_upscaler_names, upscaler_choices

SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULER = "Use same scheduler"
DEFAULT_STRENGTH = 0.7  # A1111's UI default for the hires pass


def build_hires_fix(fields: Fields, upscaler_names: list[str]) -> gr.HTML:
    """The controls (elem ids txt2img-hr-*); the settings show while the checkbox is on. Returns the
    size line, for `wire_size_line` once the width and height sliders exist. `upscaler_names`: the
    installed upscalers (modules/upscalers)."""
    with gr.Group():
        fields["enable_hr"] = gr.Checkbox(label=L("Hires. fix"), value=False, elem_id="txt2img-hr-enable")
    with gr.Column(visible=False, elem_id="txt2img-hr-settings") as settings:
        with gr.Row():
            fields["hr_upscaler"] = gr.Dropdown(label=L("Upscaler"), choices=upscaler_choices(hires_upscaler_names(upscaler_names)), value="Latent",
                                                elem_id="txt2img-hr-upscaler", elem_classes=[UPSCALER_CLASS, HIRES_CLASS])
            fields["hr_second_pass_steps"] = gr.Slider(0, 150, value=0, step=1, label=L("Hires steps (0: same)"), elem_id="txt2img-hr-steps")
        with gr.Row():
            fields["denoising_strength"] = gr.Slider(0.0, 1.0, value=DEFAULT_STRENGTH, step=0.01, label=L("Denoising strength"), elem_id="txt2img-hr-denoising")
            fields["hr_scale"] = gr.Slider(1.0, 4.0, value=2.0, step=0.05, label=L("Upscale by"), elem_id="txt2img-hr-scale")
        with gr.Row():
            fields["hr_resize_x"] = gr.Slider(0, 2048, value=0, step=8, label=L("Resize width to"), elem_id="txt2img-hr-resize-x")
            fields["hr_resize_y"] = gr.Slider(0, 2048, value=0, step=8, label=L("Resize height to"), elem_id="txt2img-hr-resize-y")
        size_line = gr.HTML("", elem_id="txt2img-hr-size", padding=True)
        with gr.Accordion(L("Hires sampler and prompts"), open=False, elem_id="txt2img-hr-extra"):
            with gr.Row():
                fields["hr_sampler_name"] = gr.Dropdown(label=L("Hires sampling method"), choices=[(L(SAME_SAMPLER), SAME_SAMPLER), *sampler_labels()], value=SAME_SAMPLER, elem_id="txt2img-hr-sampler")
                fields["hr_scheduler"] = gr.Dropdown(label=L("Hires schedule type"), choices=[(L(SAME_SCHEDULER), SAME_SCHEDULER), *((L(label), label) for label in schedule_labels())], value=SAME_SCHEDULER, elem_id="txt2img-hr-scheduler")
            fields["hr_prompt"] = gr.Textbox(label=L("Hires prompt"), lines=2, placeholder=L("Empty: the same prompt as the first pass"), elem_id="txt2img-hr-prompt")
            fields["hr_negative_prompt"] = gr.Textbox(label=L("Hires negative prompt"), lines=2, placeholder=L("Empty: the same negative prompt as the first pass"), elem_id="txt2img-hr-negative-prompt")

    fields["enable_hr"].change(lambda on: gr.Column(visible=bool(on)), fields["enable_hr"], settings, show_progress="hidden")
    return size_line


def wire_size_line(fields: Fields, size_line: gr.HTML, words: Words) -> None:
    sizes = [fields[name] for name in ("enable_hr", "width", "height", "hr_scale", "hr_resize_x", "hr_resize_y")]

    def line(enable: bool, width: float, height: float, scale: float, resize_x: float, resize_y: float, request: gr.Request) -> str:
        return size_line_html(enable, width, height, scale, resize_x, resize_y, lambda text, **v: words.say(request, text, **v))

    gr.on([component.change for component in sizes], line, sizes, size_line, show_progress="hidden", concurrency_limit=None)


def size_line_html(enable: bool, width: float, height: float, scale: float, resize_x: float, resize_y: float, say: Say = english) -> str:
    """A1111's "from 512x512 to 1024x1024" (the size the hires pass makes), or nothing when off."""
    if not enable or not width or not height:
        return ""
    request = GenerationRequest(width=int(width), height=int(height), hr_scale=float(scale or 1.0), hr_resize_x=int(resize_x or 0), hr_resize_y=int(resize_y or 0))
    target = hires_target(request)
    text = html.escape(say("from {source} to {target}", source="\x00", target="\x01"))
    text = text.replace("\x00", f'<span class="resolution">{int(width)}x{int(height)}</span>').replace("\x01", f'<span class="resolution">{target.width}x{target.height}</span>')
    return f'<span class="easel-hr-size">{text}</span>'


def hires_request_values(data: dict[str, Any]) -> dict[str, Any]:
    """The hires fields as the request wants them: "Use same ..." is None; without hires the strength
    is None (a txt2img request has no other use for it)."""
    data = dict(data)
    if data.get("hr_sampler_name") in (SAME_SAMPLER, ""):
        data["hr_sampler_name"] = None
    if data.get("hr_scheduler") in (SAME_SCHEDULER, ""):
        data["hr_scheduler"] = None
    if not data.get("enable_hr"):
        data["denoising_strength"] = None
    return data


def hires_display_values(values: dict[str, Any]) -> dict[str, Any]:
    """The other way round, for filling the controls from an infotext: None is "Use same ..."."""
    values = dict(values)
    if "hr_sampler_name" in values and values["hr_sampler_name"] is None:
        values["hr_sampler_name"] = SAME_SAMPLER
    if "hr_scheduler" in values and values["hr_scheduler"] is None:
        values["hr_scheduler"] = SAME_SCHEDULER
    return values
