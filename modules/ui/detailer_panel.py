"""The ADetailer section of txt2img and img2img: Enable (and, in img2img, Skip img2img), then two tabs
(ADetailer's default `ad_max_models`), each with its detector, prompts, the detection filters, the
mask steps and the inpainting settings of `modules/detailer/args.py`'s DetailerTab. The values become
the request's `DetailerRequest`; the same checks as the API's run when the job is submitted, and their
sentences show in the progress line. Send to / paste restore a picture's tabs here (`restore_updates`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import gradio as gr

from modules.detailer.args import FILTER_METHODS, MERGE_MODES, NO_MODEL, DetailerRequest, DetailerTab
from modules.sampling.sampler_table import sampler_labels
from modules.services import Services
from modules.ui.text import L

MODEL_CLASS = "easel-detailer-model"  # refreshed with the other model lists (modules/ui/app.py)
TAB_LABELS = ("1st", "2nd")
DEFAULTS = DetailerTab()


def model_choices(services: Services) -> list:
    return [(L(NO_MODEL), NO_MODEL), *services.detectors.names()]


@dataclass
class TabControls:
    """The components of one tab, by DetailerTab field name."""

    components: dict[str, Any] = field(default_factory=dict)

    def tab(self, values: dict[Any, Any]) -> DetailerTab:
        read = {name: values.get(component) for name, component in self.components.items()}
        typed: dict[str, Any] = {}
        for spec in fields(DetailerTab):
            value: Any = read.get(spec.name)
            if value is None:
                continue
            default = getattr(DEFAULTS, spec.name)
            typed[spec.name] = int(value) if isinstance(default, int) and not isinstance(default, bool) else value
        return replace(DEFAULTS, **typed)

    def restore_updates(self, tab: DetailerTab | None) -> dict:
        source = tab if tab is not None else DEFAULTS
        return {component: getattr(source, name) for name, component in self.components.items()}


@dataclass
class DetailerPanel:
    enabled: gr.Checkbox
    skip_img2img: gr.Checkbox | None
    tabs: list[TabControls] = field(default_factory=list)

    def components(self) -> set:
        found = {self.enabled, *(c for tab in self.tabs for c in tab.components.values())}
        return found | ({self.skip_img2img} if self.skip_img2img is not None else set())

    def settings(self) -> list:
        """What restoring a picture sets."""
        return [self.enabled, *(c for tab in self.tabs for c in tab.components.values())]

    def apply(self, values: dict[Any, Any], request: Any) -> Any:
        """The request with the detailer (unchanged when it is off or no tab has a model)."""
        if not values.get(self.enabled):
            return request
        skip = bool(values.get(self.skip_img2img)) if self.skip_img2img is not None else False
        detailer = DetailerRequest(True, skip, [controls.tab(values) for controls in self.tabs])
        return replace(request, detailer=detailer) if detailer.runs else request

    def restore_updates(self, detailer: DetailerRequest | None) -> dict:
        """The section set to a picture's tabs (None: the picture had no detailer, so it is off)."""
        tabs = detailer.tabs if detailer is not None else []
        updates: dict = {self.enabled: detailer is not None and detailer.runs}
        for index, controls in enumerate(self.tabs):
            updates.update(controls.restore_updates(tabs[index] if index < len(tabs) else None))
        return updates


def _tab_controls(services: Services, prefix: str) -> TabControls:
    c: dict[str, Any] = {}
    d = DEFAULTS
    with gr.Row():
        c["ad_model"] = gr.Dropdown(model_choices(services), value=NO_MODEL, label=L("ADetailer detector"), elem_id=f"{prefix}-model",
                                    elem_classes=MODEL_CLASS, allow_custom_value=True, info=L("What to find and repaint: a file of models/adetailer (None: this tab is off)."))
        c["ad_tab_enable"] = gr.Checkbox(value=True, label=L("Enable this tab"), elem_id=f"{prefix}-tab-enable",
                                         info=L("Off: the tab keeps its settings but does not run."))
    c["ad_prompt"] = gr.Textbox(label=L("ADetailer prompt"), lines=2, elem_id=f"{prefix}-prompt",
                                placeholder=L("Empty: the picture's prompt. [SEP] gives each region its own; [PROMPT] inserts the picture's."),
                                info=L("The prompt each region is repainted with."))
    c["ad_negative_prompt"] = gr.Textbox(label=L("ADetailer negative prompt"), lines=1, elem_id=f"{prefix}-negative",
                                         info=L("Empty: the picture's negative prompt."))
    with gr.Accordion(L("Detection"), open=False):
        with gr.Row():
            c["ad_confidence"] = gr.Slider(0.0, 1.0, value=d.ad_confidence, step=0.01, label=L("Detection confidence threshold"),
                                           elem_id=f"{prefix}-confidence", info=L("Regions found with less confidence are ignored."))
            c["ad_mask_k"] = gr.Slider(0, 20, value=d.ad_mask_k, step=1, label=L("Keep only the top k regions"), elem_id=f"{prefix}-k",
                                       info=L("0: all of them."))
            c["ad_mask_filter_method"] = gr.Radio(list(FILTER_METHODS), value=d.ad_mask_filter_method, label=L("Top k by"),
                                                  elem_id=f"{prefix}-k-method", info=L("Largest area, or highest confidence."))
        with gr.Row():
            c["ad_mask_min_ratio"] = gr.Slider(0.0, 1.0, value=d.ad_mask_min_ratio, step=0.001, label=L("Smallest region (share of the picture)"),
                                               elem_id=f"{prefix}-min-ratio", info=L("Regions smaller than this share of the picture are ignored."))
            c["ad_mask_max_ratio"] = gr.Slider(0.0, 1.0, value=d.ad_mask_max_ratio, step=0.001, label=L("Largest region (share of the picture)"),
                                               elem_id=f"{prefix}-max-ratio", info=L("Regions larger than this share of the picture are ignored."))
    with gr.Accordion(L("Mask"), open=False):
        with gr.Row():
            c["ad_x_offset"] = gr.Slider(-200, 200, value=d.ad_x_offset, step=1, label=L("Mask x offset"), elem_id=f"{prefix}-x-offset",
                                         info=L("Moves each mask right (negative: left), in pixels."))
            c["ad_y_offset"] = gr.Slider(-200, 200, value=d.ad_y_offset, step=1, label=L("Mask y offset"), elem_id=f"{prefix}-y-offset",
                                         info=L("Moves each mask up (negative: down), in pixels."))
            c["ad_dilate_erode"] = gr.Slider(-128, 128, value=d.ad_dilate_erode, step=4, label=L("Mask erosion (-) / dilation (+)"),
                                             elem_id=f"{prefix}-dilate", info=L("Grows (or shrinks) each mask by this many pixels."))
        c["ad_mask_merge_invert"] = gr.Radio([(L(m), m) for m in MERGE_MODES], value=d.ad_mask_merge_invert, label=L("Mask merge mode"),
                                             elem_id=f"{prefix}-merge", info=L("Repaint each region alone, all at once, or everything but them."))
    with gr.Accordion(L("Inpainting"), open=False):
        with gr.Row():
            c["ad_mask_blur"] = gr.Slider(0, 64, value=d.ad_mask_blur, step=1, label=L("Inpaint mask blur"), elem_id=f"{prefix}-blur",
                                          info=L("Softens the edge where the repainted region meets the picture."))
            c["ad_denoising_strength"] = gr.Slider(0.0, 1.0, value=d.ad_denoising_strength, step=0.01, label=L("Inpaint denoising strength"),
                                                   elem_id=f"{prefix}-denoise", info=L("How much of each region is made anew."))
        with gr.Row():
            c["ad_inpaint_only_masked"] = gr.Checkbox(value=d.ad_inpaint_only_masked, label=L("Inpaint only masked"), elem_id=f"{prefix}-only-masked",
                                                      info=L("Repaint the region at full resolution, then paste it back."))
            c["ad_inpaint_only_masked_padding"] = gr.Slider(0, 256, value=d.ad_inpaint_only_masked_padding, step=4,
                                                            label=L("Inpaint only masked padding, pixels"), elem_id=f"{prefix}-padding",
                                                            info=L("Context around the region the model sees."))
        with gr.Row():
            c["ad_use_inpaint_width_height"] = gr.Checkbox(value=False, label=L("Use separate width/height"), elem_id=f"{prefix}-use-size",
                                                           info=L("Repaint at this size instead of the picture's."))
            c["ad_inpaint_width"] = gr.Slider(64, 2048, value=d.ad_inpaint_width, step=8, label=L("Inpaint width"), elem_id=f"{prefix}-width",
                                              info=L("Used when the box beside it is ticked."))
            c["ad_inpaint_height"] = gr.Slider(64, 2048, value=d.ad_inpaint_height, step=8, label=L("Inpaint height"), elem_id=f"{prefix}-height",
                                               info=L("Used when the box beside it is ticked."))
        with gr.Row():
            c["ad_use_steps"] = gr.Checkbox(value=False, label=L("Use separate steps"), elem_id=f"{prefix}-use-steps",
                                            info=L("Off: the picture's steps."))
            c["ad_steps"] = gr.Slider(1, 150, value=d.ad_steps, step=1, label=L("ADetailer steps"), elem_id=f"{prefix}-steps",
                                      info=L("Used when the box beside it is ticked."))
        with gr.Row():
            c["ad_use_cfg_scale"] = gr.Checkbox(value=False, label=L("Use separate CFG scale"), elem_id=f"{prefix}-use-cfg",
                                                info=L("Off: the picture's CFG scale."))
            c["ad_cfg_scale"] = gr.Slider(0.0, 30.0, value=d.ad_cfg_scale, step=0.5, label=L("ADetailer CFG scale"), elem_id=f"{prefix}-cfg",
                                          info=L("Used when the box beside it is ticked."))
        with gr.Row():
            c["ad_use_sampler"] = gr.Checkbox(value=False, label=L("Use separate sampler"), elem_id=f"{prefix}-use-sampler",
                                              info=L("Off: the picture's sampler."))
            c["ad_sampler"] = gr.Dropdown(sampler_labels(), value="DPM++ 2M", label=L("ADetailer sampler"), elem_id=f"{prefix}-sampler",
                                          allow_custom_value=True,
                                          info=L("Used when the box beside it is ticked."))
        with gr.Row():
            c["ad_use_noise_multiplier"] = gr.Checkbox(value=False, label=L("Use separate noise multiplier"), elem_id=f"{prefix}-use-noise",
                                                       info=L("Off: 1."))
            c["ad_noise_multiplier"] = gr.Slider(0.5, 1.5, value=d.ad_noise_multiplier, step=0.01, label=L("Noise multiplier for img2img"),
                                                 elem_id=f"{prefix}-noise", info=L("Used when the box beside it is ticked."))
        with gr.Row():
            c["ad_use_clip_skip"] = gr.Checkbox(value=False, label=L("Use separate CLIP skip"), elem_id=f"{prefix}-use-clip-skip",
                                                info=L("Off: the picture's CLIP skip."))
            c["ad_clip_skip"] = gr.Slider(1, 12, value=d.ad_clip_skip, step=1, label=L("ADetailer CLIP skip"), elem_id=f"{prefix}-clip-skip",
                                          info=L("Used when the box beside it is ticked."))
    return TabControls(c)


def build_detailer_panel(services: Services, prefix: str, img2img: bool = False) -> DetailerPanel:
    with gr.Accordion(L("ADetailer"), open=False, elem_id=f"{prefix}-detailer"):
        with gr.Row():
            enabled = gr.Checkbox(value=False, label=L("Enable ADetailer"), elem_id=f"{prefix}-detailer-enable",
                                  info=L("After each picture is made, find the regions and repaint them."))
            skip = gr.Checkbox(value=False, label=L("Skip img2img"), elem_id=f"{prefix}-detailer-skip",
                               info=L("Detail the img2img picture as it is, without an img2img pass first.")) if img2img else None
        panel = DetailerPanel(enabled, skip)
        with gr.Tabs():
            for index, label in enumerate(TAB_LABELS):
                with gr.Tab(L(label), elem_id=f"{prefix}-detailer-{index}-tab"):
                    panel.tabs.append(_tab_controls(services, f"{prefix}-detailer-{index}"))
    return panel
