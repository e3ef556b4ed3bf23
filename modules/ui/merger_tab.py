"""The Checkpoint Merger tab (A1111's): choose A, B and C from the checkpoint list, the method
(Weighted sum, Add difference, No interpolation) and M, optionally half precision, a baked-in VAE
and the new file's name. The merge waits its turn in the queue, shows each tensor as progress, can
be interrupted (nothing is then written), and the new checkpoint is in the checkpoint list when it
ends (the top bar's list picks it up on refresh; this tab's lists are refreshed at once)."""

from __future__ import annotations

from typing import Any, Iterator

import gradio as gr

from modules.errors import UserError
from modules.i18n import N_
from modules.jobs import JobState
from modules.merger.recipe import ADD_DIFFERENCE, METHODS, NO_INTERPOLATION, WEIGHTED_SUM, MergeRecipe
from modules.services import Services
from modules.ui import progress_view
from modules.ui.sessions import session_key
from modules.ui.text import L, Words

POLL_SECONDS = 0.25
NO_VAE = "None"

METHOD_HELP = {
    WEIGHTED_SUM: N_("Result = A x (1 - M) + B x M."),
    ADD_DIFFERENCE: N_("Result = A + (B - C) x M: e.g. an inpainting A, your model B and the base model C."),
    NO_INTERPOLATION: N_("Result = A: to save it at half precision or with a VAE baked in."),
}


def build_merger_tab(services: Services, words: Words, top_checkpoint: gr.Dropdown) -> None:
    """`top_checkpoint`: the page's checkpoint list, given the new model when a merge ends."""
    def checkpoints() -> list[tuple[str, str]]:
        return services.models.checkpoint_choices()

    def vaes() -> list[str]:
        return [NO_VAE] + [entry.name for entry in services.registry.vaes]

    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                primary = gr.Dropdown(checkpoints(), value=None, label=L("Primary model (A)"), elem_id="merger-primary",
                                      info=L("The model the result starts from; its keys and layout are kept."))
                secondary = gr.Dropdown(checkpoints(), value=None, label=L("Secondary model (B)"), elem_id="merger-secondary",
                                        info=L("Mixed into A by the multiplier."))
                tertiary = gr.Dropdown(checkpoints(), value=None, label=L("Tertiary model (C)"), elem_id="merger-tertiary",
                                       info=L("Add difference only: what B is compared against."))
                refresh = gr.Button("🔄", scale=0, min_width=48, elem_id="merger-refresh", elem_classes="easel-tool-button")
            method = gr.Radio([(L(name), name) for name in METHODS], value=WEIGHTED_SUM, label=L("Interpolation method"),
                              elem_id="merger-method", info=L(METHOD_HELP[WEIGHTED_SUM]))
            multiplier = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label=L("Multiplier (M)"), elem_id="merger-multiplier",
                                   info=L("0 keeps A; 1 takes all of B (Weighted sum) or the whole difference (Add difference)."))
            with gr.Row():
                name = gr.Textbox(label=L("Custom name (optional)"), elem_id="merger-name",
                                  info=L("The new file's name; empty: A_0.7-B_0.3-Weighted_sum-merged."))
                vae = gr.Dropdown(vaes(), value=NO_VAE, label=L("Bake in VAE"), elem_id="merger-vae",
                                  info=L("Put this VAE's weights into the new checkpoint."))
                half = gr.Checkbox(False, label=L("Save as float16"), elem_id="merger-half", info=L("Half the file size; what most shared models use."))
            discard = gr.Textbox(label=L("Discard weights with matching name"), elem_id="merger-discard",
                                 info=L("A regular expression: weights whose names it finds are left out (e.g. model_ema)."))
            with gr.Row():
                merge = gr.Button(L("Merge"), variant="primary", elem_id="merger-run")
                interrupt = gr.Button(L("Interrupt"), elem_id="merger-interrupt")
        with gr.Column(scale=2):
            progress = gr.HTML("", elem_id="merger-progress")

    running: dict[str, str] = {}

    def on_merger_method(chosen: str, request: gr.Request) -> gr.Radio:
        return gr.Radio(info=words.say(request, METHOD_HELP.get(chosen, "")))

    def on_merger_refresh() -> tuple:
        services.models.refresh()
        return gr.Dropdown(choices=checkpoints()), gr.Dropdown(choices=checkpoints()), gr.Dropdown(choices=checkpoints()), gr.Dropdown(choices=vaes())

    def on_merge_run(a: str | None, b: str | None, c: str | None, chosen: str, m: float, custom: str, baked: str | None, as_half: bool,
                     dropped: str, request: gr.Request) -> Iterator[Any]:
        def say(text: str, **values: Any) -> str:
            return words.say(request, text, **values)

        recipe = MergeRecipe(a or "", b or "", c or "", chosen, float(m), bool(as_half), custom or "", "" if baked in (None, NO_VAE) else baked,
                             dropped or "")
        try:
            job = services.merges.submit(recipe)
        except UserError as error:
            yield progress_view.error_html(str(error), say), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        running[session_key(request)] = job.id
        subscription = services.queue.subscribe(job.id)
        try:
            yield progress_view.starting_html(say("Starting…")), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            while True:
                event = subscription.get(timeout=POLL_SECONDS)
                if event is None:
                    if job.done:
                        break
                    continue
                if event.final:
                    break
                if event.steps:
                    yield progress_view.step_html(event, say), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        finally:
            subscription.close()
            running.pop(session_key(request), None)
        if job.state == JobState.FAILED:
            yield progress_view.error_html(job.error_message or "The job failed.", say), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        result = job.result(timeout=0)
        if result is None:
            yield progress_view.done_html(say("Interrupted: nothing was written."), "interrupted"), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        text = say("Saved {title} in {seconds} s; it is in the checkpoint list.", title=result.title, seconds=f"{result.seconds:.1f}")
        choices = checkpoints()
        yield progress_view.done_html(text), gr.Dropdown(choices=choices), gr.Dropdown(choices=choices), gr.Dropdown(choices=choices), \
            gr.Dropdown(choices=choices)

    def on_merge_interrupt(request: gr.Request) -> None:
        job_id = running.get(session_key(request))
        if job_id is not None:
            services.queue.interrupt(job_id)

    method.change(on_merger_method, [method], [method], show_progress="hidden")
    refresh.click(on_merger_refresh, None, [primary, secondary, tertiary, vae], show_progress="hidden")
    merge.click(on_merge_run, [primary, secondary, tertiary, method, multiplier, name, vae, half, discard], [progress, primary, secondary, tertiary, top_checkpoint],
                concurrency_limit=None, show_progress="hidden")
    interrupt.click(on_merge_interrupt, None, None, show_progress="hidden")
