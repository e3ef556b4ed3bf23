"""The "Send to ..." buttons: a picture, and the parameters of its infotext, go from one tab to another.

- txt2img's gallery -> img2img / inpaint / Outpainting: the selected image and its parameters
  (prompt, seed, sampler, steps, CFG...; img2img takes the image's own size).
- img2img's and Outpainting's galleries -> img2img / inpaint: the selected image, to iterate on
  it; -> Outpainting: the image and its parameters (an outpainted one's outpaint settings too, so
  outpainting it again starts from them).
- PNG Info and History -> txt2img: the parameters; -> img2img / inpaint / Outpainting: the image
  and its parameters. These also switch to the checkpoint the image names (by hash, then name) and say in
  the source tab's message line what they could not do.

The tabs are switched in the browser, by clicking their buttons as a person would (as A1111 does):
a `gr.Tabs(selected=...)` sent from the server stays the Tabs' value, and Gradio puts it back the
next time a tab's hidden children render, which threw people back to img2img after they had moved
on. The script also waits for the receiving component to be drawn before the picture is sent (the
img2img sub-tabs render their contents only when first shown).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr
from PIL import Image

from modules.app_services import Services
from modules.infotext.parse import parse_infotext, request_fields
from modules.ui.hires_fix import hires_display_values
from modules.ui.img2img import Img2ImgTab, display_values
from modules.ui.outpainting import OutpaintingTab
from modules.ui.sessions import SessionRuns, session_key
from modules.ui.txt2img import Txt2ImgTab

log = logging.getLogger(__name__)


@dataclass
class ModelLine:
    """The model controls at the top of the page, and how to refresh them after a switch."""

    components: list  # checkpoint dropdown, VAE dropdown, status line
    refresh: Callable[[str | None], tuple]  # error message (or None) -> their new values
    switch: Callable[[str], str | None]  # checkpoint name -> error message (or None)


@dataclass
class SendSource:
    """A tab that sends a saved image: its button per target, what it reads, where it talks."""

    buttons: dict[str, gr.Button]  # "txt2img" / "img2img" / "inpaint" / "outpainting" -> button
    infotext: gr.components.Component
    image_path: gr.components.Component
    message: gr.HTML


class SendWiring:
    """Connects the send buttons of every tab to the tabs they fill (built once by the shell)."""

    def __init__(self, services: Services, model_line: ModelLine, txt2img: Txt2ImgTab, img2img: Img2ImgTab, outpainting: OutpaintingTab):
        self.services, self.model_line = services, model_line
        self.txt2img, self.img2img, self.outpainting = txt2img, img2img, outpainting

    # --- what a send changes ---------------------------------------------------------------------

    def txt2img_updates(self, infotext: str) -> dict:
        values = hires_display_values(request_fields(parse_infotext(infotext)))
        return {component: values[name] for name, component in self.txt2img.fields.items() if name in values}

    def img2img_updates(self, target: str, image: Image.Image, infotext: str | None) -> dict:
        """The picture into sub-tab `target`, and the infotext's parameters (a hires pass's strength
        is not an img2img strength: it stays as it is)."""
        updates = self.img2img.receive(target, image)
        values = request_fields(parse_infotext(infotext)) if infotext else {}
        if values.get("enable_hr"):
            values.pop("denoising_strength", None)
        values = display_values(values, image.size)
        updates.update({component: values[name] for name, component in self.img2img.fields.items() if name in values})
        return updates

    def model_updates(self, infotext: str | None) -> tuple[dict, str]:
        """Switches to the checkpoint the infotext names; the model line's updates and a sentence."""
        if not infotext:
            return {}, ""
        params = parse_infotext(infotext)
        entry, message = self.services.checkpoint_for_infotext(params.get("Model hash"), params.get("Model"))
        loaded = self.services.manager.loaded
        if entry is not None and (loaded is None or loaded.checkpoint != entry):
            message = self.model_line.switch(entry.name) or message
        missing = self.services.missing_networks(params.get("Prompt", ""), params)
        if missing:
            message = " ".join(part for part in (message, f"Not found here (the image used them): {', '.join(missing)}.") if part)
        return dict(zip(self.model_line.components, self.model_line.refresh(None))), message

    # --- wiring ------------------------------------------------------------------------------------

    def picture_updates(self, target: str, image: Image.Image, infotext: str | None) -> dict:
        if target == "outpainting":
            return self.outpainting.receive(image, infotext)
        return self.img2img_updates(target, image, infotext)

    def picture_outputs(self, target: str) -> list:
        if target == "outpainting":
            return self.outpainting.receive_outputs()
        return [*self.img2img.fields.values(), *self.img2img.receive_outputs(target)]

    def wire_gallery(self, buttons: dict[str, gr.Button], runs: SessionRuns, parameters_to: set[str]) -> None:
        """A generation tab's gallery buttons; the infotext's values come along to `parameters_to`."""
        def handler(target: str):
            def send(request: gr.Request) -> dict:
                outcome = runs.outcome(session_key(request))
                index = outcome.pick() if outcome else None
                if index is None:
                    return {}
                infotext = outcome.infotexts[index] if target in parameters_to else None
                return self.picture_updates(target, outcome.images[index], infotext)
            return send

        for target, button in buttons.items():
            button.click(handler(target), None, self.picture_outputs(target), show_progress="hidden", js=switch_tabs_js(target))

    def wire_saved_image(self, source: SendSource) -> None:
        """PNG Info / History: the parameters to txt2img, or the image and them to img2img / inpaint."""
        def to_txt2img(infotext: str | None) -> dict:
            if not infotext:
                return {source.message: "Nothing to send: this image carries no generation parameters."}
            updates, message = self.model_updates(infotext)
            updates.update(self.txt2img_updates(infotext))
            updates[source.message] = html.escape(message)
            return updates

        def to_img2img(target: str):
            def send(infotext: str | None, path: str | None) -> dict:
                image, error = open_picture(path)
                if image is None:
                    return {source.message: f'<div class="easel-error" role="alert"><b>Error:</b> {html.escape(error)}</div>'}
                updates, message = self.model_updates(infotext)
                updates.update(self.picture_updates(target, image, infotext))
                updates[source.message] = html.escape(message)
                return updates
            return send

        model = {"concurrency_id": "model", "concurrency_limit": 1}
        source.buttons["txt2img"].click(
            to_txt2img, source.infotext, [*self.txt2img.fields.values(), source.message, *self.model_line.components],
            js=switch_tabs_js("txt2img"), **model,
        )
        for target in ("img2img", "inpaint", "outpainting"):
            if target not in source.buttons:
                continue
            outputs = [*self.picture_outputs(target), source.message, *self.model_line.components]
            source.buttons[target].click(
                to_img2img(target), [source.infotext, source.image_path], outputs, js=switch_tabs_js(target), **model,
            )


# target -> (the page tab, the img2img sub-tab, an element to wait for before the request goes out)
TAB_BUTTONS: dict[str, tuple[str, str | None, str | None]] = {
    "txt2img": ("tab-txt2img", None, None),
    "img2img": ("tab-img2img", "img2img-source-img2img", "#img2img-image"),
    "inpaint": ("tab-img2img", "img2img-source-inpaint", "#img2img-inpaint canvas"),
    "outpainting": ("tab-outpainting", None, "#outpaint-image"),
}


def switch_tabs_js(target: str) -> str:
    """A script run in the browser before the send handler: clicks the tab (and sub-tab) buttons of
    `target` (Gradio gives a tab button the id `<tab elem_id>-button`), waiting up to 10 s for each
    to be drawn, then for the component that receives the picture, then passes the handler's inputs
    through unchanged."""
    tab, sub_tab, ready = TAB_BUTTONS[target]
    steps = [f"(await shown('#{tab}-button'))?.click();"]
    if sub_tab:
        steps.append(f"(await shown('#{sub_tab}-button'))?.click();")
    if ready:
        steps.append(f"await shown('{ready}');")
    return (
        "async (...args) => {\n"
        "  const shown = async (selector) => {\n"
        "    for (let i = 0; i < 500; i++) {\n"
        "      const element = document.querySelector(selector);\n"
        "      if (element && element.getClientRects().length) return element;\n"
        "      await new Promise((done) => setTimeout(done, 20));\n"
        "    }\n"
        "    return null;\n"
        "  };\n"
        + "".join(f"  {step}\n" for step in steps)
        + "  return args;\n}"
    )


def open_picture(path: Any) -> tuple[Image.Image | None, str]:
    """The picture at `path`, read now (a damaged file is a sentence, not a traceback)."""
    if not path:
        return None, "No image to send: open one first."
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy(), ""
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        log.warning("Could not read %s: %s", path, error)
        return None, f"Could not read {path}: {error}"
