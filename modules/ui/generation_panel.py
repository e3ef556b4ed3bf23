"""The parts the txt2img and img2img tabs share, laid out: the prompt row (prompts with token
counters, Generate / Interrupt / Skip, styles), the sampler / size / batch / CFG / seed controls and
the output column (progress line, live preview, gallery, info text, send buttons).

Each builder puts its parameter components into the tab's `fields` dict under the request field
they fill, with elem ids `<prefix>-...` (txt2img-steps, img2img-steps, ...), so a tab is a list of
builder calls in the order it shows them. Running a job is in generation_run.py.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from modules.demo_model import GenerationDefaults
from modules.errors import UserError
from modules.sampling.sampler_table import sampler_labels
from modules.sampling.schedules import schedule_labels
from modules.services import Services
from modules.ui import progress_view

log = logging.getLogger(__name__)

# request field name -> the component that fills it (Any: gradio adds the event methods, .change and
# the like, at run time, so its classes do not declare them)
Fields = dict[str, Any]

EMPTY_TOKENS_HTML = '<span class="easel-tokens">0/75</span>'  # no tokenizer needed (it loads after start-up)
# Where each send button sends the selected output image: its label and the tab / sub-tab it fills.
SEND_TARGETS = {"img2img": "Send to img2img", "inpaint": "Send to inpaint", "outpainting": "Send to outpainting"}


@dataclass
class PromptRow:
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    prompt_tokens: gr.HTML
    negative_tokens: gr.HTML
    apply_styles: gr.Button
    style_name: gr.Textbox
    save_style: gr.Button
    paste: gr.Button  # A1111's ↙️: the infotext in the prompt box (or the last generation's) into the fields
    notice: gr.HTML  # what restoring a picture's parameters could not apply (send_to.py fills it)


@dataclass
class OutputColumn:
    progress: gr.HTML
    preview: gr.Image
    gallery: gr.Gallery
    info: gr.HTML
    send: dict[str, gr.Button]  # SEND_TARGETS key -> its button
    show_folder: gr.Button
    seed_of_image: gr.Button
    folder: gr.Textbox


@dataclass
class GenerationPanel:
    """One generation tab's shared components (what generation_run.py wires)."""

    prefix: str
    fields: Fields
    prompt_row: PromptRow
    reuse_seed: gr.Button
    output: OutputColumn


def token_html(services: Services, text: str) -> str:
    """The `N/75` counter beside a prompt: a hint, so it never raises."""
    if not text:
        return EMPTY_TOKENS_HTML
    try:
        used, limit = services.models.count_tokens(text or "")
    except UserError as error:  # a prompt syntax error, or the tokenizer still loading
        return f'<span class="easel-tokens" title="{html.escape(str(error))}">…/75</span>'
    except Exception:  # the counter is a hint: never a pop-up error while typing
        log.exception("Counting tokens failed")
        return '<span class="easel-tokens" title="Could not count the tokens (see the log)">?/75</span>'
    over = ' data-over="1"' if used > limit else ""
    return f'<span class="easel-tokens"{over}>{used}/{limit}</span>'


def build_prompt_row(services: Services, prefix: str, fields: Fields) -> PromptRow:
    with gr.Row(elem_id=f"{prefix}-toprow"):
        with gr.Column(scale=6):
            with gr.Row():
                fields["prompt"] = gr.Textbox(label="Prompt", lines=3, placeholder="Prompt (Ctrl+Enter to generate)", elem_id=f"{prefix}-prompt", scale=8)
                prompt_tokens = gr.HTML(EMPTY_TOKENS_HTML, elem_id=f"{prefix}-token-counter", padding=False, container=False)
            with gr.Row():
                fields["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=2, placeholder="Negative prompt", elem_id=f"{prefix}-negative-prompt", scale=8)
                negative_tokens = gr.HTML(EMPTY_TOKENS_HTML, elem_id=f"{prefix}-negative-token-counter", padding=False, container=False)
        with gr.Column(scale=2, min_width=220):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{prefix}-generate", size="lg")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{prefix}-interrupt", size="sm")
                skip = gr.Button("Skip", elem_id=f"{prefix}-skip", size="sm")
                paste = gr.Button("↙️", size="sm", min_width=40, elem_id=f"{prefix}-paste",
                                  elem_classes="easel-tool-button")
            fields["styles"] = gr.Dropdown(label="Styles", choices=services.styles.names, value=[], multiselect=True, elem_id=f"{prefix}-styles")
            with gr.Row():
                apply_styles = gr.Button("Apply styles to prompt", size="sm", elem_id=f"{prefix}-apply-styles")
            with gr.Row():
                style_name = gr.Textbox(label="New style name", scale=3, elem_id=f"{prefix}-style-name")
                save_style = gr.Button("Save style", size="sm", scale=1, elem_id=f"{prefix}-save-style")
    notice = gr.HTML("", elem_id=f"{prefix}-restore-notice", padding=False)
    return PromptRow(generate, interrupt, skip, prompt_tokens, negative_tokens, apply_styles, style_name, save_style, paste, notice)


def build_sampler_controls(services: Services, prefix: str, fields: Fields) -> None:
    samplers = sampler_labels()
    default = services.settings.default_sampler if services.settings.default_sampler in samplers else samplers[0]
    with gr.Row():
        fields["sampler_name"] = gr.Dropdown(label="Sampling method", choices=samplers, value=default, elem_id=f"{prefix}-sampler")
        fields["scheduler"] = gr.Dropdown(label="Schedule type", choices=schedule_labels(), value="Automatic", elem_id=f"{prefix}-scheduler")
    fields["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{prefix}-steps")


def build_size_sliders(prefix: str, fields: Fields, defaults: GenerationDefaults) -> None:
    """Width and height with the ⇅ button that swaps them."""
    with gr.Row():
        with gr.Column(scale=4):
            fields["width"] = gr.Slider(64, 2048, value=defaults.width, step=8, label="Width", elem_id=f"{prefix}-width")
            fields["height"] = gr.Slider(64, 2048, value=defaults.height, step=8, label="Height", elem_id=f"{prefix}-height")
        swap = gr.Button("⇅", scale=0, min_width=48, elem_id=f"{prefix}-swap-size")
    size = [fields["width"], fields["height"]]
    swap.click(lambda w, h: (h, w), size, size, show_progress="hidden")


def build_batch_sliders(prefix: str, fields: Fields) -> None:
    fields["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{prefix}-batch-count")
    fields["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{prefix}-batch-size")


def build_cfg_slider(prefix: str, fields: Fields, defaults: GenerationDefaults) -> None:
    fields["cfg_scale"] = gr.Slider(1.0, 30.0, value=defaults.cfg_scale, step=0.5, label="CFG Scale", info=defaults.note or None, elem_id=f"{prefix}-cfg")


def build_seed_controls(prefix: str, fields: Fields) -> gr.Button:
    """Seed with Random / Last seed, the variation seed under "Extra", clip skip. Returns the
    "Last seed" button (it needs the session's last outcome: generation_run.py wires it)."""
    with gr.Row():
        fields["seed"] = gr.Number(label="Seed", value=-1, precision=0, scale=4, elem_id=f"{prefix}-seed")
        random_seed = gr.Button("Random", scale=0, min_width=72, size="sm", elem_id=f"{prefix}-random-seed")
        reuse_seed = gr.Button("Last seed", scale=0, min_width=72, size="sm", elem_id=f"{prefix}-reuse-seed")
    with gr.Accordion("Extra", open=False, elem_id=f"{prefix}-extra"):
        with gr.Row():
            fields["subseed"] = gr.Number(label="Variation seed", value=-1, precision=0, elem_id=f"{prefix}-subseed")
            fields["subseed_strength"] = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Variation strength", elem_id=f"{prefix}-subseed-strength")
        with gr.Row():
            fields["seed_resize_from_w"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width", elem_id=f"{prefix}-seed-resize-w")
            fields["seed_resize_from_h"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height", elem_id=f"{prefix}-seed-resize-h")
    fields["clip_skip"] = gr.Slider(1, 12, value=1, step=1, label="Clip skip", elem_id=f"{prefix}-clip-skip")
    random_seed.click(lambda: -1, None, fields["seed"], show_progress="hidden")
    return reuse_seed


def build_output_column(prefix: str) -> OutputColumn:
    progress = gr.HTML("", elem_id=f"{prefix}-progress")
    preview = gr.Image(label="Live preview", type="pil", format="png", interactive=False, height=320, elem_id=f"{prefix}-preview", elem_classes="easel-preview")
    gallery = gr.Gallery(label="Output", format="png", columns=4, height="auto", preview=True, interactive=False, elem_id=f"{prefix}-gallery")
    info = gr.HTML("", elem_id=f"{prefix}-info")
    with gr.Row():
        send = {target: gr.Button(label, size="sm", elem_id=f"{prefix}-send-{target}") for target, label in SEND_TARGETS.items()}
        show_folder = gr.Button("Output folder", size="sm", elem_id=f"{prefix}-open-folder")
        seed_of_image = gr.Button("Use this image's seed", size="sm", elem_id=f"{prefix}-image-seed")
    folder = gr.Textbox(label="Saved at", visible=False, interactive=False, elem_id=f"{prefix}-folder")
    return OutputColumn(progress, preview, gallery, info, send, show_folder, seed_of_image, folder)


def wire_prompt_row(services: Services, row: PromptRow, fields: Fields, message: gr.HTML) -> None:
    """Token counters and styles; `message` shows what saving a style did."""
    for name, counter in (("prompt", row.prompt_tokens), ("negative_prompt", row.negative_tokens)):
        fields[name].change(
            lambda text: token_html(services, text), fields[name], counter, show_progress="hidden", concurrency_limit=None, trigger_mode="always_last",
        )

    def on_apply_styles(prompt: str, negative: str, styles: list[str]) -> tuple:
        new_prompt, new_negative = services.styles.apply_styles(prompt or "", negative or "", styles or [])
        return new_prompt, new_negative, []

    def on_save_style(name: str, prompt: str, negative: str) -> tuple:
        try:
            services.styles.save_new(name, prompt or "", negative or "")
        except UserError as error:
            return gr.skip(), progress_view.error_html(str(error))
        return gr.Dropdown(choices=services.styles.names), progress_view.done_html(f"Saved style {name.strip()!r} to styles.csv")

    texts = [fields["prompt"], fields["negative_prompt"]]
    row.apply_styles.click(on_apply_styles, [*texts, fields["styles"]], [*texts, fields["styles"]], show_progress="hidden")
    row.save_style.click(on_save_style, [row.style_name, *texts], [fields["styles"], message], show_progress="hidden")
