"""The page's words in the user's language (modules/i18n.py holds the tables).

- Static texts (labels, buttons, tabs, tooltips under a label, choices) are written `L("Sampling
  method")`: Gradio's i18n translates them in the browser, following its language (or the forced
  one: then every locale gets that table).
- Sentences Python makes while the page runs (progress, notices, errors, the status line) go through
  `Words.say(request, "...")`, which translates them for the caller's language: the page keeps
  its language in the `easel-language` cookie (LANGUAGE_JS), else the request's Accept-Language.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
from gradio.i18n import I18nData

from modules.i18n import COOKIE, ENGLISH, Translations

# Gradio's own keys some of its bundled locales lack (its status tracker announces "common.complete" to screen
# readers): the English given here, translated through the tables like every other text.
GRADIO_GAPS = {"common.complete": "Done", "common.download_all": "Download All",
               # the image editor's tools (the regional mask canvas), missing from Gradio's Chinese table
               "image_editor.brush": "Brush", "image_editor.brush_size": "Brush Size", "image_editor.clear_canvas": "Clear canvas",
               "image_editor.color": "Color", "image_editor.erase": "Erase", "image_editor.eraser_size": "Eraser Size",
               "image_editor.pan": "Pan", "image_editor.paste": "Paste", "image_editor.redo": "Redo", "image_editor.zoom_in": "Zoom in",
               "image_editor.zoom_out": "Zoom out", "image_editor.upload": "Upload", "image_editor.upload_image": "Upload an image",
               "image_editor.select_draw_tool": "select the draw tool to start"}


def L(text: str) -> Any:
    """A static English text, translated by the page (typed Any: Gradio takes it where a str goes)."""
    return I18nData(text)


class Words:
    """Translates run-time sentences for the request that asked."""

    def __init__(self, translations: Translations):
        self.translations = translations

    def language(self, request: gr.Request | None) -> str:
        if request is None:
            return self.translations.forced or ENGLISH
        cookies = getattr(request, "cookies", None) or {}
        headers = getattr(request, "headers", None) or {}
        return self.translations.language_for(cookies.get(COOKIE), headers.get("accept-language"))

    def say(self, request: gr.Request | None, text: str, **values: Any) -> str:
        """`text` (a template when `values` are given) in the caller's language, values filled in."""
        translated = self.translations.text(text, self.language(request))
        return translated.format(**values) if values else translated

    def html(self, request: gr.Request | None, text: str, **values: Any) -> str:
        """`say`, escaped for an HTML component (values escaped too)."""
        return html.escape(self.say(request, text, **{k: v for k, v in values.items()}))

    def gradio_i18n(self) -> gr.I18n:
        """The tables for Gradio's page: each language's, or the forced language's under every locale."""
        tables = {language: table.texts for language, table in self.translations.tables.items()}
        gaps = lambda language: {key: self.translations.text(english, language) for key, english in GRADIO_GAPS.items()}  # noqa: E731
        forced = self.translations.forced
        if forced is not None and forced != ENGLISH:
            chosen = {**tables.get(forced, {}), **gaps(forced)}
            return gr.I18n(**{locale: chosen for locale in (ENGLISH, *tables)})
        if forced == ENGLISH:
            return gr.I18n(**{locale: gaps(ENGLISH) for locale in (ENGLISH, *tables)})
        return gr.I18n(**{ENGLISH: gaps(ENGLISH)}, **{language: {**texts, **gaps(language)} for language, texts in tables.items()})


# Keeps the easel-language cookie equal to the page's language (Gradio sets <html lang> to the
# locale it shows: the browser's, or the one picked in its settings), so run-time sentences match.
LANGUAGE_JS = f"""
() => {{
  const store = () => {{
    const lang = document.documentElement.lang || navigator.language || 'en';
    document.cookie = '{COOKIE}=' + encodeURIComponent(lang) + '; path=/; SameSite=Lax; max-age=31536000';
  }};
  store();
  new MutationObserver(store).observe(document.documentElement, {{attributes: true, attributeFilter: ['lang']}});
}}
"""
