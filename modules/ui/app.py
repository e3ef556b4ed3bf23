"""The page: model selection at the top and one tab per task.

The handlers call `Services` only; a failed switch shows its message in the status line and puts
the dropdown back on the model that is still active. Tabs whose work has not landed yet say so, and
already receive images sent from txt2img.
"""

from __future__ import annotations

import html
import logging

import gradio as gr
from fastapi import FastAPI

from modules.app_services import Services
from modules.errors import UserError
from modules.infotext.parse import parse_infotext
from modules.ui.history_tab import build_history_tab
from modules.ui.png_info import build_png_info_tab, txt2img_values
from modules.ui.progress_view import PROGRESS_CSS
from modules.ui.sessions import SessionRuns, session_key
from modules.ui.settings_tab import build_settings_tab
from modules.ui.txt2img import build_txt2img_tab

log = logging.getLogger(__name__)

PLACEHOLDER_TABS = {
    "img2img": "Image to image and inpainting with a painted mask are not built yet. Images sent here from txt2img wait below.",
    "Outpainting": "Extending an image beyond its borders is not built yet. Images sent here from txt2img wait below.",
}

CSS = ".easel-status { min-height: 1.5em; }\n.easel-tokens { font-variant-numeric: tabular-nums; opacity: .8; }\n" \
      ".easel-tokens[data-over] { color: var(--error-text-color, #b91c1c); }\n" \
      ".easel-infotext { white-space: pre-wrap; word-break: break-word; font-size: .85em; margin: 0; }\n" + PROGRESS_CSS

# Ctrl+Enter (or Cmd+Enter) generates, Esc interrupts: in the txt2img tab, as in A1111.
KEYBOARD_JS = """
() => {
  document.addEventListener('keydown', (e) => {
    const click = (id) => { const b = document.getElementById(id); if (b) { b.click(); e.preventDefault(); } };
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) click('txt2img-generate');
    else if (e.key === 'Escape') click('txt2img-interrupt');
  });
}
"""


def status_text(services: Services, error: str | None = None) -> str:
    """One line about the active model (name, family, VAE), then the error of the last action."""
    loaded = services.manager.loaded
    waiting = services.startup_title() if loaded is None else None
    if loaded is None and waiting is not None:
        line = f"**{html.escape(waiting)}** loads with the first generation (or when picked above)."
    elif loaded is None:
        line = "No model loaded. Put a checkpoint in " + html.escape(str(services.paths.checkpoints_dir)) + " and press Refresh."
    else:
        vae = loaded.vae.name if loaded.vae is not None else "its own"
        line = (
            f"Active: **{html.escape(services.registry.title(loaded.checkpoint))}** · {html.escape(loaded.spec.family.label)}"
            f" · VAE: {html.escape(vae)} ({html.escape(services.manager.vae_choice)})"
        )
    if error:
        line += f"\n\n**Error:** {html.escape(error)}"
    return line


def _run(action, *args) -> str | None:
    """Runs a model action; returns the message to show if it failed."""
    try:
        action(*args)
    except UserError as error:
        log.warning("%s", error)
        return str(error)
    except Exception as error:  # a bug: still tell the user, and keep the traceback in the log
        log.exception("Model action failed")
        return f"Unexpected error ({type(error).__name__}): {error}"
    return None


def build_ui(services: Services) -> gr.Blocks:
    def checkpoint_dropdown() -> gr.Dropdown:
        return gr.Dropdown(choices=services.checkpoint_choices(), value=services.startup_name())

    def vae_dropdown() -> gr.Dropdown:
        return gr.Dropdown(choices=services.vae_choices(), value=services.manager.vae_choice)

    def current(error: str | None = None):
        return checkpoint_dropdown(), vae_dropdown(), status_text(services, error)

    def on_checkpoint(title: str | None):
        return current(_run(services.switch_checkpoint, title) if title else None)

    def on_vae(choice: str | None):
        return current(_run(services.switch_vae, choice) if choice else None)

    def on_refresh():
        return current(_run(services.refresh))

    runs = SessionRuns()
    with gr.Blocks(title="Easel", analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("# Easel", elem_id="easel-title")
            checkpoint = gr.Dropdown(
                label="Stable Diffusion checkpoint", choices=services.checkpoint_choices(), value=services.startup_name(),
                interactive=True, scale=4, elem_id="easel-checkpoint",
            )
            vae = gr.Dropdown(
                label="SD VAE", choices=services.vae_choices(), value=services.manager.vae_choice,
                interactive=True, scale=2, elem_id="easel-vae",
            )
            refresh = gr.Button("Refresh", scale=0, min_width=100, elem_id="easel-refresh")
        status = gr.Markdown(status_text(services), elem_classes="easel-status", elem_id="easel-status")
        with gr.Tabs(elem_id="easel-tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab-txt2img"):
                txt2img = build_txt2img_tab(services, runs)
            received: dict[str, gr.Image] = {}
            for name, text in PLACEHOLDER_TABS.items():
                with gr.Tab(name, id=name, elem_id=f"tab-{name.lower().replace(' ', '-')}"):
                    gr.Markdown(text)
                    received[name] = gr.Image(label="Sent image", type="pil", interactive=False, elem_id=f"{name.lower()}-sent-image")
            with gr.Tab("PNG Info", id="PNG Info", elem_id="tab-png-info"):
                png_info = build_png_info_tab()
            with gr.Tab("History", id="History", elem_id="tab-history") as history_tab_item:
                history = build_history_tab(services.history, services.paths.data_dir / "exports")
            with gr.Tab("Settings", id="Settings", elem_id="tab-settings"):
                settings_tab = build_settings_tab(services)

        def send_to(target: str):
            def handler(request: gr.Request):
                outcome = runs.outcome(session_key(request))
                index = outcome.pick() if outcome else None
                if index is None:
                    return gr.skip(), gr.skip()
                return outcome.images[index], gr.Tabs(selected=target)
            return handler

        for target, button in txt2img.send_buttons.items():
            tab = "img2img" if target == "inpaint" else target
            button.click(send_to(tab), None, [received[tab], tabs], show_progress="hidden")
        demo.load(settings_tab.current_values, None, settings_tab.controls)
        outputs = [checkpoint, vae, status]

        def send_to_txt2img(message_box: gr.HTML):
            """A handler filling the txt2img fields from an infotext and switching to the checkpoint
            it names (by hash, then name); what it could not do is said in `message_box`."""
            def handler(infotext: str | None):
                if not infotext:
                    return {message_box: "Nothing to send: this image carries no generation parameters."}
                return fill_txt2img(infotext, message_box)
            return handler

        def fill_txt2img(infotext: str, message_box: gr.HTML) -> dict:
            values = txt2img_values(infotext)
            updates: dict = {component: values[name] for name, component in txt2img.fields.items() if name in values}
            params = parse_infotext(infotext)
            entry, message = services.checkpoint_for_infotext(params.get("Model hash"), params.get("Model"))
            if entry is not None and (services.manager.loaded is None or services.manager.loaded.checkpoint != entry):
                message = _run(services.switch_checkpoint, entry.name) or message
            checkpoint_update, vae_update, status_update = current()
            updates.update({
                tabs: gr.Tabs(selected="txt2img"), message_box: html.escape(message),
                checkpoint: checkpoint_update, vae: vae_update, status: status_update,
            })
            return updates

        for button, source, message_box in (
            (png_info.send_txt2img, png_info.parameters, png_info.message),
            (history.send_txt2img, history.selected_infotext, history.message),
        ):
            button.click(
                send_to_txt2img(message_box), source, [*txt2img.fields.values(), tabs, message_box, checkpoint, vae, status],
                concurrency_id="model", concurrency_limit=1,
            )
        history_tab_item.select(*history.tab_search, show_progress="hidden")
        for event in txt2img.generations:  # the first generation may have loaded the model
            event.then(current, None, outputs, show_progress="hidden")
        # `.input` (not `.change`) so that putting the dropdown back after a failure fires nothing.
        checkpoint.input(on_checkpoint, checkpoint, outputs, concurrency_id="model", concurrency_limit=1)
        vae.input(on_vae, vae, outputs, concurrency_id="model", concurrency_limit=1)
        refresh.click(on_refresh, None, outputs, concurrency_id="model", concurrency_limit=1)
        demo.load(current, None, outputs)
    return demo


def mount_ui(app: FastAPI, services: Services) -> FastAPI:
    """Mounts the page at "/" of `app` (after the API routes, which must come first)."""
    auth = list(services.args.gradio_auth) or None
    return gr.mount_gradio_app(
        app, build_ui(services), path="/", auth=auth, ssr_mode=False, css=CSS, js=KEYBOARD_JS,
        server_name=services.args.host, server_port=services.args.port,
        allowed_paths=[str(services.paths.outputs_dir.resolve())],
    )
