"""The Settings tab: one control per setting (built from `Settings.describe()`), Apply to save.

Values are validated all together by `Services.set_options` before anything is saved; the result line
says what was saved, what applies now and what needs a restart.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, fields
from typing import Any, Callable

import gradio as gr

from modules.app.settings_control import RESTART_SETTINGS
from modules.config import Settings
from modules.errors import UserError
from modules.services import Services
from modules.ui.extensions_settings import ExtensionsSection, build_extensions_section
from modules.ui.progress_view import error_html
from modules.ui.text import L, Words

# Each language by its own name (a language Easel has no name for shows its code).
LANGUAGE_NAMES = {"en": "English", "zh-CN": "简体中文", "zh-TW": "繁體中文", "ja": "日本語", "ko": "한국어", "de": "Deutsch", "fr": "Français",
                  "es": "Español", "ru": "Русский"}

# Shown in the top row instead (switching a model is not a "setting" there).
TOP_ROW_SETTINGS = ("sd_model_checkpoint", "sd_vae")

LABELS = {
    "show_progress_type": "Live preview method",
    "show_progress_every_n_steps": "Live preview every N steps",
    "samples_save": "Save generated images",
    "api_save_images": "Save API images without save_images",
    "samples_format": "Image file format",
    "grid_save": "Save and show grids",
    "save_txt": "Write a .txt beside each image",
    "samples_filename_pattern": "File name pattern",
    "sd_checkpoint_cache": "Checkpoints kept in RAM",
    "sd_vae_checkpoint_cache": "VAEs kept in RAM",
    "sd2_prediction": "SD2 prediction type",
    "default_sampler": "Default sampler",
    "max_input_megapixels": "Largest img2img input (megapixels)",
    "img2img_fix_steps": "img2img: run exactly the steps set",
    "control_net_no_detectmap": "ControlNet: hide the control maps",
    "ad_same_seed_for_each_tab": "ADetailer: same seed for every region",
    "ad_bbox_sortby": "ADetailer: region order",
    "dp_write_raw_template": "Dynamic Prompts: write the template into pictures",
    "ESRGAN_tile": "Upscaler tile size",
    "ESRGAN_tile_overlap": "Upscaler tile overlap",
    "device": "Device",
    "dtype": "Weights dtype",
    "language": "Language",
}


def setting_label(name: str) -> str:
    """A setting's English label ("... (needs a restart)" for the ones that apply at the next start)."""
    label = LABELS.get(name, name.replace("_", " ").capitalize())
    return f"{label} (needs a restart)" if name in RESTART_SETTINGS else label


def _component(name: str, spec: dict[str, Any], value: Any, languages: list[str]) -> gr.components.Component:
    label, info = L(setting_label(name)), L(spec["description"])
    elem_id = f"setting-{name}"
    if name == "language":  # the languages there are tables for
        return gr.Dropdown(label=label, info=info, choices=[(L("auto (the browser's)"), "auto"), *((LANGUAGE_NAMES.get(code, code), code) for code in languages)],
                           value=value, elem_id=elem_id)
    if spec["choices"]:
        return gr.Dropdown(label=label, info=info, choices=[(L(choice), choice) for choice in spec["choices"]], value=value, elem_id=elem_id)
    if isinstance(spec["default"], bool):
        return gr.Checkbox(label=label, info=info, value=value, elem_id=elem_id)
    if isinstance(spec["default"], (int, float)):
        return gr.Number(label=label, info=info, value=value, precision=0 if isinstance(spec["default"], int) else None,
                         minimum=spec["min"], maximum=spec["max"], elem_id=elem_id)
    return gr.Textbox(label=label, info=info, value=value, elem_id=elem_id)


@dataclass
class SettingsTab:
    """The controls, and a function giving their saved values (the shell refreshes them on page load:
    another browser or the API may have changed them)."""

    controls: list[gr.components.Component]
    current_values: Callable[[], list[Any]]
    extensions: ExtensionsSection


def build_settings_tab(services: Services) -> SettingsTab:
    described = Settings.describe()
    controls: dict[str, gr.components.Component] = {}
    with gr.Row():
        apply = gr.Button(L("Apply settings"), variant="primary", scale=0, min_width=180, elem_id="settings-apply")
        result = gr.HTML("", elem_id="settings-result")
    with gr.Column(elem_id="settings-list"):
        for spec_field in fields(Settings):
            name = spec_field.name
            if name in TOP_ROW_SETTINGS:
                continue
            controls[name] = _component(name, described[name], getattr(services.settings, name), services.translations.languages)
    extensions = build_extensions_section(services)
    gr.Markdown(L("Settings are saved to config.json in the data folder."))
    words = Words(services.translations)

    def on_apply(values: dict[Any, Any], request: gr.Request) -> str:
        say = lambda text, **v: words.say(request, text, **v)  # noqa: E731
        current = services.settings
        changed = {}
        for name, component in controls.items():
            value = values[component]
            if isinstance(getattr(current, name), int) and not isinstance(getattr(current, name), bool) and isinstance(value, float) and value.is_integer():
                value = int(value)
            if value != getattr(current, name):
                changed[name] = value
        if not changed:
            return f'<span class="easel-settings-result">{html.escape(say("Nothing changed."))}</span>'
        try:
            services.config.apply(changed)
        except UserError as error:
            return error_html(str(error), say)
        later = [name for name in changed if name in RESTART_SETTINGS]
        saved = "; ".join(f"{say(LABELS.get(n, n))} = {say(v) if isinstance(v, str) else v}" for n, v in changed.items())
        text = say("Saved: {settings}.", settings=saved)
        if later:
            text += " " + say("Restart Easel for {settings} to take effect.", settings=", ".join(say(LABELS.get(n, n)) for n in later))
        return f'<span class="easel-settings-result">{html.escape(text)}</span>'

    def current_values() -> list:
        return [getattr(services.settings, name) for name in controls]

    apply.click(on_apply, set(controls.values()), result, show_progress="hidden")
    return SettingsTab(list(controls.values()), current_values, extensions)
