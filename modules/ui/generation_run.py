"""Running a generation from a tab: the values of its components become a typed request, the job is
submitted, and the handler streams the progress line and live preview as the engine's events arrive,
then the gallery and info text when the job ends. The same code serves txt2img and img2img; a tab
gives its own `prepare` (values -> request) and `submit` (request -> Job).
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from types import UnionType
from typing import Any, Callable, Iterator, Union, get_args, get_origin, get_type_hints

import gradio as gr
import PIL.Image

from modules.errors import UserError
from modules.extensions.api import Script
from modules.generation.outpaint import OutpaintRequest
from modules.generation.request import GenerationRequest
from modules.jobs import Job, JobState, ProgressEvent
from modules.services import Services
from modules.ui import progress_view
from modules.ui.generation_panel import Fields, GenerationPanel
from modules.ui.sessions import Outcome, SessionRuns, session_key
from modules.ui.text import Words

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # how often a queued job re-checks its place


@dataclass
class Prepared:
    """A request ready to submit, and a sentence to show beside its progress (e.g. what was assumed).
    `script`: an extension's selectable script and its values, which then make the job."""

    request: GenerationRequest | OutpaintRequest
    notice: str = ""
    script: tuple[Script, dict[str, Any]] | None = None


def _field_types(request_type: type[GenerationRequest]) -> dict[str, Any]:
    """Each field's declared type, `X | None` read as X (the request modules import PIL only for
    type checking, so its name is supplied here)."""
    hints = get_type_hints(request_type, localns={"Image": PIL.Image})
    types = {}
    for f in dataclass_fields(request_type):
        kind = hints.get(f.name)
        if get_origin(kind) in (Union, UnionType):
            kind = next((arg for arg in get_args(kind) if arg is not type(None)), kind)
        types[f.name] = kind
    return types


def field_values(values: dict[Any, Any], fields: Fields, request_type: type[GenerationRequest]) -> dict[str, Any]:
    """The request's field values from the components' values, typed as the request declares them.
    A number box left empty or holding a fraction where a whole number belongs is a UserError."""
    declared = _field_types(request_type)
    data: dict[str, Any] = {}
    for name, component in fields.items():
        value = values[component]
        kind = declared.get(name)
        label = getattr(component, "label", None)
        label = getattr(label, "key", label) or name.replace("_", " ")  # the English text of an L(...) label
        if kind in (int, float):
            if value is None:
                raise UserError(f"{label} is empty: enter a number.")
            if kind is int:
                if float(value) != int(value):
                    raise UserError(f"{label} must be a whole number, not {value}.")
                value = int(value)
            else:
                value = float(value)
        elif kind is bool:
            value = bool(value)
        elif get_origin(kind) is list:
            value = list(value or [])
        data[name] = value
    return data


def preview_every(services: Services) -> int:
    settings = services.settings
    return settings.show_progress_every_n_steps if settings.show_progress_type != "None" else 0


def gallery_items(outcome: Outcome, say: progress_view.Say = progress_view.english) -> list:
    """Saved files when there are any (served as they are: PNG with their parameters), else images."""
    items = []
    for index, (image, path, seed) in enumerate(zip(outcome.images, outcome.paths, outcome.seeds)):
        if index == 0 and outcome.has_grid:
            caption = say("Grid")
        elif index >= len(outcome.images) - outcome.boxes:
            caption = say("ADetailer boxes")
        elif index >= len(outcome.images) - outcome.boxes - outcome.maps:
            caption = say("ControlNet map")
        else:
            caption = say("Seed {seed}", seed=seed)
        items.append((str(path) if path is not None else image, caption))
    return items


def info_html(prefix: str, outcome: Outcome, index: int) -> str:
    if not outcome.infotexts:
        return ""
    index = min(max(index, 0), len(outcome.infotexts) - 1)
    text = outcome.infotexts[index]  # infotext is a format, never translated
    return f'<pre class="easel-infotext" id="{prefix}-infotext">{html.escape(text)}</pre>'


class StepRate:
    """Sampling steps per second, measured over the job's steps so far (every batch's steps count)."""

    def __init__(self) -> None:
        self.start: tuple[float, int] | None = None

    def measure(self, event: ProgressEvent) -> float | None:
        done = event.image_index * event.steps + event.step
        now = time.monotonic()
        if self.start is None:
            self.start = (now, done)
            return None
        seconds, steps = now - self.start[0], done - self.start[1]
        return steps / seconds if seconds > 0 and steps > 0 else None


def _outcome(result, show_maps: bool = True) -> Outcome:
    outcome = Outcome(list(result.images), list(result.image_seeds), list(result.infotexts), list(result.paths))
    if result.grid is not None:  # shown first, as in A1111; it carries the first image's parameters
        outcome = Outcome(
            [result.grid, *outcome.images], [outcome.seeds[0], *outcome.seeds],
            [outcome.infotexts[0], *outcome.infotexts], [result.grid_path, *outcome.paths], has_grid=True,
        )
    maps = list(result.detected_maps) if show_maps and outcome.images else []
    boxes = list(result.detection_previews) if outcome.images else []
    extra = [*maps, *boxes]
    if extra:  # the ControlNet maps last, as the extension appends them, then the detailer's boxes; they carry no parameters
        outcome.images += extra
        outcome.seeds += [-1] * len(extra)
        outcome.infotexts += [""] * len(extra)
        outcome.paths += [None] * len(extra)
        outcome.maps, outcome.boxes = len(maps), len(boxes)
    return outcome


def wire_generation(
    services: Services,
    runs: SessionRuns,
    panel: GenerationPanel,
    prepare: Callable[[dict[Any, Any]], Prepared],
    submit: Callable[..., Job],  # (the tab's request, job_id) -> Job: a Submitter method
    inputs: set[Any],
    outputs_folder: str,
) -> list:
    """Wires Generate (and Enter in the prompt), Interrupt, Skip, the gallery and the seed buttons of
    `panel`. `prepare` gets the values of `inputs` (the fields and whatever else the tab reads).
    Returns the Generate events (the shell refreshes its model line after them)."""
    out = panel.output
    prefix = panel.prefix
    words = Words(services.translations)

    def on_generate(values: dict[Any, Any], request: gr.Request) -> Iterator[dict]:
        session = session_key(request)

        def say(text: str, **values: Any) -> str:
            return words.say(request, text, **values)

        def with_notice(notice: str, text: str) -> str:
            return f"{text} · {say(notice)}" if notice else text

        def failed(message: str) -> dict:
            """The error in the progress line and, big, where the picture would be."""
            box = progress_view.error_html(message, say)
            return {out.progress: box, out.failure: gr.HTML(box, visible=True), out.preview: gr.Image(visible=False),
                    out.gallery: gr.Gallery(visible=True)}

        try:
            prepared = prepare(values)
            if prepared.script is not None:
                assert isinstance(prepared.request, GenerationRequest)  # scripts run on txt2img / img2img requests
                job = services.generation.submit_script(prepared.request, *prepared.script)
            else:
                job = submit(prepared.request)
        except UserError as error:
            yield failed(str(error))
            return
        notice = prepared.notice
        runs.start(session, job.id)
        subscription = services.queue.subscribe(job.id)
        rate = StepRate()
        try:
            yield {out.progress: progress_view.starting_html(with_notice(notice, say("Starting…"))), out.failure: gr.HTML("", visible=False),
                   out.preview: gr.Image(value=None, visible=True), out.gallery: gr.Gallery(visible=False)}
            while True:
                event = subscription.get(timeout=POLL_SECONDS)
                if event is None:
                    if job.done:
                        break
                    position = job.position
                    if position is not None:
                        yield {out.progress: progress_view.queued_html(position, say)}
                    elif job.state == JobState.RUNNING and job.last_event is None:
                        yield {out.progress: progress_view.starting_html(with_notice(notice, say("Loading the model and encoding the prompt…")))}
                    continue
                if event.final:
                    break
                if event.steps == 0:  # before sampling: e.g. "Loading the model"
                    text = say("{what}…", what=say(event.textinfo)) if event.textinfo else say("Starting…")
                    yield {out.progress: progress_view.starting_html(with_notice(notice, text))}
                    continue
                update: dict = {out.progress: progress_view.step_html(event, say, rate.measure(event))}
                if event.preview is not None:
                    update[out.preview] = event.preview
                yield update
        finally:
            subscription.close()
        # A failed job's result() re-raises its error: read the message instead.
        result = job.result(timeout=0) if job.state != JobState.FAILED else None
        if result is None:
            runs.finish(session, job.id, None)
            yield failed(job.error_message or "The job ended without images.")
            return
        outcome = _outcome(result, show_maps=not services.settings.control_net_no_detectmap)
        runs.finish(session, job.id, outcome)
        state = "interrupted" if result.interrupted else "done"
        seconds = f"{result.timings.get('total', 0.0):.1f}"
        summary = (say("Interrupted: {count} image(s) in {seconds} s", count=len(result.images), seconds=seconds) if result.interrupted
                   else say("Done: {count} image(s) in {seconds} s", count=len(result.images), seconds=seconds))
        notes = " · ".join(say(note) for note in (notice, *result.notes) if note)
        yield {
            out.progress: progress_view.done_html(f"{summary} · {notes}" if notes else summary, state),
            out.preview: gr.Image(value=outcome.images[-1] if outcome.images else None, visible=False),
            out.gallery: gr.Gallery(value=gallery_items(outcome, say), visible=True),
            out.info: info_html(prefix, outcome, 0),
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
        return info_html(prefix, outcome, int(event.index)) if outcome else ""

    def on_reuse_last_seed(request: gr.Request) -> int | dict:
        outcome = runs.outcome(session_key(request))
        if outcome is None or not outcome.seeds:
            return gr.skip()
        return outcome.seeds[0]

    def on_image_seed(request: gr.Request) -> int | dict:
        picked = runs.picked(session_key(request))
        return picked[0].seeds[picked[1]] if picked is not None else gr.skip()

    def on_show_folder(request: gr.Request) -> gr.Textbox:
        picked = runs.picked(session_key(request))
        path: Path | None = picked[0].paths[picked[1]] if picked is not None else None
        shown = str(path) if path else str(services.paths.outputs_dir / outputs_folder)
        return gr.Textbox(value=shown, visible=True)

    fields = panel.fields
    row = panel.prompt_row
    views = [out.progress, out.failure, out.preview, out.gallery, out.info]
    generations = [
        row.generate.click(on_generate, inputs, views, concurrency_limit=None, show_progress="hidden"),
        fields["prompt"].submit(on_generate, inputs, views, concurrency_limit=None, show_progress="hidden"),
    ]
    row.interrupt.click(on_interrupt, None, None, concurrency_limit=None, show_progress="hidden")
    row.skip.click(on_skip, None, None, concurrency_limit=None, show_progress="hidden")
    panel.reuse_seed.click(on_reuse_last_seed, None, fields["seed"], show_progress="hidden")
    out.seed_of_image.click(on_image_seed, None, fields["seed"], show_progress="hidden")
    out.gallery.select(on_select, None, out.info, show_progress="hidden")
    out.show_folder.click(on_show_folder, None, out.folder, show_progress="hidden")
    return generations
