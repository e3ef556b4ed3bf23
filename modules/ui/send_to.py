"""The "Send to ..." buttons: a picture, and the parameters of its infotext, go from one tab to another.

- txt2img's gallery -> img2img / inpaint / Outpainting: the selected image and its parameters
  (prompt, seed, sampler, steps, CFG...; img2img takes the image's own size).
- img2img's and Outpainting's galleries -> img2img / inpaint: the selected image, to iterate on
  it; -> Outpainting: the image and its parameters (an outpainted one's outpaint settings too, so
  outpainting it again starts from them).
- PNG Info and History -> txt2img: the parameters; -> img2img / inpaint / Outpainting: the image
  and its parameters. These also switch to the checkpoint and VAE the image names (by hash, then
  name).
- The ↙️ button beside Generate: the parameters pasted into the prompt box (or, when it is empty, the
  last generation's) into the tab's fields, as A1111's "read generation parameters" button.

Whatever a picture carries that could not be applied (a sampler or upscaler Easel lacks, a checkpoint
that is not here, an extension's settings...) is listed in the notice under the receiving tab's
prompt, with the value and the reason (modules/picture_restore.py decides): a reproduced picture
never lacks a setting without the user being told.

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

from modules.errors import UserError
from modules.infotext.restore import NotApplied
from modules.picture_restore import PictureSettings
from modules.services import Services
from modules.ui.hires_fix import hires_display_values
from modules.ui.img2img import Img2ImgTab, display_values
from modules.ui.outpainting import OutpaintingTab
from modules.ui.progress_view import Say, english, error_html
from modules.ui.sessions import SessionRuns, session_key
from modules.ui.text import Words
from modules.ui.txt2img import Txt2ImgTab

log = logging.getLogger(__name__)


@dataclass
class ModelLine:
    """The model controls at the top of the page, and how to refresh them after a switch."""

    components: list  # checkpoint dropdown, VAE dropdown, status line
    refresh: Callable[[str | None, gr.Request | None], tuple]  # (error message or None, request) -> their new values
    switch: Callable[[str], str | None]  # checkpoint name -> error message (or None)


@dataclass
class SendSource:
    """A tab that sends a saved image: its button per target, what it reads, where it talks."""

    buttons: dict[str, gr.Button]  # "txt2img" / "img2img" / "inpaint" / "outpainting" -> button
    infotext: gr.components.Component
    image_path: gr.components.Component
    message: gr.HTML


def notice_update(text: str) -> gr.HTML:
    """The notice's update: shown with `text`, hidden when there is nothing to say."""
    return gr.HTML(value=text, visible=bool(text))


def notice_html(items: list[NotApplied], say: Say = english) -> str:
    """The notice beside the restored fields: every setting of the picture that was not applied,
    one line per reason (an extension's eight settings share one line). Keys and values are the
    picture's own (infotext is a format); the reasons are in the user's language."""
    if not items:
        return ""
    by_reason: dict[str, list[NotApplied]] = {}
    for item in items:
        by_reason.setdefault(item.reason, []).append(item)
    rows = "".join(
        "<li>" + ", ".join(f"<code>{html.escape(item.key)}: {html.escape(item.value)}</code>" for item in group)
        + f" — {html.escape(say(reason))}</li>"
        for reason, group in by_reason.items()
    )
    title = say("Restored from the picture, except 1 setting:") if len(items) == 1 else \
        say("Restored from the picture, except {count} settings:", count=len(items))
    return f'<div class="easel-restore-notice" role="status"><b>{html.escape(title)}</b><ul>{rows}</ul></div>'


class SendWiring:
    """Connects the send buttons of every tab to the tabs they fill (built once by the shell)."""

    def __init__(self, services: Services, model_line: ModelLine, txt2img: Txt2ImgTab, img2img: Img2ImgTab, outpainting: OutpaintingTab):
        self.services, self.model_line = services, model_line
        self.words = Words(services.translations)
        self.txt2img, self.img2img, self.outpainting = txt2img, img2img, outpainting

    # --- what a send changes ---------------------------------------------------------------------

    def restore(self, target: str, infotext: str) -> PictureSettings:
        """The infotext's settings for `target` ("txt2img", "img2img", "inpaint", "outpainting")."""
        restorer = self.services.models.picture_restorer()
        if target == "txt2img":
            return restorer.restore(infotext, {*self.txt2img.fields, "control_units", "detailer", "regional"})
        if target == "outpainting":
            return restorer.restore(infotext, self.outpainting.settable(), hires_in_picture=True)
        return restorer.restore(infotext, {*self.img2img.fields, "control_units", "detailer", "regional"}, hires_in_picture=True)

    def tab(self, target: str) -> Txt2ImgTab | Img2ImgTab | OutpaintingTab:
        if target == "txt2img":
            return self.txt2img
        return self.outpainting if target == "outpainting" else self.img2img

    def notice_component(self, target: str) -> gr.HTML:
        return self.tab(target).prompt_row.notice

    def txt2img_updates(self, restored: PictureSettings, say: Say = english) -> dict:
        values = hires_display_values(restored.fields)
        updates = {component: values[name] for name, component in self.txt2img.fields.items() if name in values}
        updates.update(self.txt2img.controlnet.restore_updates(restored.fields.get("control_units", {}), say))
        updates.update(self.txt2img.detailer.restore_updates(restored.fields.get("detailer")))
        updates.update(self.txt2img.regional.restore_updates(restored.fields.get("regional")))
        return updates

    def img2img_updates(self, target: str, image: Image.Image, restored: PictureSettings | None, say: Say = english) -> dict:
        """The picture into sub-tab `target`, and the infotext's parameters (the size is the picture's own)."""
        updates = self.img2img.receive(target, image)
        values = display_values(restored.fields if restored else {}, image.size)
        updates.update({component: values[name] for name, component in self.img2img.fields.items() if name in values})
        if restored is not None:
            updates.update(self.img2img.controlnet.restore_updates(restored.fields.get("control_units", {}), say))
            updates.update(self.img2img.detailer.restore_updates(restored.fields.get("detailer")))
            updates.update(self.img2img.regional.restore_updates(restored.fields.get("regional")))
        return updates

    def say(self, request: gr.Request | None) -> Say:
        return lambda text, **values: self.words.say(request, text, **values)

    def model_updates(self, restored: PictureSettings, request: gr.Request | None = None) -> dict:
        """Switches to the checkpoint and VAE the picture names (a failed switch joins the notice);
        the model line's updates."""
        loaded = self.services.manager.loaded
        entry = restored.checkpoint
        if entry is not None and (loaded is None or loaded.checkpoint != entry):
            error = self.model_line.switch(entry.name)
            if error:
                restored.not_applied.insert(0, NotApplied("Model", entry.name, error))
        if restored.vae is not None and restored.vae != self.services.manager.vae_choice:
            try:
                self.services.models.switch_vae(restored.vae)
            except UserError as error:
                restored.not_applied.insert(0, NotApplied("VAE", restored.vae, str(error)))
        return dict(zip(self.model_line.components, self.model_line.refresh(None, request)))

    def picture_updates(self, target: str, image: Image.Image, restored: PictureSettings | None, say: Say = english) -> dict:
        if target == "outpainting":
            updates = self.outpainting.receive(image, restored)
        else:
            updates = self.img2img_updates(target, image, restored, say)
        updates[self.notice_component(target)] = notice_update(notice_html(restored.not_applied if restored else [], say))
        return updates

    def picture_outputs(self, target: str) -> list:
        if target == "outpainting":
            outputs = self.outpainting.receive_outputs()
        else:
            outputs = [*self.img2img.fields.values(), *self.img2img.controlnet.settings(), *self.img2img.detailer.settings(), *self.img2img.regional.settings(),
                       *self.img2img.receive_outputs(target)]
        return [*outputs, self.notice_component(target)]

    # --- wiring ------------------------------------------------------------------------------------

    def wire_gallery(self, buttons: dict[str, gr.Button], runs: SessionRuns, parameters_to: set[str]) -> None:
        """A generation tab's gallery buttons; the infotext's values come along to `parameters_to`
        (the picture was made here: the model stays as it is)."""
        def handler(target: str):
            def send(request: gr.Request) -> dict:
                picked = runs.picked(session_key(request))
                if picked is None:
                    return {}
                outcome, index = picked
                infotext = outcome.infotexts[index] if target in parameters_to else None
                restored = self.restore(target, infotext) if infotext else None
                if restored is not None:
                    restored.not_applied = [item for item in restored.not_applied if item.key not in ("Model", "VAE")]
                return self.picture_updates(target, outcome.images[index], restored, self.say(request))
            return send

        for target, button in buttons.items():
            button.click(handler(target), None, self.picture_outputs(target), show_progress="hidden", js=switch_tabs_js(target))

    def wire_saved_image(self, source: SendSource) -> None:
        """PNG Info / History / Extras: the parameters to txt2img, or the image and them to img2img /
        inpaint (each where the source has that button)."""
        def to_txt2img(infotext: str | None, request: gr.Request) -> dict:
            say = self.say(request)
            if not infotext:
                return {source.message: error_html("Nothing to send: this image carries no generation parameters.", say)}
            restored = self.restore("txt2img", infotext)
            updates = self.model_updates(restored, request)
            updates.update(self.txt2img_updates(restored, say))
            updates[self.txt2img.prompt_row.notice] = notice_update(notice_html(restored.not_applied, say))
            updates[source.message] = ""
            return updates

        def to_img2img(target: str):
            def send(infotext: str | None, path: str | None, request: gr.Request) -> dict:
                say = self.say(request)
                image, error = open_picture(path)
                if image is None:
                    return {source.message: error_html(error, say)}
                restored = self.restore(target, infotext) if infotext else None
                updates = self.model_updates(restored, request) if restored else {}
                updates.update(self.picture_updates(target, image, restored, say))
                updates[source.message] = ""
                return updates
            return send

        if "txt2img" in source.buttons:
            source.buttons["txt2img"].click(
                to_txt2img, source.infotext,
                [*self.txt2img.fields.values(), *self.txt2img.controlnet.settings(), *self.txt2img.detailer.settings(), *self.txt2img.regional.settings(),
                 self.txt2img.prompt_row.notice, source.message,
                 *self.model_line.components],
                js=switch_tabs_js("txt2img"), concurrency_id="model", concurrency_limit=1,
            )
        for target in ("img2img", "inpaint", "outpainting"):
            if target not in source.buttons:
                continue
            outputs = [*self.picture_outputs(target), source.message, *self.model_line.components]
            source.buttons[target].click(
                to_img2img(target), [source.infotext, source.image_path], outputs, js=switch_tabs_js(target),
                concurrency_id="model", concurrency_limit=1,
            )

    def wire_paste(self, target: str, runs: SessionRuns) -> None:
        """A1111's ↙️ button: the infotext typed or pasted into the prompt box, or (when it is empty)
        the session's last generation's, goes into the tab's fields; the checkpoint it names is
        switched to, and the notice says what was not applied."""
        tab = self.tab(target)
        units = None if isinstance(tab, OutpaintingTab) else tab.controlnet
        detailer = None if isinstance(tab, OutpaintingTab) else tab.detailer
        regional = None if isinstance(tab, OutpaintingTab) else tab.regional
        outputs = [*tab.fields.values(), *(self.outpainting.settings.values() if units is None else units.settings()),
                   *(detailer.settings() if detailer is not None else ()), *(regional.settings() if regional is not None else ())]

        def paste(text: str | None, request: gr.Request) -> dict:
            say = self.say(request)
            infotext = (text or "").strip()
            if not infotext:
                picked = runs.picked(session_key(request))
                infotext = picked[0].infotexts[picked[1]] if picked is not None and picked[0].infotexts else ""
            if not infotext:
                return {tab.prompt_row.notice: notice_update(error_html("Nothing to read: paste a picture's parameters into the prompt box, or generate first.", say))}
            restored = self.restore(target, infotext)
            updates = self.model_updates(restored, request)
            if target == "outpainting":
                updates.update(self.outpainting.parameter_updates(restored))
            else:
                values = hires_display_values(restored.fields) if target == "txt2img" else display_values(restored.fields, None)
                updates.update({component: values[name] for name, component in tab.fields.items() if name in values})
                if units is not None:
                    updates.update(units.restore_updates(restored.fields.get("control_units", {}), say))
                if detailer is not None:
                    updates.update(detailer.restore_updates(restored.fields.get("detailer")))
                if regional is not None:
                    updates.update(regional.restore_updates(restored.fields.get("regional")))
            updates[tab.prompt_row.notice] = notice_update(notice_html(restored.not_applied, say))
            return updates

        tab.prompt_row.paste.click(
            paste, tab.fields["prompt"], [*outputs, tab.prompt_row.notice, *self.model_line.components],
            concurrency_id="model", concurrency_limit=1, show_progress="hidden",
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
        steps.append(f"await select('#{sub_tab}-button');")
    if ready:
        steps.append(f"await shown('{ready}');")
    if sub_tab:  # a sub-tab drawn for the first time can put its Tabs' first tab back: select it again
        steps.append(f"await select('#{sub_tab}-button');")
    return (
        "async (...args) => {\n"
        "  const pause = (ms) => new Promise((done) => setTimeout(done, ms));\n"
        "  const shown = async (selector) => {\n"
        "    for (let i = 0; i < 500; i++) {\n"
        "      const element = document.querySelector(selector);\n"
        "      if (element && element.getClientRects().length) return element;\n"
        "      await pause(20);\n"
        "    }\n"
        "    return null;\n"
        "  };\n"
        "  const select = async (selector) => {\n"
        "    for (let i = 0; i < 20; i++) {\n"
        "      const button = await shown(selector);\n"
        "      if (!button) return;\n"
        "      if (button.getAttribute('aria-selected') !== 'true') button.click();\n"
        "      await pause(100);\n"
        "      if (button.getAttribute('aria-selected') === 'true') return;\n"
        "    }\n"
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
