"""The Dynamic Prompts section of txt2img and img2img: the prompt box holds the template (`{red|blue}`,
`__wildcard__`), as in the extension; this section turns it on, chooses random or combinatorial mode
and the seed rules, previews the prompts a template gives before generating, and lists the wildcard
files (`<data-dir>/wildcards`, `extensions/*/wildcards`) with their entries and a button that puts
`__name__` into the prompt."""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

from modules.app.dynamic_jobs import expansion
from modules.errors import UserError
from modules.generation.request import GenerationRequest
from modules.prompts.dynamic import DynamicRequest
from modules.services import Services
from modules.ui.progress_view import error_html
from modules.ui.text import L, Words

PREVIEW_LINES = 50


@dataclass
class DynamicPanel:
    enabled: gr.Checkbox
    combinatorial: gr.Checkbox
    batches: gr.Slider
    max_generations: gr.Slider
    fixed_seed: gr.Checkbox
    unlink_seed: gr.Checkbox

    def components(self) -> set:
        return {self.enabled, self.combinatorial, self.batches, self.max_generations, self.fixed_seed, self.unlink_seed}

    def settings(self, values: dict[Any, Any]) -> DynamicRequest:
        return DynamicRequest(enabled=True, combinatorial=bool(values.get(self.combinatorial)),
                              combinatorial_batches=int(values.get(self.batches) or 1), max_generations=int(values.get(self.max_generations) or 0),
                              use_fixed_seed=bool(values.get(self.fixed_seed)), unlink_seed_from_prompt=bool(values.get(self.unlink_seed)))

    def apply(self, values: dict[Any, Any], request: Any) -> Any:
        """The request with its prompt read as a template (unchanged when the section is off)."""
        return replace(request, dynamic=self.settings(values)) if values.get(self.enabled) else request


def _preview_html(prompts: list[str], notes: list[str], say: Any) -> str:
    shown = "".join(f"<li><code>{html.escape(p)}</code></li>" for p in prompts[:PREVIEW_LINES])
    more = say("…and {count} more.", count=len(prompts) - PREVIEW_LINES) if len(prompts) > PREVIEW_LINES else ""
    title = say("{count} prompt(s):", count=len(prompts))
    extra = "".join(f"<p>{html.escape(say(note))}</p>" for note in notes)
    return f'<div class="easel-dynamic-preview"><b>{html.escape(title)}</b><ol>{shown}</ol>{html.escape(more)}{extra}</div>'


def build_dynamic_panel(services: Services, prefix: str, prompt: gr.Textbox, seed: gr.components.Component, batch_count: gr.Slider,
                        batch_size: gr.Slider) -> DynamicPanel:
    words = Words(services.translations)
    with gr.Accordion(L("Dynamic Prompts"), open=False, elem_id=f"{prefix}-dynamic-prompts"):
        with gr.Row():
            enabled = gr.Checkbox(value=False, label=L("Read the prompt as a template"), elem_id=f"{prefix}-dynamic-enable",
                                  info=L("Variants in braces pick one each, a wildcard picks a line of its file; each picture gets its own prompt."))
            combinatorial = gr.Checkbox(value=False, label=L("Combinatorial generation"), elem_id=f"{prefix}-dynamic-combinatorial",
                                        info=L("One picture per combination instead of random picks."))
        with gr.Row():
            batches = gr.Slider(1, 10, value=1, step=1, label=L("Combinatorial batches"), elem_id=f"{prefix}-dynamic-batches",
                                info=L("How many times every combination is made."))
            max_generations = gr.Slider(0, 1000, value=0, step=1, label=L("Max generations (0 = all combinations)"),
                                        elem_id=f"{prefix}-dynamic-max", info=L("Stop after this many combinations per batch."))
        with gr.Row():
            fixed_seed = gr.Checkbox(value=False, label=L("Fixed seed"), elem_id=f"{prefix}-dynamic-fixed-seed",
                                     info=L("Every picture gets the first seed (random mode then repeats one prompt)."))
            unlink_seed = gr.Checkbox(value=False, label=L("Unlink seed from prompt"), elem_id=f"{prefix}-dynamic-unlink",
                                      info=L("Pick variants at random, apart from the pictures' seeds."))
        preview_button = gr.Button(L("Preview prompts"), elem_id=f"{prefix}-dynamic-preview-button", size="sm")
        preview = gr.HTML("", elem_id=f"{prefix}-dynamic-preview")
        with gr.Accordion(L("Wildcards"), open=False):
            files = gr.Dropdown([item.name for item in services.wildcards.files()], value=None, label=L("Wildcard file"), elem_id=f"{prefix}-dynamic-wildcard",
                                info=L("The files in the wildcards folders; pick one to see its entries."))
            with gr.Row():
                insert = gr.Button(L("Insert into the prompt"), elem_id=f"{prefix}-dynamic-insert", size="sm")
                refresh = gr.Button(L("Refresh"), elem_id=f"{prefix}-dynamic-refresh", size="sm")
            entries = gr.HTML("", elem_id=f"{prefix}-dynamic-entries")
    panel = DynamicPanel(enabled, combinatorial, batches, max_generations, fixed_seed, unlink_seed)

    def say_for(request: gr.Request) -> Any:
        return lambda text, **values: words.say(request, text, **values)

    def on_template_preview(template: str, seed_value: Any, count: float, size: float, combinatorial_value: bool, batches_value: float,
                   max_value: float, fixed: bool, unlinked: bool, request: gr.Request) -> str:
        flags = (combinatorial_value, batches_value, max_value, fixed, unlinked)
        values = dict(zip([combinatorial, batches, max_generations, fixed_seed, unlink_seed], flags))
        job = GenerationRequest(prompt=template or "", seed=int(seed_value) if str(seed_value).lstrip("-").isdigit() else -1,
                                batch_size=int(size or 1), n_iter=int(count or 1), dynamic=panel.settings(values))
        try:
            planned = expansion(job, services.wildcards)
        except UserError as error:
            return error_html(str(error), say_for(request))
        return _preview_html(planned.prompts, planned.notes, say_for(request))

    def on_wildcards_refresh() -> gr.Dropdown:
        services.wildcards.refresh()
        return gr.Dropdown(choices=[item.name for item in services.wildcards.files()])

    def on_wildcard_pick(name: str | None, request: gr.Request) -> str:
        if not name:
            return ""
        try:
            lines = services.wildcards.entries(name)
        except UserError as error:
            return error_html(str(error), say_for(request))
        return _preview_html(lines, [], say_for(request))

    def on_wildcard_insert(template: str, name: str | None) -> str:
        if not name:
            return template
        token = name if name.startswith("__") else f"__{name}__"
        return f"{template.rstrip()} {token}".strip()

    preview_button.click(on_template_preview, [prompt, seed, batch_count, batch_size, combinatorial, batches, max_generations, fixed_seed, unlink_seed],
                         preview, show_progress="hidden")
    refresh.click(on_wildcards_refresh, None, files, show_progress="hidden")
    files.change(on_wildcard_pick, files, entries, show_progress="hidden")
    insert.click(on_wildcard_insert, [prompt, files], prompt, show_progress="hidden")
    return panel
