"""The parts the txt2img and img2img tabs share, laid out as A1111 lays them out: the prompt row
(prompt and negative prompt with token counters; Generate / Interrupt / Skip and the styles on the
right), then the parameters on the left and the output on the right (progress line, then the live
preview while a job runs and the gallery in the same place after it, info text, send buttons), so
the picture forms where the eye already is. A narrow window stacks the two columns.

Each builder puts its parameter components into the tab's `fields` dict under the request field
they fill, with elem ids `<prefix>-...` (txt2img-steps, img2img-steps, ...), so a tab is a list of
builder calls in the order it shows them. Every text is English in the code, marked `L(...)` for
the page's language (modules/ui/text.py). Running a job is in generation_run.py.
"""

from __future__ import annotations

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
from modules.ui.text import L, Words

log = logging.getLogger(__name__)

# request field name -> the component that fills it (Any: gradio adds the event methods, .change and
# the like, at run time, so its classes do not declare them)
Fields = dict[str, Any]

IMAGE_BOX = 330  # the height of the preview / gallery box, px: with the prompt row above it, inside a 768 px window

EMPTY_TOKENS_HTML = '<span class="easel-tokens">0/75</span>'  # no tokenizer needed (it loads after start-up)
# Where each send button sends the selected output image: its label and the tab / sub-tab it fills.
SEND_TARGETS = {"img2img": "Send to img2img", "inpaint": "Send to inpaint", "outpainting": "Send to outpainting"}
# The browser asks for a new style's name (A1111 does the same); the answer goes in a hidden field.
ASK_STYLE_NAME_JS = "(name, prompt, negative) => [window.prompt(easelText('Name of the new style:')) || '', prompt, negative]"


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
    failure: gr.HTML  # a failed job's error, where the picture would be
    preview: gr.Image  # shown while a job runs
    gallery: gr.Gallery  # shown otherwise, in the same place
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


def token_html(services: Services, words: Words, text: str, request: gr.Request | None = None) -> str:
    """The `N/75` counter beside a prompt: a hint, so it never raises."""
    if not text:
        return EMPTY_TOKENS_HTML
    try:
        used, limit = services.models.count_tokens(text or "")
    except UserError as error:  # a prompt syntax error, or the tokenizer still loading
        return f'<span class="easel-tokens" title="{words.html(request, str(error))}">…/75</span>'
    except Exception:  # the counter is a hint: never a pop-up error while typing
        log.exception("Counting tokens failed")
        return f'<span class="easel-tokens" title="{words.html(request, "Could not count the tokens (see the log)")}">?/75</span>'
    over = ' data-over="1"' if used > limit else ""
    return f'<span class="easel-tokens"{over}>{used}/{limit}</span>'


def build_prompt_row(services: Services, prefix: str, fields: Fields) -> PromptRow:
    with gr.Row(elem_id=f"{prefix}-toprow", elem_classes="easel-toprow"):
        with gr.Column(scale=6, min_width=300, elem_classes="easel-prompts"):
            with gr.Row(elem_classes="easel-prompt-line"):
                fields["prompt"] = gr.Textbox(label=L("Prompt"), show_label=False, lines=3, max_lines=12, scale=12, container=False,
                                              placeholder=L("Prompt (Ctrl+Enter to generate)"), elem_id=f"{prefix}-prompt")
                prompt_tokens = gr.HTML(EMPTY_TOKENS_HTML, elem_id=f"{prefix}-token-counter", padding=False, container=False, min_width=40)
            with gr.Row(elem_classes="easel-prompt-line"):
                fields["negative_prompt"] = gr.Textbox(label=L("Negative prompt"), show_label=False, lines=2, max_lines=8, scale=12, container=False,
                                                       placeholder=L("Negative prompt"), elem_id=f"{prefix}-negative-prompt")
                negative_tokens = gr.HTML(EMPTY_TOKENS_HTML, elem_id=f"{prefix}-negative-token-counter", padding=False, container=False, min_width=40)
        with gr.Column(scale=2, min_width=250, elem_classes="easel-actions"):
            generate = gr.Button(L("Generate"), variant="primary", elem_id=f"{prefix}-generate", size="lg")
            with gr.Row():
                interrupt = gr.Button(L("Interrupt"), elem_id=f"{prefix}-interrupt", size="sm", min_width=60)
                skip = gr.Button(L("Skip"), elem_id=f"{prefix}-skip", size="sm", min_width=60)
            with gr.Row(elem_classes="easel-style-row", equal_height=True):
                fields["styles"] = gr.Dropdown(label=L("Styles"), show_label=False, choices=services.styles.names, value=[], multiselect=True,
                                               scale=4, min_width=100, container=False, elem_id=f"{prefix}-styles")
                paste = gr.Button("↙️", size="sm", scale=0, min_width=36, elem_id=f"{prefix}-paste", elem_classes="easel-tool-button")
                apply_styles = gr.Button("🖌️", size="sm", scale=0, min_width=36, elem_id=f"{prefix}-apply-styles", elem_classes="easel-tool-button")
                save_style = gr.Button("💾", size="sm", scale=0, min_width=36, elem_id=f"{prefix}-save-style", elem_classes="easel-tool-button")
            style_name = gr.Textbox(visible=False, elem_id=f"{prefix}-style-name")
    notice = gr.HTML("", visible=False, elem_id=f"{prefix}-restore-notice", padding=False)
    return PromptRow(generate, interrupt, skip, prompt_tokens, negative_tokens, apply_styles, style_name, save_style, paste, notice)


def build_sampler_controls(services: Services, prefix: str, fields: Fields) -> None:
    samplers = sampler_labels()
    default = services.settings.default_sampler if services.settings.default_sampler in samplers else samplers[0]
    with gr.Row():
        fields["sampler_name"] = gr.Dropdown(label=L("Sampling method"), choices=samplers, value=default, elem_id=f"{prefix}-sampler")
        fields["scheduler"] = gr.Dropdown(label=L("Schedule type"), choices=[(L(label), label) for label in schedule_labels()], value="Automatic",
                                          elem_id=f"{prefix}-scheduler")
    fields["steps"] = gr.Slider(1, 150, value=20, step=1, label=L("Sampling steps"), elem_id=f"{prefix}-steps")


def build_size_sliders(prefix: str, fields: Fields, defaults: GenerationDefaults) -> None:
    """Width and height with the ⇅ button that swaps them."""
    with gr.Row(equal_height=True):
        with gr.Column(scale=4, min_width=120):
            fields["width"] = gr.Slider(64, 2048, value=defaults.width, step=8, label=L("Width"), elem_id=f"{prefix}-width")
            fields["height"] = gr.Slider(64, 2048, value=defaults.height, step=8, label=L("Height"), elem_id=f"{prefix}-height")
        swap = gr.Button("⇅", scale=0, min_width=48, elem_id=f"{prefix}-swap-size")
    size = [fields["width"], fields["height"]]
    swap.click(lambda w, h: (h, w), size, size, show_progress="hidden")


def build_batch_sliders(prefix: str, fields: Fields) -> None:
    fields["n_iter"] = gr.Slider(1, 100, value=1, step=1, label=L("Batch count"), elem_id=f"{prefix}-batch-count")
    fields["batch_size"] = gr.Slider(1, 8, value=1, step=1, label=L("Batch size"), elem_id=f"{prefix}-batch-size")


def build_cfg_slider(prefix: str, fields: Fields, defaults: GenerationDefaults) -> None:
    fields["cfg_scale"] = gr.Slider(1.0, 30.0, value=defaults.cfg_scale, step=0.5, label=L("CFG Scale"),
                                    info=L(defaults.note) if defaults.note else None, elem_id=f"{prefix}-cfg")


def build_seed_controls(prefix: str, fields: Fields) -> gr.Button:
    """Seed with Random / Last seed, the variation seed under "Extra", clip skip. Returns the
    "Last seed" button (it needs the session's last outcome: generation_run.py wires it)."""
    with gr.Row(equal_height=True):
        fields["seed"] = gr.Number(label=L("Seed"), value=-1, precision=0, scale=4, elem_id=f"{prefix}-seed")
        random_seed = gr.Button("🎲", scale=0, min_width=48, size="sm", elem_id=f"{prefix}-random-seed", elem_classes="easel-tool-button")
        reuse_seed = gr.Button("♻️", scale=0, min_width=48, size="sm", elem_id=f"{prefix}-reuse-seed", elem_classes="easel-tool-button")
    with gr.Accordion(L("Extra"), open=False, elem_id=f"{prefix}-extra"):
        with gr.Row():
            fields["subseed"] = gr.Number(label=L("Variation seed"), value=-1, precision=0, elem_id=f"{prefix}-subseed")
            fields["subseed_strength"] = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label=L("Variation strength"), elem_id=f"{prefix}-subseed-strength")
        with gr.Row():
            fields["seed_resize_from_w"] = gr.Slider(0, 2048, value=0, step=8, label=L("Resize seed from width"), elem_id=f"{prefix}-seed-resize-w")
            fields["seed_resize_from_h"] = gr.Slider(0, 2048, value=0, step=8, label=L("Resize seed from height"), elem_id=f"{prefix}-seed-resize-h")
    fields["clip_skip"] = gr.Slider(1, 12, value=1, step=1, label=L("Clip skip"), elem_id=f"{prefix}-clip-skip")
    random_seed.click(lambda: -1, None, fields["seed"], show_progress="hidden")
    return reuse_seed


def build_output_column(prefix: str) -> OutputColumn:
    progress = gr.HTML("", elem_id=f"{prefix}-progress", padding=False)
    failure = gr.HTML("", visible=False, elem_id=f"{prefix}-failure", elem_classes="easel-failure")
    # The preview and the gallery share one place (.easel-stage stacks them): the page never moves
    # while one gives way to the other, even in the instant both are shown.
    with gr.Column(elem_classes="easel-stage"):
        preview = gr.Image(label=L("Live preview"), type="pil", format="png", interactive=False, height=IMAGE_BOX, visible=False,
                           elem_id=f"{prefix}-preview", elem_classes="easel-preview")
        gallery = gr.Gallery(label=L("Output"), format="png", columns=4, height=IMAGE_BOX, preview=True, interactive=False,
                             object_fit="contain", elem_id=f"{prefix}-gallery")
    with gr.Row(elem_classes="easel-send-row"):
        send = {target: gr.Button(L(label), size="sm", min_width=90, elem_id=f"{prefix}-send-{target}") for target, label in SEND_TARGETS.items()}
        show_folder = gr.Button("📂", size="sm", scale=0, min_width=40, elem_id=f"{prefix}-open-folder", elem_classes="easel-tool-button")
        seed_of_image = gr.Button("🌱", size="sm", scale=0, min_width=40, elem_id=f"{prefix}-image-seed", elem_classes="easel-tool-button")
    info = gr.HTML("", elem_id=f"{prefix}-info")
    folder = gr.Textbox(label=L("Saved at"), visible=False, interactive=False, elem_id=f"{prefix}-folder")
    return OutputColumn(progress, failure, preview, gallery, info, send, show_folder, seed_of_image, folder)


def wire_prompt_row(services: Services, row: PromptRow, fields: Fields, message: gr.HTML) -> None:
    """Token counters and styles; `message` shows what saving a style did."""
    words = Words(services.translations)

    def on_text(text: str, request: gr.Request) -> str:
        return token_html(services, words, text, request)

    for name, counter in (("prompt", row.prompt_tokens), ("negative_prompt", row.negative_tokens)):
        fields[name].change(
            on_text, fields[name], counter,
            show_progress="hidden", concurrency_limit=None, trigger_mode="always_last",
        )

    def on_apply_styles(prompt: str, negative: str, styles: list[str]) -> tuple:
        new_prompt, new_negative = services.styles.apply_styles(prompt or "", negative or "", styles or [])
        return new_prompt, new_negative, []

    def on_save_style(name: str, prompt: str, negative: str, request: gr.Request) -> tuple:
        say = lambda text, **values: words.say(request, text, **values)  # noqa: E731
        try:
            services.styles.save_new(name, prompt or "", negative or "")
        except UserError as error:
            return gr.skip(), progress_view.error_html(str(error), say)
        return gr.Dropdown(choices=services.styles.names), progress_view.done_html(say("Saved style {name} to styles.csv", name=repr(name.strip())))

    texts = [fields["prompt"], fields["negative_prompt"]]
    row.apply_styles.click(on_apply_styles, [*texts, fields["styles"]], [*texts, fields["styles"]], show_progress="hidden")
    row.save_style.click(on_save_style, [row.style_name, *texts], [fields["styles"], message], show_progress="hidden", js=ASK_STYLE_NAME_JS)
