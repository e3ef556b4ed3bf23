"""The "Extra networks" panel under a generation tab's prompt: a card per textual-inversion
embedding and per LoRA (the picture beside its file when there is one, else a card with its name);
clicking a card adds its trigger word or `<lora:name:1>` tag to the prompt. Refresh rescans the
folders (Services.refresh)."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass

import gradio as gr
from PIL import Image, ImageDraw, ImageFont

from modules.app.models import ExtraNetwork
from modules.errors import UserError
from modules.services import Services
from modules.ui.progress_view import Say, english, error_html
from modules.ui.text import L, Words

log = logging.getLogger(__name__)

CARD = (160, 200)
COLOURS = {"embedding": (46, 87, 140), "lora": (122, 56, 130)}


def name_card(entry: ExtraNetwork) -> Image.Image:
    """A card for an entry with no preview picture: its kind and name on a coloured ground."""
    card = Image.new("RGB", CARD, COLOURS.get(entry.kind, (80, 80, 80)))
    draw = ImageDraw.Draw(card)
    font = ImageFont.load_default(size=16)
    small = ImageFont.load_default(size=12)
    draw.text((10, 10), "Embedding" if entry.kind == "embedding" else "LoRA", font=small, fill=(220, 220, 220))  # drawn into the card picture
    line, lines = "", []
    for char in entry.name:
        if draw.textlength(line + char, font=font) > CARD[0] - 20:
            lines.append(line)
            line = ""
        line += char
    lines.append(line)
    for index, text in enumerate(lines[:6]):
        draw.text((10, 60 + index * 20), text, font=font, fill=(255, 255, 255))
    return card


def card_image(entry: ExtraNetwork) -> Image.Image:
    if entry.preview is not None:
        try:
            with Image.open(entry.preview) as picture:
                picture.thumbnail(CARD)
                return picture.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            log.warning("Preview %s not shown: %s", entry.preview, error)
    return name_card(entry)


def insert_tag(prompt: str, tag: str) -> str:
    """`tag` added at the end of `prompt` (after ", " when the prompt does not end in a separator);
    a tag already there is not added twice."""
    prompt = prompt or ""
    if tag in prompt:
        return prompt
    if not prompt.strip():
        return tag
    return prompt + ("" if prompt.rstrip().endswith(",") else ",") + " " + tag


@dataclass
class ExtraNetworksPanel:
    gallery: gr.Gallery
    entries: gr.State


def build_extra_networks(services: Services, prefix: str, prompt: gr.Textbox) -> ExtraNetworksPanel:
    words = Words(services.translations)

    def listing(say: Say = english) -> tuple[list, list[ExtraNetwork], str]:
        entries = services.models.extra_networks()
        items = [(card_image(e), f"{e.name} [{e.short_hash}]" if e.short_hash else e.name) for e in entries]
        note = "" if entries else say("No embeddings in {embeddings} and no LoRAs in {loras}.", embeddings=str(services.paths.embeddings_dir),
                                      loras=str(services.paths.loras_dir))
        return items, entries, html.escape(note)

    items, entries, _ = listing()
    with gr.Accordion(L("Extra networks (embeddings, LoRAs, hypernetworks)"), open=False, elem_id=f"{prefix}-extra-networks"):
        with gr.Row():
            message = gr.HTML(L("No embeddings or LoRAs yet: put files in models/embeddings and models/Lora, then refresh.") if not entries else "",
                              elem_id=f"{prefix}-extra-networks-message")
            refresh = gr.Button("🔄", size="sm", scale=0, min_width=48, elem_id=f"{prefix}-extra-networks-refresh", elem_classes="easel-tool-button")
        gallery = gr.Gallery(items, columns=6, height=260, allow_preview=False, show_label=False, interactive=False,
                             elem_id=f"{prefix}-extra-networks-cards")
    state = gr.State(entries)

    def on_click(text: str, shown: list[ExtraNetwork], event: gr.SelectData) -> str:
        if not 0 <= event.index < len(shown):
            return text
        return insert_tag(text, shown[event.index].tag)

    def on_refresh_networks(request: gr.Request):
        say = lambda text, **v: words.say(request, text, **v)  # noqa: E731
        try:
            services.models.refresh()
        except UserError as error:
            return gr.skip(), gr.skip(), error_html(str(error), say)
        return listing(say)

    gallery.select(on_click, [prompt, state], prompt, show_progress="hidden")
    refresh.click(on_refresh_networks, None, [gallery, state, message], show_progress="hidden")
    return ExtraNetworksPanel(gallery, state)
