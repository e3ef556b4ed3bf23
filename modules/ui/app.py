"""The page: model selection at the top and one tab per task (placeholders until each task lands).

The handlers call `Services` only; a failed switch shows its message in the status line and puts
the dropdown back on the model that is still active.
"""

from __future__ import annotations

import html
import logging

import gradio as gr
from fastapi import FastAPI

from modules.app_services import Services
from modules.errors import UserError

log = logging.getLogger(__name__)

PLACEHOLDER_TABS = {
    "txt2img": "Text to image: prompt, sampler, size, seed and live preview. Filled by the txt2img work.",
    "img2img": "Image to image and inpainting with a painted mask. Filled by the img2img/inpaint work.",
    "Outpainting": "Extending an image beyond its borders. Filled by the outpainting work.",
    "PNG Info": "Reading the generation parameters stored in an image. Filled by the infotext work.",
    "Settings": "Every setting with its description, saved to config.json. Filled by the settings work.",
}

CSS = ".easel-status { min-height: 1.5em; }"


def status_text(services: Services, error: str | None = None) -> str:
    """One line about the active model (name, family, VAE), then the error of the last action."""
    loaded = services.manager.loaded
    if loaded is None:
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
        return gr.Dropdown(choices=services.checkpoint_titles(), value=services.active_title())

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

    with gr.Blocks(title="Easel", analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("# Easel", elem_id="easel-title")
            checkpoint = gr.Dropdown(
                label="Stable Diffusion checkpoint", choices=services.checkpoint_titles(), value=services.active_title(),
                interactive=True, scale=4, elem_id="easel-checkpoint",
            )
            vae = gr.Dropdown(
                label="SD VAE", choices=services.vae_choices(), value=services.manager.vae_choice,
                interactive=True, scale=2, elem_id="easel-vae",
            )
            refresh = gr.Button("Refresh", scale=0, min_width=100, elem_id="easel-refresh")
        status = gr.Markdown(status_text(services), elem_classes="easel-status", elem_id="easel-status")
        for name, text in PLACEHOLDER_TABS.items():
            with gr.Tab(name):
                gr.Markdown(text)
        outputs = [checkpoint, vae, status]
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
        app, build_ui(services), path="/", auth=auth, ssr_mode=False, css=CSS,
        server_name=services.args.host, server_port=services.args.port,
    )
