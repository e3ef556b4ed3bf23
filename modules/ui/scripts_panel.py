"""The extensions' scripts in a generation tab: each always-on script as an accordion of its
controls, and the "Script" dropdown with the controls of the selected one below it.

Controls are declared by the extensions as data (modules/extensions/api.py) and built here; their
values reach the request as `script_values` (always-on) or the chosen script's job, typed and
checked by `Control.convert`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import gradio as gr

from modules.errors import UserError
from modules.extensions.api import Control, Script
from modules.extensions.registry import ExtensionRegistry
from modules.ui.text import L
from modules.ui.upscaler_lists import UPSCALER_CLASS, upscaler_choices

NONE = "None"


def build_control(control: Control, elem_id: str, upscalers: list[str] | None = None) -> gr.components.Component:
    info = L(control.tooltip) if control.tooltip else None
    if control.kind == "note":
        return gr.Markdown(L(control.label), elem_id=elem_id)
    if control.kind == "upscaler":
        names = upscalers or ["None", "Lanczos", "Nearest"]
        return gr.Dropdown(upscaler_choices(names), value=control.default if control.default in names else names[0],
                           label=L(control.label), info=info, elem_id=elem_id, elem_classes=UPSCALER_CLASS)
    if control.kind == "slider":
        low, high = control.minimum if control.minimum is not None else 0, control.maximum if control.maximum is not None else 100  # gradio's own defaults
        return gr.Slider(low, high, value=control.default, step=control.step, label=L(control.label), info=info, elem_id=elem_id)
    if control.kind == "number":
        return gr.Number(value=control.default, label=L(control.label), info=info, elem_id=elem_id)
    if control.kind == "checkbox":
        return gr.Checkbox(value=control.default, label=L(control.label), info=info, elem_id=elem_id)
    if control.kind == "dropdown":
        return gr.Dropdown([(L(choice), choice) for choice in control.choices or ()], value=control.default, label=L(control.label), info=info, elem_id=elem_id)
    return gr.Textbox(value=control.default, label=L(control.label), info=info, lines=control.lines, elem_id=elem_id)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


@dataclass
class ScriptsPanel:
    always_on: dict[str, tuple[Script, dict[str, gr.components.Component]]] = field(default_factory=dict)
    selectable: dict[str, tuple[Script, dict[str, gr.components.Component]]] = field(default_factory=dict)
    selector: gr.Dropdown | None = None

    def components(self) -> set:
        found = {c for _, controls in [*self.always_on.values(), *self.selectable.values()] for c in controls.values()}
        return found | ({self.selector} if self.selector is not None else set())

    def apply(self, values: dict[Any, Any], request: Any) -> tuple[Any, tuple[Script, dict[str, Any]] | None]:
        """The request with the always-on scripts' values, and the selected script with its values
        (None: a plain job). A bad value is a UserError naming the control."""
        script_values = {name: self._values(script, controls, values) for name, (script, controls) in self.always_on.items()}
        if script_values:
            request = replace(request, script_values=script_values)
        chosen = values.get(self.selector) if self.selector is not None else None
        if not chosen or chosen == NONE:
            return request, None
        script, controls = self.selectable[chosen]
        return request, (script, self._values(script, controls, values))

    @staticmethod
    def _values(script: Script, controls: dict[str, gr.components.Component], values: dict[Any, Any]) -> dict[str, Any]:
        try:
            return script.values_from({name: values[component] for name, component in controls.items()})
        except ValueError as error:
            raise UserError(f"{script.title}: {error}.") from error


def build_scripts_panel(registry: ExtensionRegistry, tab: str, prefix: str, upscalers: list[str] | None = None) -> ScriptsPanel:
    panel = ScriptsPanel()
    always_on = registry.scripts(tab, always_on=True)
    if always_on:
        with gr.Column(elem_id=f"{prefix}-always-on"):  # the "extensions" section (modules/ui/sections.py)
            for script in always_on:
                with gr.Accordion(L(script.title), open=False, elem_id=f"{prefix}-script-{_slug(script.title)}"):
                    controls = {c.name: build_control(c, f"{prefix}-{_slug(script.title)}-{_slug(c.name)}", upscalers) for c in script.controls}
                panel.always_on[script.name] = (script, controls)
    selectable = registry.scripts(tab, always_on=False)
    if not selectable:
        return panel
    panel.selector = gr.Dropdown([(L(NONE), NONE), *((L(s.title), s.title) for s in selectable)], value=NONE, label=L("Script"), elem_id=f"{prefix}-script")
    groups = []
    for script in selectable:
        with gr.Group(visible=False, elem_id=f"{prefix}-script-{_slug(script.title)}") as group:
            controls = {c.name: build_control(c, f"{prefix}-{_slug(script.title)}-{_slug(c.name)}", upscalers) for c in script.controls}
        panel.selectable[script.title] = (script, controls)
        groups.append((script.title, group))

    def show(chosen: str) -> list:
        return [gr.Group(visible=title == chosen) for title, _ in groups]

    panel.selector.change(show, panel.selector, [group for _, group in groups], show_progress="hidden")
    return panel
