"""The History tab: every saved image, newest first, searchable by prompt text, model and day; open
one to read its parameters, send them to txt2img (or it and them to img2img / inpaint), export them
as a .txt, or delete it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import gradio as gr

from modules.errors import UserError
from modules.history import HistoryRow, HistoryStore
from modules.ui.progress_view import Say, english, error_html
from modules.ui.text import L, Words

PAGE = 60


@dataclass
class HistoryTab:
    tab_search: Any  # event source that refreshes the list (the tab's select)
    selected_infotext: gr.State
    selected_path: gr.State  # the opened image's file, for "Send to img2img" / "Send to inpaint"
    send_txt2img: gr.Button
    send_img2img: gr.Button
    send_inpaint: gr.Button
    send_outpainting: gr.Button
    message: gr.HTML
    refresh: gr.Button


def day_range(text: str) -> tuple[float | None, float | None]:
    """'YYYY-MM-DD' -> [start, end) of that local day; '' -> no limit."""
    text = (text or "").strip()
    if not text:
        return None, None
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError as error:
        raise UserError(f"Write the day as YYYY-MM-DD (e.g. {datetime.now():%Y-%m-%d}), not {text!r}.") from error
    return day.timestamp(), (day + timedelta(days=1)).timestamp()


def _caption(row: HistoryRow, say: Say = english) -> str:
    return f"{datetime.fromtimestamp(row.created_at):%Y-%m-%d %H:%M} · " + say("seed {seed}", seed=row.seed)


def build_history_tab(history: HistoryStore, export_dir: Path, words: Words) -> HistoryTab:
    with gr.Row():
        text = gr.Textbox(label=L("Prompt contains"), scale=4, elem_id="history-text")
        model = gr.Textbox(label=L("Model (name or hash)"), scale=2, elem_id="history-model")
        day = gr.Textbox(label=L("Day (YYYY-MM-DD)"), scale=2, elem_id="history-day")
        search = gr.Button(L("Search"), variant="primary", scale=0, min_width=100, elem_id="history-search")
    message = gr.HTML("", elem_id="history-message")
    with gr.Row():
        with gr.Column(scale=6):
            gallery = gr.Gallery(label=L("History"), columns=6, height=520, allow_preview=False, interactive=False, elem_id="history-gallery")
        with gr.Column(scale=4):
            info = gr.HTML("", elem_id="history-info")
            with gr.Row():
                send_txt2img = gr.Button(L("Send to txt2img"), interactive=False, elem_id="history-send-txt2img")
                send_img2img = gr.Button(L("Send to img2img"), interactive=False, elem_id="history-send-img2img")
                send_inpaint = gr.Button(L("Send to inpaint"), interactive=False, elem_id="history-send-inpaint")
                send_outpainting = gr.Button(L("Send to outpainting"), interactive=False, elem_id="history-send-outpainting")
            with gr.Row():
                export = gr.Button(L("Export infotext"), interactive=False, elem_id="history-export")
                delete = gr.Button(L("Delete image"), variant="stop", interactive=False, elem_id="history-delete")
            exported = gr.File(label=L("Infotext file"), visible=False, elem_id="history-export-file")
    ids = gr.State([])
    selected = gr.State(None)
    selected_infotext = gr.State(None)
    selected_path = gr.State(None)
    buttons = 6  # send to txt2img / img2img / inpaint / outpainting, export, delete

    def rows_for(text_value: str, model_value: str, day_value: str, say: Say) -> tuple[list[HistoryRow], str]:
        since, until = day_range(day_value)
        rows = [row for row in history.search(text_value or "", model_value or "", since, until, limit=PAGE) if row.path]
        total = history.count(text_value or "", model_value or "", since, until)
        note = say("{count} image(s)", count=total) + (say("; showing the newest {count}", count=len(rows)) if total > len(rows) else "")
        return rows, note

    def on_search(text_value: str, model_value: str, day_value: str, request: gr.Request):
        say = lambda text, **values: words.say(request, text, **values)  # noqa: E731
        cleared = (gr.Button(interactive=False),) * buttons
        try:
            rows, note = rows_for(text_value, model_value, day_value, say)
        except UserError as error:
            return [], [], error_html(str(error), say), "", None, None, None, *cleared
        items = [(row.path, _caption(row, say)) for row in rows]
        return items, [row.id for row in rows], html.escape(note), "", None, None, None, *cleared

    def on_select(row_ids: list[int], event: gr.SelectData):
        row = history.get(row_ids[event.index]) if 0 <= event.index < len(row_ids) else None
        if row is None:
            return "", None, None, None, *(gr.Button(interactive=False),) * buttons
        text_html = f'<pre class="easel-infotext" id="history-infotext">{html.escape(row.params)}</pre>'
        return text_html, row.id, row.params, row.path, *(gr.Button(interactive=True),) * buttons

    def on_export(row_id: int | None):
        if row_id is None:
            return gr.File(visible=False)
        export_dir.mkdir(parents=True, exist_ok=True)
        path = export_dir / f"easel-history-{row_id}.txt"
        path.write_text(history.export_infotext(row_id), encoding="utf-8")
        return gr.File(value=str(path), visible=True)

    def on_delete(row_id: int | None, text_value: str, model_value: str, day_value: str, request: gr.Request):
        if row_id is not None:
            history.delete(row_id, delete_file=True)
        return on_search(text_value, model_value, day_value, request)

    filters = [text, model, day]
    send_buttons = [send_txt2img, send_img2img, send_inpaint, send_outpainting]
    listing = [gallery, ids, message, info, selected, selected_infotext, selected_path, *send_buttons, export, delete]
    search.click(on_search, filters, listing, show_progress="hidden")
    text.submit(on_search, filters, listing, show_progress="hidden")
    gallery.select(on_select, ids, [info, selected, selected_infotext, selected_path, *send_buttons, export, delete], show_progress="hidden")
    export.click(on_export, selected, exported, show_progress="hidden")
    delete.click(on_delete, [selected, *filters], listing, show_progress="hidden")
    return HistoryTab(tab_search=(on_search, filters, listing), selected_infotext=selected_infotext, selected_path=selected_path,
                      send_txt2img=send_txt2img, send_img2img=send_img2img, send_inpaint=send_inpaint, send_outpainting=send_outpainting,
                      message=message, refresh=search)
