"""The Extensions section of Settings: every extension found, its state, a checkbox to enable it
(saved now, taking effect at the next start: the page says so), and the settings extensions added."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from modules.errors import UserError
from modules.services import Services


def status_table(services: Services) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(e.name)}</td><td>{html.escape(e.manifest.version)}</td>"
        f"<td>{html.escape(e.status)}</td><td>{html.escape(e.manifest.description)}</td></tr>"
        for e in services.extensions.extensions
    )
    if not rows:
        return f"<p>No extensions in {html.escape(str(services.args.extensions_dir))}.</p>"
    return ('<table id="extensions-table"><thead><tr><th>Extension</th><th>Version</th><th>State</th><th>About</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


@dataclass
class ExtensionsSection:
    enabled: gr.CheckboxGroup
    settings: dict[tuple[str, str], gr.components.Component]


def build_extensions_section(services: Services) -> ExtensionsSection:
    registry = services.extensions
    usable = [e.name for e in registry.extensions]
    with gr.Accordion("Extensions", open=True, elem_id="settings-extensions"):
        gr.HTML(status_table(services), elem_id="extensions-status")
        enabled = gr.CheckboxGroup(usable, value=[e.name for e in registry.extensions if e.enabled and e.name in usable],
                                   label="Enabled extensions (load at the next start of Easel)", elem_id="extensions-enabled")
        settings: dict[tuple[str, str], gr.components.Component] = {}
        for name, spec in registry.settings():
            value = _setting(services, name, spec.key)
            label = f"{name}: {spec.label}"
            elem_id = f"extension-setting-{name}-{spec.key}"
            if spec.choices:
                settings[(name, spec.key)] = gr.Dropdown(list(spec.choices), value=value, label=label, elem_id=elem_id)
            elif isinstance(spec.default, bool):
                settings[(name, spec.key)] = gr.Checkbox(value=value, label=label, elem_id=elem_id)
            else:
                settings[(name, spec.key)] = gr.Textbox(value=str(value), label=label, elem_id=elem_id)
        apply = gr.Button("Apply extension changes", elem_id="extensions-apply")
        message = gr.HTML("", elem_id="extensions-message")

    def on_apply(values: dict[Any, Any]) -> str:
        chosen = set(values[enabled] or [])
        try:
            changed = services.config.set_extensions_enabled({name: name in chosen for name in usable})
            for (name, key), component in settings.items():
                if values[component] != _setting(services, name, key):
                    services.config.set_extension_setting(name, key, values[component])
        except UserError as error:
            return f'<div class="easel-error" role="alert"><b>Error:</b> {html.escape(str(error))}</div>'
        if changed:
            return ('<span class="easel-settings-result">Saved. Restart Easel to load or unload: '
                    f"{html.escape(', '.join(changed))}.</span>")
        return '<span class="easel-settings-result">Saved.</span>'

    apply.click(on_apply, {enabled, *settings.values()}, message, show_progress="hidden")
    return ExtensionsSection(enabled, settings)


def _setting(services: Services, extension: str, key: str) -> Any:
    """The current value of a loaded extension's setting (the registry lists loaded extensions only)."""
    loaded = services.extensions.get(extension)
    assert loaded is not None and loaded.api is not None
    return loaded.api.setting(key)
