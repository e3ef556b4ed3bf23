"""The Extras tab (A1111's): make finished pictures bigger with the upscalers.

Source: one picture, several uploaded files, or a folder on this machine (only when Easel serves
this machine alone: a folder path typed in a page served to others would read and write the
server's files). Resize: "Scale by" a factor or "Scale to" a size (cropped to it, or not); upscaler
1, and upscaler 2 blended in by its visibility. The job waits in the generation queue, shows each
tile as progress, and can be interrupted. Results keep the source's parameters and get
`postprocessing`/`extras` text; they are saved to outputs/extras-images (setting `samples_save`)
and can be sent to img2img or inpaint.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from modules.app.extras_jobs import ExtrasInput, ExtrasResult, folder_inputs
from modules.errors import UserError
from modules.infotext.create import format_parameters
from modules.infotext.embed import infotext_from_image
from modules.jobs import JobState
from modules.services import Services
from modules.ui import progress_view
from modules.ui.sessions import SessionRuns, session_key
from modules.ui.text import L, Words
from modules.ui.upscaler_lists import UPSCALER_CLASS, upscaler_choices
from modules.upscalers.catalog import NONE
from modules.upscalers.extras import ExtrasOptions

POLL_SECONDS = 0.25
KEPT_SESSIONS = 256
SOURCES = ("single", "batch", "folder")


@dataclass
class ExtrasTab:
    send_img2img: gr.Button
    send_inpaint: gr.Button
    infotext: gr.State  # the selected result's source parameters, for Send to
    image_path: gr.State  # the selected result's file
    message: gr.HTML


def folders_allowed(services: Services) -> bool:
    """Batch from a folder reads and writes this machine's files: only when Easel listens on the
    loopback interface (not with --listen or --server-name)."""
    return services.args.host in ("127.0.0.1", "localhost", "::1")


def result_html(result: ExtrasResult, index: int) -> str:
    if not result.infos:
        return ""
    index = min(max(index, 0), len(result.infos) - 1)
    text = format_parameters(result.infos[index])  # a format, as A1111 writes it: never translated
    return f'<pre class="easel-infotext" id="extras-info">{html.escape(text)}</pre>'


def build_extras_tab(services: Services, words: Words) -> ExtrasTab:
    names = services.upscalers.names()
    allowed = folders_allowed(services)
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=320, elem_id="extras-inputs"):
            source = gr.State("single")
            with gr.Tabs(elem_id="extras-source"):
                with gr.Tab(L("Single Image"), id="single", elem_id="extras-single-tab") as single_tab:
                    image = gr.Image(label=L("Source"), type="filepath", sources=["upload", "clipboard"], elem_id="extras-image")
                with gr.Tab(L("Batch Process"), id="batch", elem_id="extras-batch-tab") as batch_tab:
                    files = gr.File(label=L("Pictures"), file_count="multiple", file_types=["image"], type="filepath", elem_id="extras-files")
                with gr.Tab(L("Batch from Directory"), id="folder", elem_id="extras-folder-tab") as folder_tab:
                    if not allowed:
                        gr.Markdown(L("Batch from a folder is off while Easel serves other machines (--listen): a folder typed here would be read on the server."),
                                    elem_id="extras-folder-off")
                    input_dir = gr.Textbox(label=L("Input directory"), interactive=allowed, elem_id="extras-input-dir",
                                           info=L("A folder on this machine; every picture in it is upscaled."))
                    output_dir = gr.Textbox(label=L("Output directory"), interactive=allowed, elem_id="extras-output-dir",
                                            info=L("Where the results go (same file names); empty: outputs/extras-images."))
                    show_results = gr.Checkbox(label=L("Show result images"), value=True, elem_id="extras-show-results")
            with gr.Row():
                run = gr.Button(L("Generate"), variant="primary", elem_id="extras-generate", scale=3)
                interrupt = gr.Button(L("Interrupt"), elem_id="extras-interrupt", scale=1)
            resize_mode = gr.State(0)
            with gr.Tabs(elem_id="extras-resize"):
                with gr.Tab(L("Scale by"), id="scale-by", elem_id="extras-scale-by-tab") as scale_by_tab:
                    scale = gr.Slider(1.0, 8.0, value=4.0, step=0.05, label=L("Resize"), elem_id="extras-scale",
                                      info=L("How many times larger the picture becomes."))
                with gr.Tab(L("Scale to"), id="scale-to", elem_id="extras-scale-to-tab") as scale_to_tab:
                    with gr.Row():
                        width = gr.Number(value=512, precision=0, label=L("Width"), elem_id="extras-width")
                        height = gr.Number(value=512, precision=0, label=L("Height"), elem_id="extras-height")
                    crop = gr.Checkbox(value=True, label=L("Crop to fit"), elem_id="extras-crop",
                                       info=L("Cover the size and cut off what is over (else the picture keeps its shape)."))
            upscaler_1 = gr.Dropdown(upscaler_choices(names), value=NONE, label=L("Upscaler 1"), elem_id="extras-upscaler-1",
                                     elem_classes=UPSCALER_CLASS, info=L("What enlarges the picture: a model file, or Lanczos/Nearest."))
            with gr.Row():
                upscaler_2 = gr.Dropdown(upscaler_choices(names), value=NONE, label=L("Upscaler 2"), elem_id="extras-upscaler-2",
                                         elem_classes=UPSCALER_CLASS, info=L("A second upscaler blended over the first."))
                visibility = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label=L("Upscaler 2 visibility"), elem_id="extras-upscaler-2-visibility",
                                       info=L("How much of upscaler 2's result shows (0: none)."))
        with gr.Column(scale=6, min_width=340, elem_id="extras-results"):
            progress = gr.HTML("", elem_id="extras-progress")
            gallery = gr.Gallery(label=L("Result"), columns=3, object_fit="contain", height="auto", elem_id="extras-gallery")
            info = gr.HTML("", elem_id="extras-info-box")
            with gr.Row():
                send_img2img = gr.Button(L("Send to img2img"), interactive=False, elem_id="extras-send-img2img")
                send_inpaint = gr.Button(L("Send to inpaint"), interactive=False, elem_id="extras-send-inpaint")
            message = gr.HTML("", elem_id="extras-message")
    infotext, image_path = gr.State(None), gr.State(None)
    results: dict[str, tuple[ExtrasResult, list[str | None]]] = {}  # session -> its last result and the files shown
    jobs = SessionRuns()  # each session's running extras job (Interrupt stops the caller's own only)

    for tab, name in ((single_tab, "single"), (batch_tab, "batch"), (folder_tab, "folder")):
        tab.select(lambda name=name: name, None, source, show_progress="hidden")
    scale_by_tab.select(lambda: 0, None, resize_mode, show_progress="hidden")
    scale_to_tab.select(lambda: 1, None, resize_mode, show_progress="hidden")

    def inputs_for(kind: str, image_file: str | None, uploaded: list[str] | None, folder: str) -> list[ExtrasInput]:
        if kind == "single":
            if not image_file:
                raise UserError("There is no picture to work on: add one first.")
            return [ExtrasInput(None, Path(image_file).name, Path(image_file))]
        if kind == "batch":
            if not uploaded:
                raise UserError("There is no picture to work on: add one first.")
            return [ExtrasInput(None, Path(path).name, Path(path)) for path in uploaded]
        if not allowed:
            raise UserError("Batch from a folder is off while Easel serves other machines (--listen): a folder typed here would be read on the server.")
        if not folder.strip():
            raise UserError("Type the input directory first.")
        return folder_inputs(Path(folder.strip()).expanduser())

    def on_run(kind: str, image_file: str | None, uploaded: list[str] | None, folder: str, out_folder: str, show: bool, mode: int,
               factor: float, to_w: float | None, to_h: float | None, crop_on: bool, first: str, second: str, shown: float,
               request: gr.Request) -> Iterator[dict]:
        session = session_key(request)

        def say(text: str, **values: Any) -> str:
            return words.say(request, text, **values)

        off = {send_img2img: gr.Button(interactive=False), send_inpaint: gr.Button(interactive=False)}
        try:
            items = inputs_for(kind, image_file, uploaded, folder)
            options = ExtrasOptions(resize_mode=int(mode), scale=float(factor or 0), width=int(to_w or 0), height=int(to_h or 0),
                                    crop=bool(crop_on), upscaler_1=first or NONE, upscaler_2=second or NONE, visibility_2=float(shown or 0))
            target = Path(out_folder.strip()).expanduser() if kind == "folder" and out_folder.strip() else None
            job = services.extras.submit(items, options, save=True, output_dir=target, description=f"extras: {len(items)} image(s)")
        except UserError as error:
            yield {progress: progress_view.error_html(str(error), say), message: "", **off}
            return
        jobs.start(session, job.id)
        subscription = services.queue.subscribe(job.id)
        try:
            yield {progress: progress_view.starting_html(say("Starting…")), message: "", **off}
            while True:
                event = subscription.get(timeout=POLL_SECONDS)
                if event is None:
                    if job.done:
                        break
                    position = job.position
                    if position is not None:
                        yield {progress: progress_view.queued_html(position, say)}
                    continue
                if event.final:
                    break
                if event.steps:
                    yield {progress: progress_view.step_html(event, say)}
        finally:
            subscription.close()
            jobs.finish(session, job.id, None)
        if job.state == JobState.FAILED:
            yield {progress: progress_view.error_html(job.error_message or "The job failed.", say)}
            return
        result = job.result(timeout=0)
        assert result is not None
        files = [str(path) if path is not None else None for path in result.paths]
        results.pop(session, None)
        results[session] = (result, files)
        while len(results) > KEPT_SESSIONS:  # the oldest sessions' pictures go, as SessionRuns keeps its outcomes
            results.pop(next(iter(results)))
        count = len(result.images)
        summary = (say("Interrupted: {count} image(s) in {seconds} s", count=count, seconds=f"{job.elapsed():.1f}") if result.interrupted
                   else say("Done: {count} image(s) in {seconds} s", count=count, seconds=f"{job.elapsed():.1f}"))
        notes = " · ".join(say(note) for note in result.skipped)
        items_shown = [(path or image) for path, image in zip(files, result.images)] if (kind != "folder" or show) else []
        first_path = files[0] if files else None
        yield {
            progress: progress_view.done_html(f"{summary} · {notes}" if notes else summary, "interrupted" if result.interrupted else "done"),
            gallery: items_shown,
            info: result_html(result, 0),
            infotext: infotext_from_image(result.sources[0]) if result.sources else None,
            image_path: first_path,
            send_img2img: gr.Button(interactive=first_path is not None),
            send_inpaint: gr.Button(interactive=first_path is not None),
        }

    def on_select(event: gr.SelectData, request: gr.Request) -> tuple:
        kept = results.get(session_key(request))
        if kept is None:
            return "", None, None
        result, files = kept
        index = min(max(int(event.index), 0), len(result.images) - 1)
        return result_html(result, index), infotext_from_image(result.sources[index]), files[index]

    def on_interrupt(request: gr.Request) -> None:
        job_id = jobs.job(session_key(request))
        if job_id is not None:
            services.queue.interrupt(job_id)

    run.click(on_run, [source, image, files, input_dir, output_dir, show_results, resize_mode, scale, width, height, crop,
                       upscaler_1, upscaler_2, visibility],
              [progress, gallery, info, infotext, image_path, send_img2img, send_inpaint, message], concurrency_limit=None, show_progress="hidden")
    gallery.select(on_select, None, [info, infotext, image_path], show_progress="hidden")
    interrupt.click(on_interrupt, None, None, show_progress="hidden")
    return ExtrasTab(send_img2img, send_inpaint, infotext, image_path, message)

