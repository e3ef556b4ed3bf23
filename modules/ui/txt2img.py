"""The txt2img tab: prompt, parameters, Generate / Interrupt / Skip, live preview, progress, gallery.

Every parameter component is named after the `GenerationRequest` field it fills (`FIELDS`), and the
handlers receive them as a dict, so adding a parameter is one line, never a positional shuffle.
Generation streams: the handler submits a job, then yields the preview and progress line as the
engine's events arrive, and the gallery and info text when the job ends.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any, Iterator

import gradio as gr

from modules.app_services import Services
from modules.errors import UserError
from modules.generation.request import GenerationRequest
from modules.jobs import JobState
from modules.sampling.sampler_table import sampler_labels
from modules.sampling.schedules import schedule_labels
from modules.ui import progress_view
from modules.ui.sessions import Outcome, SessionRuns, session_key

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # how often a queued job re-checks its place


@dataclass
class Txt2ImgTab:
    """The components other tabs and the shell need."""

    gallery: gr.Gallery
    prompt: gr.Textbox
    send_buttons: dict[str, gr.Button]
    generations: list  # the Generate events, for the shell to refresh the model line after them
    fields: dict[str, gr.components.Component]  # GenerationRequest field -> its component


EMPTY_TOKENS_HTML = '<span class="easel-tokens">0/75</span>'  # no tokenizer needed (it loads after start-up)


def _token_html(services: Services, text: str) -> str:
    if not text:
        return EMPTY_TOKENS_HTML
    try:
        used, limit = services.count_tokens(text or "")
    except UserError as error:  # a prompt syntax error, or the tokenizer still loading
        return f'<span class="easel-tokens" title="{html.escape(str(error))}">…/75</span>'
    except Exception:  # the counter is a hint: never a pop-up error while typing
        log.exception("Counting tokens failed")
        return '<span class="easel-tokens" title="Could not count the tokens (see the log)">?/75</span>'
    over = ' data-over="1"' if used > limit else ""
    return f'<span class="easel-tokens"{over}>{used}/{limit}</span>'


def build_txt2img_tab(services: Services, runs: SessionRuns) -> Txt2ImgTab:
    settings = services.settings
    samplers = sampler_labels()
    default_sampler = settings.default_sampler if settings.default_sampler in samplers else samplers[0]
    fields: dict[str, gr.components.Component] = {}

    with gr.Row(elem_id="txt2img-toprow"):
        with gr.Column(scale=6):
            with gr.Row():
                fields["prompt"] = gr.Textbox(label="Prompt", lines=3, placeholder="Prompt (Ctrl+Enter to generate)", elem_id="txt2img-prompt", scale=8)
                prompt_tokens = gr.HTML(EMPTY_TOKENS_HTML, elem_id="txt2img-token-counter", padding=False, container=False)
            with gr.Row():
                fields["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=2, placeholder="Negative prompt", elem_id="txt2img-negative-prompt", scale=8)
                negative_tokens = gr.HTML(EMPTY_TOKENS_HTML, elem_id="txt2img-negative-token-counter", padding=False, container=False)
        with gr.Column(scale=2, min_width=220):
            generate = gr.Button("Generate", variant="primary", elem_id="txt2img-generate", size="lg")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id="txt2img-interrupt", size="sm")
                skip = gr.Button("Skip", elem_id="txt2img-skip", size="sm")
            fields["styles"] = gr.Dropdown(label="Styles", choices=services.styles.names, value=[], multiselect=True, elem_id="txt2img-styles")
            with gr.Row():
                apply_styles = gr.Button("Apply styles to prompt", size="sm", elem_id="txt2img-apply-styles")
            with gr.Row():
                style_name = gr.Textbox(label="New style name", scale=3, elem_id="txt2img-style-name")
                save_style = gr.Button("Save style", size="sm", scale=1, elem_id="txt2img-save-style")

    with gr.Row():
        with gr.Column(scale=5):
            with gr.Row():
                fields["sampler_name"] = gr.Dropdown(label="Sampling method", choices=samplers, value=default_sampler, elem_id="txt2img-sampler")
                fields["scheduler"] = gr.Dropdown(label="Schedule type", choices=schedule_labels(), value="Automatic", elem_id="txt2img-scheduler")
            fields["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id="txt2img-steps")
            with gr.Row():
                with gr.Column(scale=4):
                    fields["width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id="txt2img-width")
                    fields["height"] = gr.Slider(64, 2048, value=512, step=8, label="Height", elem_id="txt2img-height")
                swap = gr.Button("⇅", scale=0, min_width=48, elem_id="txt2img-swap-size")
                with gr.Column(scale=3):
                    fields["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id="txt2img-batch-count")
                    fields["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id="txt2img-batch-size")
            fields["cfg_scale"] = gr.Slider(1.0, 30.0, value=7.0, step=0.5, label="CFG Scale", elem_id="txt2img-cfg")
            with gr.Row():
                fields["seed"] = gr.Number(label="Seed", value=-1, precision=0, scale=4, elem_id="txt2img-seed")
                random_seed = gr.Button("Random", scale=0, min_width=72, size="sm", elem_id="txt2img-random-seed")
                reuse_seed = gr.Button("Last seed", scale=0, min_width=72, size="sm", elem_id="txt2img-reuse-seed")
            with gr.Accordion("Extra", open=False, elem_id="txt2img-extra"):
                with gr.Row():
                    fields["subseed"] = gr.Number(label="Variation seed", value=-1, precision=0, elem_id="txt2img-subseed")
                    fields["subseed_strength"] = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Variation strength", elem_id="txt2img-subseed-strength")
                with gr.Row():
                    fields["seed_resize_from_w"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width", elem_id="txt2img-seed-resize-w")
                    fields["seed_resize_from_h"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height", elem_id="txt2img-seed-resize-h")
            fields["clip_skip"] = gr.Slider(1, 12, value=1, step=1, label="Clip skip", elem_id="txt2img-clip-skip")
        with gr.Column(scale=6):
            progress = gr.HTML("", elem_id="txt2img-progress")
            preview = gr.Image(label="Live preview", type="pil", format="png", interactive=False, height=320, elem_id="txt2img-preview")
            gallery = gr.Gallery(label="Output", format="png", columns=4, height="auto", preview=True, interactive=False, elem_id="txt2img-gallery")
            info = gr.HTML("", elem_id="txt2img-info")
            with gr.Row():
                send = {
                    "img2img": gr.Button("Send to img2img", size="sm", elem_id="txt2img-send-img2img"),
                    "inpaint": gr.Button("Send to inpaint", size="sm", elem_id="txt2img-send-inpaint"),
                    "Outpainting": gr.Button("Send to outpainting", size="sm", elem_id="txt2img-send-outpainting"),
                }
                show_folder = gr.Button("Output folder", size="sm", elem_id="txt2img-open-folder")
                seed_of_image = gr.Button("Use this image's seed", size="sm", elem_id="txt2img-image-seed")
            folder = gr.Textbox(label="Saved at", visible=False, interactive=False, elem_id="txt2img-folder")

    # --- handlers ---------------------------------------------------------------------------

    def build_request(values: dict[Any, Any]) -> GenerationRequest:
        data = {name: values[component] for name, component in fields.items()}
        for name in ("steps", "width", "height", "n_iter", "batch_size", "seed", "subseed", "seed_resize_from_w", "seed_resize_from_h", "clip_skip"):
            if data[name] is None:
                raise UserError(f"{name.replace('_', ' ')} is empty: enter a number.")
            if float(data[name]) != int(data[name]):
                raise UserError(f"{name.replace('_', ' ')} must be a whole number, not {data[name]}.")
            data[name] = int(data[name])
        data["cfg_scale"] = float(data["cfg_scale"])
        data["subseed_strength"] = float(data["subseed_strength"])
        data["styles"] = list(data["styles"] or [])
        data["preview_every"] = services.settings.show_progress_every_n_steps if services.settings.show_progress_type != "None" else 0
        return GenerationRequest(**data)

    def on_generate(values: dict[Any, Any], request: gr.Request) -> Iterator[dict]:
        session = session_key(request)
        try:
            job = services.submit_txt2img(build_request(values))
        except UserError as error:
            yield {progress: progress_view.error_html(str(error))}
            return
        runs.start(session, job.id)
        subscription = services.queue.subscribe(job.id)
        try:
            yield {progress: progress_view.starting_html(), preview: None}
            while True:
                event = subscription.get(timeout=POLL_SECONDS)
                if event is None:
                    if job.done:
                        break
                    position = job.position
                    if position is not None:
                        yield {progress: progress_view.queued_html(position)}
                    elif job.state == JobState.RUNNING and job.last_event is None:
                        yield {progress: progress_view.starting_html("Loading the model and encoding the prompt…")}
                    continue
                if event.final:
                    break
                if event.steps == 0:  # before sampling: e.g. "Loading the model"
                    yield {progress: progress_view.starting_html(f"{event.textinfo}…" if event.textinfo else "Starting…")}
                    continue
                update: dict = {progress: progress_view.step_html(event)}
                if event.preview is not None:
                    update[preview] = event.preview
                yield update
        finally:
            subscription.close()
        # A failed job's result() re-raises its error: read the message instead.
        result = job.result(timeout=0) if job.state != JobState.FAILED else None
        if result is None:
            runs.finish(session, job.id, None)
            yield {progress: progress_view.error_html(job.error_message or "The job ended without images.")}
            return
        outcome = Outcome(list(result.images), list(result.image_seeds), list(result.infotexts), list(result.paths))
        if result.grid is not None:  # shown first, as in A1111; it carries the first image's parameters
            outcome = Outcome(
                [result.grid, *outcome.images], [outcome.seeds[0], *outcome.seeds],
                [outcome.infotexts[0], *outcome.infotexts], [result.grid_path, *outcome.paths], has_grid=True,
            )
        runs.finish(session, job.id, outcome)
        state = "interrupted" if result.interrupted else "done"
        seconds = result.timings.get("total", 0.0)
        summary = f"{'Interrupted' if result.interrupted else 'Done'}: {len(result.images)} image(s) in {seconds:.1f} s"
        yield {
            progress: progress_view.done_html(summary, state),
            preview: outcome.images[-1] if outcome.images else None,
            gallery: gallery_items(outcome),
            info: info_html(outcome, 0),
        }

    def on_interrupt(request: gr.Request) -> None:
        job_id = runs.job(session_key(request))
        if job_id is not None:
            services.queue.interrupt(job_id)

    def on_skip(request: gr.Request) -> None:
        job_id = runs.job(session_key(request))
        if job_id is not None:
            services.queue.skip(job_id)

    def on_select(event: gr.SelectData, request: gr.Request) -> str:
        outcome = runs.select(session_key(request), int(event.index))
        return info_html(outcome, int(event.index)) if outcome else ""

    def on_reuse_last_seed(request: gr.Request) -> int | dict:
        outcome = runs.outcome(session_key(request))
        if outcome is None or not outcome.seeds:
            return gr.skip()
        return outcome.seeds[0]

    def on_image_seed(request: gr.Request) -> int | dict:
        outcome = runs.outcome(session_key(request))
        index = outcome.pick() if outcome else None
        return outcome.seeds[index] if index is not None else gr.skip()

    def on_show_folder(request: gr.Request) -> dict:
        outcome = runs.outcome(session_key(request))
        index = outcome.pick() if outcome else None
        path = outcome.paths[index] if index is not None and outcome.paths[index] is not None else None
        shown = str(path) if path else str(services.paths.outputs_dir / "txt2img-images")
        return gr.Textbox(value=shown, visible=True)

    def on_apply_styles(prompt: str, negative: str, styles: list[str]) -> tuple:
        new_prompt, new_negative = services.styles.apply_styles(prompt or "", negative or "", styles or [])
        return new_prompt, new_negative, []

    def on_save_style(name: str, prompt: str, negative: str) -> tuple:
        try:
            services.save_style(name, prompt or "", negative or "")
        except UserError as error:
            return gr.skip(), progress_view.error_html(str(error))
        return gr.Dropdown(choices=services.styles.names), progress_view.done_html(f"Saved style {name.strip()!r} to styles.csv")

    component_set = set(fields.values())
    outputs = [progress, preview, gallery, info]
    generations = [
        generate.click(on_generate, component_set, outputs, concurrency_limit=None, show_progress="hidden"),
        fields["prompt"].submit(on_generate, component_set, outputs, concurrency_limit=None, show_progress="hidden"),
    ]
    interrupt.click(on_interrupt, None, None, concurrency_limit=None, show_progress="hidden")
    skip.click(on_skip, None, None, concurrency_limit=None, show_progress="hidden")
    fields["prompt"].change(lambda text: _token_html(services, text), fields["prompt"], prompt_tokens, show_progress="hidden", concurrency_limit=None, trigger_mode="always_last")
    fields["negative_prompt"].change(lambda text: _token_html(services, text), fields["negative_prompt"], negative_tokens, show_progress="hidden", concurrency_limit=None, trigger_mode="always_last")
    swap.click(lambda w, h: (h, w), [fields["width"], fields["height"]], [fields["width"], fields["height"]], show_progress="hidden")
    random_seed.click(lambda: -1, None, fields["seed"], show_progress="hidden")
    reuse_seed.click(on_reuse_last_seed, None, fields["seed"], show_progress="hidden")
    seed_of_image.click(on_image_seed, None, fields["seed"], show_progress="hidden")
    gallery.select(on_select, None, info, show_progress="hidden")
    show_folder.click(on_show_folder, None, folder, show_progress="hidden")
    apply_styles.click(on_apply_styles, [fields["prompt"], fields["negative_prompt"], fields["styles"]], [fields["prompt"], fields["negative_prompt"], fields["styles"]], show_progress="hidden")
    save_style.click(on_save_style, [style_name, fields["prompt"], fields["negative_prompt"]], [fields["styles"], progress], show_progress="hidden")
    return Txt2ImgTab(gallery=gallery, prompt=fields["prompt"], send_buttons=send, generations=generations, fields=fields)


def gallery_items(outcome: Outcome) -> list:
    """Saved files when there are any (served as they are: PNG with their parameters), else images."""
    items = []
    for index, (image, path, seed) in enumerate(zip(outcome.images, outcome.paths, outcome.seeds)):
        caption = "Grid" if index == 0 and outcome.has_grid else f"Seed {seed}"
        items.append((str(path) if path is not None else image, caption))
    return items


def info_html(outcome: Outcome, index: int) -> str:
    if not outcome.infotexts:
        return ""
    index = min(max(index, 0), len(outcome.infotexts) - 1)
    text = outcome.infotexts[index]
    return f'<pre class="easel-infotext" id="txt2img-infotext">{html.escape(text)}</pre>'
