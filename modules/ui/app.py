"""The page: model selection at the top and one tab per task.

The handlers call `Services` only; a failed switch shows its message in the status line and puts
the dropdown back on the model that is still active. The send buttons are wired in send_to.py.
"""

from __future__ import annotations

import html
import logging

import gradio as gr
from fastapi import FastAPI
from gradio.routes import App as GradioApp
from starlette.routing import Mount

from modules.errors import UserError
from modules.services import Services
from modules.ui.access import PageGate
from modules.ui.history_tab import build_history_tab
from modules.ui.img2img import IMG2IMG_CSS, build_img2img_tab
from modules.ui.outpainting import OUTPAINT_CSS, build_outpainting_tab
from modules.ui.png_info import build_png_info_tab
from modules.ui.progress_view import PROGRESS_CSS
from modules.ui.send_to import ModelLine, SendSource, SendWiring
from modules.ui.sessions import SessionRuns
from modules.ui.settings_tab import build_settings_tab
from modules.ui.txt2img import build_txt2img_tab

log = logging.getLogger(__name__)

CSS = ".easel-status { min-height: 1.5em; }\n.easel-tokens { font-variant-numeric: tabular-nums; opacity: .8; }\n" \
      ".easel-tokens[data-over] { color: var(--error-text-color, #b91c1c); }\n" \
      ".easel-infotext { white-space: pre-wrap; word-break: break-word; font-size: .85em; margin: 0; }\n" \
      ".easel-restore-notice { border: 1px solid var(--color-accent); border-radius: 6px; padding: .4em .8em; font-size: .9em; }\n" \
      ".easel-restore-notice ul { margin: .2em 0 0 1.2em; }\n" + PROGRESS_CSS + IMG2IMG_CSS + OUTPAINT_CSS

# Ctrl+Enter (or Cmd+Enter) generates, Esc interrupts, as in A1111: in whichever of the generation
# tabs is showing (a hidden tab's buttons have no layout box).
KEYBOARD_JS = """
() => {
  document.addEventListener('keydown', (e) => {
    const click = (action) => {
      const button = ['txt2img', 'img2img', 'outpaint'].map((tab) => document.getElementById(`${tab}-${action}`))
        .find((b) => b && b.getClientRects().length > 0);
      if (button) { button.click(); e.preventDefault(); }
    };
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) click('generate');
    else if (e.key === 'Escape') click('interrupt');
  });
}
"""


def status_text(services: Services, error: str | None = None) -> str:
    """One line about the active model (name, family, VAE), then the error of the last action."""
    loaded = services.manager.loaded
    waiting = services.models.startup_title() if loaded is None else None
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
        return gr.Dropdown(choices=services.models.checkpoint_choices(), value=services.models.startup_name())

    def vae_dropdown() -> gr.Dropdown:
        return gr.Dropdown(choices=services.models.vae_choices(), value=services.manager.vae_choice)

    def current(error: str | None = None):
        return checkpoint_dropdown(), vae_dropdown(), status_text(services, error)

    def on_checkpoint(title: str | None):
        return current(_run(services.models.switch_checkpoint, title) if title else None)

    def on_vae(choice: str | None):
        return current(_run(services.models.switch_vae, choice) if choice else None)

    def on_refresh():
        return current(_run(services.models.refresh))

    txt2img_runs, img2img_runs, outpaint_runs = SessionRuns(), SessionRuns(), SessionRuns()  # each tab's jobs and outcomes per session
    with gr.Blocks(title="Easel", analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("# Easel", elem_id="easel-title")
            checkpoint = gr.Dropdown(
                label="Stable Diffusion checkpoint", choices=services.models.checkpoint_choices(), value=services.models.startup_name(),
                interactive=True, scale=4, elem_id="easel-checkpoint",
            )
            vae = gr.Dropdown(
                label="SD VAE", choices=services.models.vae_choices(), value=services.manager.vae_choice,
                interactive=True, scale=2, elem_id="easel-vae",
            )
            refresh = gr.Button("Refresh", scale=0, min_width=100, elem_id="easel-refresh")
        status = gr.Markdown(status_text(services), elem_classes="easel-status", elem_id="easel-status")
        with gr.Tabs(elem_id="easel-tabs"):
            with gr.Tab("txt2img", id="txt2img", elem_id="tab-txt2img"):
                txt2img = build_txt2img_tab(services, txt2img_runs)
            with gr.Tab("img2img", id="img2img", elem_id="tab-img2img"):
                img2img = build_img2img_tab(services, img2img_runs)
            with gr.Tab("Outpainting", id="Outpainting", elem_id="tab-outpainting"):
                outpainting = build_outpainting_tab(services, outpaint_runs)
            with gr.Tab("PNG Info", id="PNG Info", elem_id="tab-png-info"):
                png_info = build_png_info_tab(lambda: services.settings.max_input_megapixels)
            with gr.Tab("History", id="History", elem_id="tab-history") as history_tab_item:
                history = build_history_tab(services.history, services.paths.data_dir / "exports")
            for extension, tab in services.extensions.tabs():
                with gr.Tab(tab.title, elem_id=f"tab-ext-{extension}"):
                    services.extensions.guarded(extension, f"its tab {tab.title!r}", tab.build, services)
            with gr.Tab("Settings", id="Settings", elem_id="tab-settings"):
                settings_tab = build_settings_tab(services)

        model_line = ModelLine([checkpoint, vae, status], current, lambda name: _run(services.models.switch_checkpoint, name))
        sending = SendWiring(services, model_line, txt2img, img2img, outpainting)
        sending.wire_gallery(txt2img.send_buttons, txt2img_runs, parameters_to={"img2img", "inpaint", "outpainting"})
        sending.wire_gallery(img2img.send_buttons, img2img_runs, parameters_to={"outpainting"})
        sending.wire_gallery(outpainting.send_buttons, outpaint_runs, parameters_to={"outpainting"})
        for target, runs in (("txt2img", txt2img_runs), ("img2img", img2img_runs), ("outpainting", outpaint_runs)):
            sending.wire_paste(target, runs)
        png_buttons = {"txt2img": png_info.send_txt2img, "img2img": png_info.send_img2img, "inpaint": png_info.send_inpaint,
                       "outpainting": png_info.send_outpainting}
        sending.wire_saved_image(SendSource(png_buttons, png_info.parameters, png_info.image_file, png_info.message))
        history_buttons = {"txt2img": history.send_txt2img, "img2img": history.send_img2img, "inpaint": history.send_inpaint,
                           "outpainting": history.send_outpainting}
        sending.wire_saved_image(SendSource(history_buttons, history.selected_infotext, history.selected_path, history.message))
        demo.load(settings_tab.current_values, None, settings_tab.controls)
        outputs = [checkpoint, vae, status]
        history_tab_item.select(*history.tab_search, show_progress="hidden")
        for event in [*txt2img.generations, *img2img.generations, *outpainting.generations]:  # the first generation may have loaded the model
            event.then(current, None, outputs, show_progress="hidden")
        # `.input` (not `.change`) so that putting the dropdown back after a failure fires nothing.
        checkpoint.input(on_checkpoint, checkpoint, outputs, concurrency_id="model", concurrency_limit=1)
        vae.input(on_vae, vae, outputs, concurrency_id="model", concurrency_limit=1)
        refresh.click(on_refresh, None, outputs, concurrency_id="model", concurrency_limit=1)
        demo.load(current, None, outputs)
    return demo


def page_javascript(services: Services) -> str:
    """Our keyboard shortcuts, then each extension's javascript/*.js, each in its own try block so
    one extension's error does not stop the others."""
    parts = [f"({KEYBOARD_JS.strip()})();"]
    for name, code in services.extensions.javascript():
        parts.append(f"try {{\n{code}\n}} catch (error) {{ console.error({name!r} + ' extension:', error); }}")
    return "() => {\n" + "\n".join(parts) + "\n}"


def mount_ui(app: FastAPI, services: Services) -> FastAPI:
    """Mounts the page at "/" of `app` (after the API routes, which must come first).

    Gradio serves files (`/gradio_api/file=`) from its own upload cache and from `allowed_paths`:
    only the outputs folder, never the rest of the data dir (config.json, history, caches) or
    models/. Its run-history (Hugging Face buckets) and monitoring routes are off; uploads are
    capped at --max-upload-mb; `PageGate` closes every route to a visitor who has not logged in
    (with --gradio-auth) and refuses the routes that would fetch a URL (see modules/ui/access.py).
    """
    auth = list(services.args.gradio_auth) or None
    blocks = build_ui(services)
    app = gr.mount_gradio_app(
        app, blocks, path="/", auth=auth, ssr_mode=False, css=CSS + services.extensions.css(), js=page_javascript(services),
        server_name=services.args.host, server_port=services.args.port,
        allowed_paths=[str(services.paths.outputs_dir.resolve())],
        max_file_size=int(services.args.max_upload_mb * 1e6), run_history=False, enable_monitoring=False, mcp_server=False,
    )
    page_app = next(route.app for route in app.routes if isinstance(route, Mount) and isinstance(route.app, GradioApp))
    page_app.add_middleware(PageGate, login_app=page_app if auth else None)
    return app
