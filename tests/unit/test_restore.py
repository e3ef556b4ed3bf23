"""Restoring a picture's parameters (modules/infotext/restore.py): every setting Easel cannot apply is
named with its value and the reason, never dropped silently; Easel's own settings restore in full."""

from __future__ import annotations

from dataclasses import fields

import pytest

from modules.generation.request import Img2ImgRequest
from modules.infotext.parse import parse_infotext
from modules.infotext.restore import NotApplied, not_applied_sentence, restore_outpaint, restore_request

EVERY_FIELD = {f.name for f in fields(Img2ImgRequest)}
TXT2IMG_FIELDS = EVERY_FIELD - {"mask_blur", "mask_blur_x", "mask_blur_y", "inpainting_mask_invert", "inpainting_fill",
                                "inpaint_full_res", "inpaint_full_res_padding", "initial_noise_multiplier"}

# An A1111 1.10 picture made with hires fix on an ESRGAN model, ADetailer, ControlNet, Regional
# Prompter and Dynamic Prompts (keys and value forms as those extensions write them), and two values
# Easel has no match for.
REAL_LOOKING = (
    "masterpiece, 1girl, red dress BREAK blue sky <lora:detail:0.6>\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 28, Sampler: Euler A Turbo, Schedule type: Kerras, CFG scale: 6.5, Seed: 2870305590, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip skip: 2, "
    "ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.3, ADetailer dilate erode: 4, ADetailer mask blur: 4, "
    "ADetailer denoising strength: 0.4, ADetailer inpaint only masked: True, ADetailer inpaint padding: 32, "
    "ADetailer model 2nd: hand_yolov8n.pt, ADetailer version: 24.9.0, "
    'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1.0, Resize Mode: Crop and Resize, '
    'Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, '
    'Control Mode: Balanced", '
    "RP Active: True, RP Divide mode: Matrix, RP Matrix submode: Horizontal, RP Calc Mode: Attention, RP Ratios: \"1,1\", "
    "Template: \"masterpiece, 1girl, {red|blue} dress\", "
    "Hires upscale: 2, Hires steps: 15, Hires upscaler: 4x-UltraSharp, Token merging ratio: 0.5, "
    "Lora hashes: \"detail: 0123456789ab\", Version: v1.10.1"
)


def not_applied_keys(items: list[NotApplied]) -> list[str]:
    return [item.key for item in items]


def test_an_unknown_upscaler_sampler_schedule_and_extension_keys_are_each_named():
    restored = restore_request(parse_infotext(REAL_LOOKING), TXT2IMG_FIELDS)
    by_key = {item.key: item for item in restored.not_applied}
    assert by_key["Hires upscaler"] == NotApplied("Hires upscaler", "4x-UltraSharp", by_key["Hires upscaler"].reason)
    assert by_key["Hires upscaler"].reason.startswith("no upscaler named 4x-UltraSharp here; Easel has Latent,")
    assert str(by_key["Sampler"]) == "Sampler: Euler A Turbo (unknown sampler 'Euler A Turbo')"
    assert str(by_key["Schedule type"]) == "Schedule type: Kerras (unknown schedule type 'Kerras')"
    assert not [key for key in by_key if key.startswith("ADetailer")]  # tabs: restored (tests/unit/test_detailer_args.py)
    tabs = restored.fields["detailer"].tabs
    assert [t.ad_model for t in tabs] == ["face_yolov8n.pt", "hand_yolov8n.pt"] and tabs[0].ad_denoising_strength == 0.4
    assert "ControlNet 0" not in by_key  # a unit: restored (tests/unit/test_controlnet_infotext.py)
    assert restored.fields["control_units"][0].model == "control_v11p_sd15_canny [d14c016b]"
    assert not [key for key in by_key if key.startswith("RP ")]  # restored as the regional settings
    assert restored.fields["regional"].ratios == "1,1" and restored.fields["regional"].matrix_submode == "Horizontal"
    assert "Template" not in by_key  # describes the job the picture came from; its own prompt is restored
    assert by_key["Token merging ratio"].reason == "token merging is not supported"
    # What Easel has is applied; the model and the LoRA are looked up by the caller; the Version is no setting.
    assert {k: restored.fields[k] for k in ("steps", "cfg_scale", "seed", "width", "height", "clip_skip", "hr_scale",
                                            "hr_second_pass_steps", "denoising_strength", "enable_hr")} == {
        "steps": 28, "cfg_scale": 6.5, "seed": 2870305590, "width": 512, "height": 768, "clip_skip": 2, "hr_scale": 2.0,
        "hr_second_pass_steps": 15, "denoising_strength": 0.45, "enable_hr": True}
    assert not {"sampler_name", "scheduler", "hr_upscaler"} & set(restored.fields)  # left at the user's choice
    assert not {"Model", "Model hash", "Lora hashes", "Version", "Prompt"} & set(not_applied_keys(restored.not_applied))


def test_the_reasons_read_as_one_sentence():
    items = [NotApplied("Sampler", "Foo", "unknown sampler 'Foo'"), NotApplied("RP Active", "True", "a setting of Regional Prompter")]
    assert not_applied_sentence(items) == "Not applied: Sampler: Foo (unknown sampler 'Foo'); RP Active: True (a setting of Regional Prompter)."
    assert not_applied_sentence([]) == ""


def test_an_installed_upscaler_is_applied():
    params = parse_infotext("p\nSteps: 20, Seed: 1, Sampler: Euler, Hires upscale: 2, Hires upscaler: 4x-UltraSharp")
    restored = restore_request(params, TXT2IMG_FIELDS, upscalers=("Latent", "4x-UltraSharp"))
    assert restored.fields["hr_upscaler"] == "4x-UltraSharp" and restored.not_applied == []


@pytest.mark.parametrize("line, key, reason", [
    ("Steps: many, Seed: 1, Sampler: Euler", "Steps", "not a whole number"),
    ("Steps: 20, Seed: 12.5, Sampler: Euler", "Seed", "not a whole number"),
    ("Steps: 20, Seed: 1, CFG scale: nan", "CFG scale", "not a finite number"),
    ("Steps: 20, Seed: 1, RNG: XYZ", "RNG", "not one of GPU, CPU, NV"),
    ("Steps: 20, Seed: 1, Tiling: maybe", "Tiling", "not True or False"),
    ("Steps: 20, Seed: 1, Size: big", "Size", "not a size written as WIDTHxHEIGHT"),
    ("Steps: 20, Seed: 1, Hires sampler: Turbo", "Hires sampler", "unknown sampler 'Turbo'"),
    ("Steps: 20, Seed: 1, Emphasis: No norm", "Emphasis", "Easel implements A1111's Original emphasis only"),
    ("Steps: 20, Seed: 1, Hires checkpoint: other.safetensors", "Hires checkpoint", "Easel's hires pass uses the first pass's checkpoint"),
    ("Steps: 20, Seed: 1, Face restoration: CodeFormer", "Face restoration", "face restoration is not part of Easel yet"),
    ("Steps: 20, Seed: 1, Hires refiner: first pass", "Hires refiner", "the pass the refiner takes part in is a setting (hires_fix_refiner_pass)"),
    ("Steps: 20, Seed: 1, X Type: Seed", "X Type", "X/Y/Z plot settings are not restored from a picture: choose X/Y/Z plot in the Script menu"),
    ("Steps: 20, Seed: 1, Sparkle level: 11", "Sparkle level", "Easel has no setting by this name"),
])
def test_each_kind_of_setting_that_cannot_be_applied_says_why(line, key, reason):
    restored = restore_request(parse_infotext(f"p\n{line}"), EVERY_FIELD)
    matching = [item for item in restored.not_applied if item.key == key]
    assert len(matching) == 1 and matching[0].reason == reason, restored.not_applied


def test_defaults_and_descriptions_are_not_reported():
    """Keys A1111's reader fills in with their defaults, and ones that describe the picture."""
    params = parse_infotext("p\nSteps: 20, Seed: 1, Sampler: Euler, Init image hash: 0a1b2c, Hashes: {\"model\": \"x\"}, Version: f2.0.1")
    assert restore_request(params, TXT2IMG_FIELDS).not_applied == []
    assert restore_request(params, EVERY_FIELD).not_applied == []


def test_a_setting_the_target_has_no_place_for_says_where_it_applies():
    params = parse_infotext("p\nSteps: 20, Seed: 1, Sampler: Euler, Denoising strength: 0.6, Mask blur: 8, Inpaint area: Only masked")
    restored = restore_request(params, TXT2IMG_FIELDS)
    assert {str(item) for item in restored.not_applied} == {
        "Mask blur: 8 (an img2img / inpaint setting: send the picture to img2img or inpaint to use it)",
        "Inpaint area: Only masked (an img2img / inpaint setting: send the picture to img2img or inpaint to use it)"}
    assert restored.fields["denoising_strength"] == 0.6  # txt2img's hires strength, as A1111 pastes it


def test_a_hires_picture_sent_to_img2img_keeps_its_hires_pass_quietly():
    params = parse_infotext("p\nSteps: 20, Seed: 1, Sampler: Euler, Denoising strength: 0.55, Hires upscale: 2, Hires upscaler: 4x-UltraSharp")
    restored = restore_request(params, EVERY_FIELD - {"enable_hr"}, hires_in_picture=True)
    assert restored.not_applied == []  # the pass is in the picture already
    assert "denoising_strength" not in restored.fields and "hr_scale" not in restored.fields


def test_outpaint_settings_restore_and_bad_ones_are_named():
    params = parse_infotext("a lake\nSteps: 20, Seed: 3, Mask blur: 4, Outpaint method: Poor man's outpainting, "
                            "Outpaint directions: left down, Outpaint pixels: lots")
    restored = restore_outpaint(params)
    assert restored.fields["directions"] == ("left", "down") and restored.not_applied == [NotApplied("Outpaint pixels", "lots", "not a whole number")]
    to_txt2img = restore_request(params, TXT2IMG_FIELDS)
    assert "Outpaint method" in {item.key for item in to_txt2img.not_applied}
    assert [item.reason for item in to_txt2img.not_applied if item.key == "Outpaint method"] == [
        "an outpainting setting: Send to outpainting restores it"]
