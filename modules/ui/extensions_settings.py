"""The Extensions section of Settings: every extension found, its state, a checkbox to enable it
(saved now, taking effect at the next start: the page says so), and the settings extensions added."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from modules.errors import UserError
from modules.services import Services
from modules.ui.progress_view import Say, english, error_html
from modules.ui.text import L, Words


def status_table(services: Services, say: Say = english) -> str:
    """Every extension with its version, state and description (the state in the user's language)."""
    rows = "".join(
        f"<tr><td>{html.escape(e.name)}</td><td>{html.escape(e.manifest.version)}</td>"
        f"<td>{html.escape(say(e.status))}</td><td>{html.escape(say(e.manifest.description))}</td></tr>"
        for e in services.extensions.extensions
    )
    if not rows:
        return f"<p>{html.escape(say('No extensions in {folder}.', folder=str(services.args.extensions_dir)))}</p>"
    head = "".join(f"<th>{html.escape(title)}</th>" for title in (say("Extension"), say("Version"), say("State"), say("About")))
    return f'<table id="extensions-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


@dataclass
class ExtensionsSection:
    enabled: gr.CheckboxGroup
    settings: dict[tuple[str, str], gr.components.Component]
    status: gr.HTML
    status_html: Callable[[gr.Request], str]  # the table in the request's language (on page load)


def build_extensions_section(services: Services) -> ExtensionsSection:
    registry = services.extensions
    usable = [e.name for e in registry.extensions]
    words = Words(services.translations)
    with gr.Accordion(L("Extensions"), open=True, elem_id="settings-extensions"):
        status = gr.HTML(status_table(services), elem_id="extensions-status")
        enabled = gr.CheckboxGroup(usable, value=[e.name for e in registry.extensions if e.enabled and e.name in usable],
                                   label=L("Enabled extensions (load at the next start of Easel)"), elem_id="extensions-enabled")
        settings: dict[tuple[str, str], gr.components.Component] = {}
        for name, spec in registry.settings():
            value = _setting(services, name, spec.key)
            label, info = L(spec.label), name  # the extension's own label; its name under it
            elem_id = f"extension-setting-{name}-{spec.key}"
            if spec.choices:
                settings[(name, spec.key)] = gr.Dropdown([(L(choice), choice) for choice in spec.choices], value=value, label=label, info=info, elem_id=elem_id)
            elif isinstance(spec.default, bool):
                settings[(name, spec.key)] = gr.Checkbox(value=value, label=label, info=info, elem_id=elem_id)
            else:
                settings[(name, spec.key)] = gr.Textbox(value=str(value), label=label, info=info, elem_id=elem_id)
        apply = gr.Button(L("Apply extension changes"), elem_id="extensions-apply")
        message = gr.HTML("", elem_id="extensions-message")

    def on_apply(values: dict[Any, Any], request: gr.Request) -> str:
        say = lambda text, **v: words.say(request, text, **v)  # noqa: E731
        chosen = set(values[enabled] or [])
        try:
            changed = services.config.set_extensions_enabled({name: name in chosen for name in usable})
            for (name, key), component in settings.items():
                if values[component] != _setting(services, name, key):
                    services.config.set_extension_setting(name, key, values[component])
        except UserError as error:
            return error_html(str(error), say)
        if changed:
            return f'<span class="easel-settings-result">{html.escape(say("Saved. Restart Easel to load or unload: {names}.", names=", ".join(changed)))}</span>'
        return f'<span class="easel-settings-result">{html.escape(say("Saved."))}</span>'

    apply.click(on_apply, {enabled, *settings.values()}, message, show_progress="hidden")
    def status_html(request: gr.Request) -> str:
        return status_table(services, lambda text, **v: words.say(request, text, **v))

    return ExtensionsSection(enabled, settings, status, status_html)


def _setting(services: Services, extension: str, key: str) -> Any:
    """The current value of a loaded extension's setting (the registry lists loaded extensions only)."""
    loaded = services.extensions.get(extension)
    assert loaded is not None and loaded.api is not None
    return loaded.api.setting(key)
