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

from modules.checkpoints.manager import VAE_AUTOMATIC, VAE_NONE
from modules.errors import UserError
from modules.services import Services
from modules.ui.access import PageGate
from modules.ui.controlnet_panel import MODEL_CLASS as CONTROLNET_MODEL_CLASS
from modules.ui.controlnet_panel import model_choices as controlnet_model_choices
from modules.ui.detailer_panel import MODEL_CLASS as DETAILER_MODEL_CLASS
from modules.ui.detailer_panel import model_choices as detailer_model_choices
from modules.ui.extras_tab import build_extras_tab
from modules.ui.history_tab import build_history_tab
from modules.ui.img2img import IMG2IMG_CSS, build_img2img_tab
from modules.ui.merger_tab import build_merger_tab
from modules.ui.outpainting import OUTPAINT_CSS, build_outpainting_tab
from modules.ui.page_script import page_parts
from modules.ui.png_info import build_png_info_tab
from modules.ui.progress_view import PROGRESS_CSS
from modules.ui.send_to import ModelLine, SendSource, SendWiring
from modules.ui.sessions import SessionRuns
from modules.ui.settings_tab import build_settings_tab
from modules.ui.text import L, Words
from modules.ui.txt2img import build_txt2img_tab
from modules.ui.upscaler_lists import UPSCALER_CLASS, refreshed

log = logging.getLogger(__name__)
VAE_MODES = (VAE_AUTOMATIC, VAE_NONE)  # translated in the dropdown; file names are not

CSS = ".easel-status { min-height: 1.5em; }\n.easel-tokens { font-variant-numeric: tabular-nums; opacity: .8; }\n" \
      ".easel-tokens[data-over] { color: var(--error-text-color, #b91c1c); }\n" \
      ".easel-infotext { white-space: pre-wrap; word-break: break-word; font-size: .85em; margin: 0; }\n" \
      ".easel-restore-notice { border: 1px solid var(--color-accent); border-radius: 6px; padding: .4em .8em; font-size: .9em; }\n" \
      ".easel-restore-notice ul { margin: .2em 0 0 1.2em; }\n" + PROGRESS_CSS + IMG2IMG_CSS + OUTPAINT_CSS

LAYOUT_CSS = """
/* The prompt row as A1111's: prompts on the left, the big Generate and the tools on the right. */
.easel-toprow { align-items: stretch; }
.easel-prompt-line { flex-wrap: nowrap !important; align-items: flex-start; }
.easel-tool-button { min-width: 36px !important; max-width: 48px; padding: 0 !important; }
.easel-style-row { align-items: center; }
.easel-topbar { align-items: center; gap: .5em; }
.easel-topbar .form { border-width: 0 !important; box-shadow: none !important; }
.easel-topbar .block { padding: 2px 8px !important; }
.easel-topbar .block label > span:first-child, .easel-topbar .block .container > span:first-child { font-size: .8em; margin-bottom: 1px; }
.easel-brand { font-size: 1.6em; font-weight: 700; padding: 0 .3em; }
.easel-status { font-size: .85em; margin: 0 !important; padding: 0 .3em !important; }
.easel-status p { margin: .1em 0 !important; }
.easel-toprow { gap: .6em; }
.easel-prompts { gap: .4em !important; }
.easel-send-row button { white-space: nowrap; }
.easel-stage { display: grid !important; }
.easel-stage > * { grid-area: 1 / 1; }
.easel-stage > .easel-preview { z-index: 1; }
"""


def status_text(services: Services, words: Words, request: gr.Request | None = None, error: str | None = None) -> str:
    """One line about the active model (name, family, VAE), then the error of the last action."""
    say = lambda text, **values: words.say(request, text, **values)  # noqa: E731
    loaded = services.manager.loaded
    waiting = services.models.startup_title() if loaded is None else None
    if loaded is None and waiting is not None:
        line = say("**{name}** loads with the first generation (or when picked above).", name=html.escape(waiting))
    elif loaded is None:
        line = say("No model loaded. Put a checkpoint in {folder} and press Refresh.", folder=html.escape(str(services.paths.checkpoints_dir)))
    else:
        vae = html.escape(loaded.vae.name) if loaded.vae is not None else say("its own")
        line = say("Active: **{title}** · {family} · VAE: {vae} ({choice})", title=html.escape(services.registry.title(loaded.checkpoint)),
                   family=html.escape(loaded.spec.family.label), vae=vae, choice=html.escape(say(services.manager.vae_choice)))
    if error:
        line += f"\n\n**{html.escape(say('Error:'))}** {html.escape(say(error))}"
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
    words = Words(services.translations)

    def checkpoint_dropdown() -> gr.Dropdown:
        return gr.Dropdown(choices=services.models.checkpoint_choices(), value=services.models.startup_name())

    def vae_choices() -> list:
        return [(L(choice), choice) if choice in VAE_MODES else choice for choice in services.models.vae_choices()]

    def vae_dropdown() -> gr.Dropdown:
        return gr.Dropdown(choices=vae_choices(), value=services.manager.vae_choice)

    def current(error: str | None = None, request: gr.Request | None = None):
        return checkpoint_dropdown(), vae_dropdown(), status_text(services, words, request, error)

    def on_checkpoint(title: str | None, request: gr.Request):
        return current(_run(services.models.switch_checkpoint, title) if title else None, request)

    def on_vae(choice: str | None, request: gr.Request):
        return current(_run(services.models.switch_vae, choice) if choice else None, request)

    def on_refresh(request: gr.Request):
        return current(_run(services.models.refresh), request)

    def on_load(request: gr.Request):
        return current(None, request)

    txt2img_runs, img2img_runs, outpaint_runs = SessionRuns(), SessionRuns(), SessionRuns()  # each tab's jobs and outcomes per session
    with gr.Blocks(title="Easel", analytics_enabled=False) as demo:
        with gr.Row(equal_height=True, elem_classes="easel-topbar"):
            gr.HTML('<div class="easel-brand">Easel</div>', elem_id="easel-title", padding=False, container=False, min_width=90)
            checkpoint = gr.Dropdown(
                label=L("Stable Diffusion checkpoint"), choices=services.models.checkpoint_choices(), value=services.models.startup_name(),
                interactive=True, scale=4, elem_id="easel-checkpoint",
            )
            vae = gr.Dropdown(label=L("SD VAE"), choices=vae_choices(), value=services.manager.vae_choice, interactive=True, scale=2,
                              elem_id="easel-vae")
            refresh = gr.Button("🔄", scale=0, min_width=48, elem_id="easel-refresh", elem_classes="easel-tool-button")
        status = gr.Markdown(status_text(services, words), elem_classes="easel-status", elem_id="easel-status")
        with gr.Tabs(elem_id="easel-tabs"):
            with gr.Tab(L("txt2img"), id="txt2img", elem_id="tab-txt2img"):
                txt2img = build_txt2img_tab(services, txt2img_runs)
            with gr.Tab(L("img2img"), id="img2img", elem_id="tab-img2img"):
                img2img = build_img2img_tab(services, img2img_runs)
            with gr.Tab(L("Outpainting"), id="Outpainting", elem_id="tab-outpainting"):
                outpainting = build_outpainting_tab(services, outpaint_runs)
            with gr.Tab(L("Extras"), id="Extras", elem_id="tab-extras"):
                extras = build_extras_tab(services, words)
            with gr.Tab(L("PNG Info"), id="PNG Info", elem_id="tab-png-info"):
                png_info = build_png_info_tab(lambda: services.settings.max_input_megapixels, words)
            with gr.Tab(L("Checkpoint Merger"), id="Checkpoint Merger", elem_id="tab-merger"):
                build_merger_tab(services, words, checkpoint)
            with gr.Tab(L("History"), id="History", elem_id="tab-history") as history_tab_item:
                history = build_history_tab(services.history, services.paths.data_dir / "exports", words)
            for extension, tab in services.extensions.tabs():
                with gr.Tab(L(tab.title), elem_id=f"tab-ext-{extension}"):
                    services.extensions.guarded(extension, f"its tab {tab.title!r}", tab.build, services)
            with gr.Tab(L("Settings"), id="Settings", elem_id="tab-settings"):
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
        sending.wire_saved_image(SendSource({"img2img": extras.send_img2img, "inpaint": extras.send_inpaint}, extras.infotext,
                                            extras.image_path, extras.message))
        history_buttons = {"txt2img": history.send_txt2img, "img2img": history.send_img2img, "inpaint": history.send_inpaint,
                           "outpainting": history.send_outpainting}
        sending.wire_saved_image(SendSource(history_buttons, history.selected_infotext, history.selected_path, history.message))
        demo.load(settings_tab.current_values, None, settings_tab.controls)
        demo.load(settings_tab.extensions.status_html, None, settings_tab.extensions.status, show_progress="hidden")
        outputs = [checkpoint, vae, status]
        history_tab_item.select(*history.tab_search, show_progress="hidden")
        for event in [*txt2img.generations, *img2img.generations, *outpainting.generations]:  # the first generation may have loaded the model
            event.then(current, None, outputs, show_progress="hidden")
        # `.input` (not `.change`) so that putting the dropdown back after a failure fires nothing.
        checkpoint.input(on_checkpoint, checkpoint, outputs, concurrency_id="model", concurrency_limit=1)
        vae.input(on_vae, vae, outputs, concurrency_id="model", concurrency_limit=1)
        refresh.click(on_refresh, None, outputs, concurrency_id="model", concurrency_limit=1)
        demo.load(on_load, None, outputs)
        upscaler_dropdowns = [block for block in demo.blocks.values()
                              if isinstance(block, gr.Dropdown) and UPSCALER_CLASS in (block.elem_classes or [])]

        def on_upscalers(*chosen: str) -> list:
            """Model files added since the page was built show up at the next load and on 🔄."""
            names = services.upscalers.names()
            return [refreshed(dropdown, names, value) for dropdown, value in zip(upscaler_dropdowns, chosen)]

        demo.load(on_upscalers, upscaler_dropdowns, upscaler_dropdowns, show_progress="hidden")
        refresh.click(on_upscalers, upscaler_dropdowns, upscaler_dropdowns, show_progress="hidden")
        controlnet_models = [block for block in demo.blocks.values()
                             if isinstance(block, gr.Dropdown) and CONTROLNET_MODEL_CLASS in (block.elem_classes or [])]

        def on_controlnet_models(*chosen: str) -> list:
            choices = controlnet_model_choices(services)
            titles = services.controlnets.catalog.titles()
            return [gr.Dropdown(choices=choices, value=value if value in titles else "None") for value in chosen]

        demo.load(on_controlnet_models, controlnet_models, controlnet_models, show_progress="hidden")
        refresh.click(on_controlnet_models, controlnet_models, controlnet_models, show_progress="hidden")
        detector_lists = [block for block in demo.blocks.values()
                          if isinstance(block, gr.Dropdown) and DETAILER_MODEL_CLASS in (block.elem_classes or [])]

        def on_detectors(*chosen: str) -> list:
            return [gr.Dropdown(choices=detailer_model_choices(services), value=value) for value in chosen]

        demo.load(on_detectors, detector_lists, detector_lists, show_progress="hidden")
        refresh.click(on_detectors, detector_lists, detector_lists, show_progress="hidden")
    return demo


def page_javascript(services: Services) -> str:
    """Our script (modules/ui/page_script.py), then each extension's javascript/*.js, each in its
    own try block so one part's error does not stop the others."""
    parts = [f"try {{ ({part.strip()})(); }} catch (error) {{ console.error('Easel:', error); }}" for part in page_parts(services.translations)]
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
        app, blocks, path="/", auth=auth, ssr_mode=False, css=CSS + LAYOUT_CSS + services.extensions.css(), js=page_javascript(services),
        i18n=Words(services.translations).gradio_i18n(),
        server_name=services.args.host, server_port=services.args.port,
        allowed_paths=[str(services.paths.outputs_dir.resolve())],
        max_file_size=int(services.args.max_upload_mb * 1e6), run_history=False, enable_monitoring=False, mcp_server=False,
    )
    page_app = next(route.app for route in app.routes if isinstance(route, Mount) and isinstance(route.app, GradioApp))
    page_app.add_middleware(PageGate, login_app=page_app if auth else None)
    return app
