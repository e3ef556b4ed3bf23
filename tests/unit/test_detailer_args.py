"""ADetailer's arguments (modules/detailer/args.py) and infotext keys (modules/detailer/infotext.py),
checked against ADetailer 25.3.0's rules (adetailer/args.py, scripts/!adetailer.py, aaaaaa/ui.py)."""

from __future__ import annotations

import dataclasses

import pytest

from modules.detailer.args import (
    DetailerArgsError,
    DetailerRequest,
    DetailerTab,
    is_skip,
    parse_alwayson,
    parse_tab,
    prompts_for,
    region_seeds,
)
from modules.detailer.infotext import detailer_params, ordinal, read_tabs, suffix, tab_params
from modules.infotext.create import format_parameters
from modules.infotext.parse import parse_infotext

FACE = {"ad_model": "face_yolov8n.pt"}

# webuiapi 0.9.17 `ADetailer(ad_model=...).to_dict()` (read from its wheel): ADetailer <= 24.8's keys.
WEBUIAPI_TAB = {
    "ad_model": "face_yolov8n.pt", "ad_model_classes": "", "ad_tab_enable": True, "ad_prompt": "", "ad_negative_prompt": "", "ad_confidence": 0.3,
    "ad_mask_k_largest": 0.0, "ad_mask_min_ratio": 0.0, "ad_mask_max_ratio": 1.0, "ad_dilate_erode": 4, "ad_x_offset": 0, "ad_y_offset": 0,
    "ad_mask_merge_invert": "None", "ad_mask_blur": 4, "ad_denoising_strength": 0.4, "ad_inpaint_only_masked": True,
    "ad_inpaint_only_masked_padding": 32, "ad_use_inpaint_width_height": False, "ad_inpaint_width": 512, "ad_inpaint_height": 512,
    "ad_use_steps": False, "ad_steps": 28, "ad_use_cfg_scale": False, "ad_cfg_scale": 7.0, "ad_use_checkpoint": False, "ad_checkpoint": None,
    "ad_use_vae": False, "ad_vae": None, "ad_use_sampler": False, "ad_sampler": "DPM++ 2M Karras", "ad_scheduler": "Use same scheduler",
    "ad_use_noise_multiplier": False, "ad_noise_multiplier": 1.0, "ad_use_clip_skip": False, "ad_clip_skip": 1, "ad_restore_face": False,
    "ad_controlnet_model": "None", "ad_controlnet_module": "None", "ad_controlnet_weight": 1.0, "ad_controlnet_guidance_start": 0.0,
    "ad_controlnet_guidance_end": 1.0,
}


def test_defaults_are_adetailers():
    tab = DetailerTab()
    assert len(dataclasses.fields(tab)) == 42  # ADetailerArgs' fields but is_api
    assert (tab.ad_model, tab.ad_confidence, tab.ad_mask_filter_method, tab.ad_mask_k, tab.ad_dilate_erode, tab.ad_mask_blur) == ("None", 0.3, "Area", 0, 4, 4)
    assert (tab.ad_denoising_strength, tab.ad_inpaint_only_masked, tab.ad_inpaint_only_masked_padding, tab.ad_inpaint_width) == (0.4, True, 32, 512)
    assert (tab.ad_steps, tab.ad_cfg_scale, tab.ad_sampler, tab.ad_scheduler, tab.ad_noise_multiplier, tab.ad_clip_skip) == (
        28, 7.0, "DPM++ 2M Karras", "Use same scheduler", 1.0, 1)
    assert tab.ad_checkpoint is None and tab.ad_controlnet_model == "None" and not tab.active


@pytest.mark.parametrize("args, enabled, skip, count", [
    ([FACE], True, False, 1),
    ([True, FACE, {"ad_model": "hand_yolov8n.pt"}], True, False, 2),
    ([True, True, FACE], True, True, 1),
    ({"args": [True, False, FACE, FACE]}, True, False, 2),
    ([True, False, FACE, None, "x", 3, FACE], True, False, 2),  # non-dicts dropped
    ([False], False, False, 0),  # webuiapi's "off"
    ([False, False, {"ad_model": "x", "bogus": 1}], False, False, 0),  # off: nothing is read
    ([True], False, False, 0),  # no tab
    (None, False, False, 0),
    ({}, False, False, 0),
    ({"args": []}, False, False, 0),
])
def test_every_form_clients_send(args, enabled, skip, count):
    request = parse_alwayson(args)
    assert (request.enabled, request.skip_img2img, len(request.tabs)) == (enabled, skip, count)


def test_disabled_tabs_keep_their_position():
    request = parse_alwayson([True, False, {"ad_model": "None"}, {**FACE, "ad_tab_enable": False}, FACE])
    assert [n for n, _ in request.active_tabs] == [2] and request.runs
    assert not parse_alwayson([True, False, {"ad_model": "None"}]).runs
    assert not DetailerRequest(enabled=False, tabs=[DetailerTab(**FACE)]).runs


def test_webuiapi_tabs_parse_with_the_old_top_k_key():
    request = parse_alwayson({"args": [True, WEBUIAPI_TAB, {**WEBUIAPI_TAB, "ad_mask_k_largest": 2.0}]})
    first, second = request.tabs
    assert first == DetailerTab(ad_model="face_yolov8n.pt")
    assert (second.ad_mask_k, second.ad_mask_filter_method) == (2, "Area")
    assert parse_tab({**FACE, "ad_mask_k_largest": 2, "ad_mask_k": 2}, 1).ad_mask_k == 2


@pytest.mark.parametrize("tab, words", [
    ({**FACE, "ad_mask_k_largest": 2, "ad_mask_k": 3}, ["ad_mask_k_largest", "disagree"]),
    ({**FACE, "ad_mask_k_largest": 2, "ad_mask_filter_method": "Confidence"}, ["ad_mask_k_largest", "Area"]),
])
def test_old_top_k_conflicts_are_refused(tab, words):
    with pytest.raises(DetailerArgsError) as error:
        parse_tab(tab, 1)
    assert all(word in str(error.value) for word in words)


@pytest.mark.parametrize("tab, field, allowed", [
    ({"ad_confidence": 1.5}, "ad_confidence", "between 0.0 and 1.0"),
    ({"ad_denoising_strength": -0.1}, "ad_denoising_strength", "between 0.0 and 1.0"),
    ({"ad_mask_k": -1}, "ad_mask_k", "at least 0"),
    ({"ad_mask_blur": -2}, "ad_mask_blur", "at least 0"),
    ({"ad_inpaint_width": 0}, "ad_inpaint_width", "at least 1"),
    ({"ad_steps": 0}, "ad_steps", "at least 1"),
    ({"ad_cfg_scale": -1}, "ad_cfg_scale", "at least 0.0"),
    ({"ad_noise_multiplier": 2}, "ad_noise_multiplier", "between 0.5 and 1.5"),
    ({"ad_clip_skip": 13}, "ad_clip_skip", "between 1 and 12"),
    ({"ad_controlnet_guidance_end": 2}, "ad_controlnet_guidance_end", "between 0.0 and 1.0"),
    ({"ad_mask_filter_method": "Size"}, "ad_mask_filter_method", "one of Area, Confidence"),
    ({"ad_mask_merge_invert": 1}, "ad_mask_merge_invert", "one of None, Merge, Merge and Invert"),
    ({"ad_dilate_erode": 4.5}, "ad_dilate_erode", "whole number"),
    ({"ad_confidence": "high"}, "ad_confidence", "a number"),
    ({"ad_confidence": True}, "ad_confidence", "a number"),
    ({"ad_restore_face": "maybe"}, "ad_restore_face", "true or false"),
    ({"ad_prompt": None}, "ad_prompt", "text"),
])
def test_bad_values_are_refused_naming_tab_field_and_what_is_allowed(tab, field, allowed):
    with pytest.raises(DetailerArgsError) as error:
        parse_alwayson([True, False, FACE, {**FACE, **tab}])
    message = str(error.value)
    assert message.startswith("ADetailer tab 2: ") and field in message and allowed in message


def test_unknown_keys_are_refused_by_name_with_a_suggestion():
    with pytest.raises(DetailerArgsError, match=r"ADetailer tab 1: 'ad_confidense' is not an ADetailer setting \(did you mean ad_confidence\?\)"):
        parse_alwayson([{**FACE, "ad_confidense": 0.5}])
    with pytest.raises(DetailerArgsError, match="'zzz' is not an ADetailer setting; the settings are the ad_\\* fields of ADetailer 25.3.0"):
        parse_alwayson([{"ad_model": "None", "zzz": 1}])  # a disabled tab is checked too
    assert parse_tab({**FACE, "is_api": ()}, 1) == DetailerTab(**FACE)  # ADetailerArgs' own flag


def test_values_are_converted_as_pydantic_converts_them():
    tab = parse_tab({**FACE, "ad_confidence": "0.5", "ad_mask_k": 2.0, "ad_dilate_erode": "-8", "ad_inpaint_only_masked": "false",
                     "ad_use_steps": 1, "ad_mask_merge_invert": "merge and invert", "ad_checkpoint": None, "ad_prompt": 7}, 1)
    assert (tab.ad_confidence, tab.ad_mask_k, tab.ad_dilate_erode, tab.ad_inpaint_only_masked, tab.ad_use_steps) == (0.5, 2, -8, False, True)
    assert (tab.ad_mask_merge_invert, tab.ad_checkpoint, tab.ad_prompt) == ("Merge and Invert", None, "7")
    assert isinstance(parse_tab({**FACE, "ad_cfg_scale": 7}, 1).ad_cfg_scale, float)


def test_the_container_must_be_a_list():
    with pytest.raises(DetailerArgsError, match="must be a list"):
        parse_alwayson({"args": "face"})
    with pytest.raises(DetailerArgsError, match='under "args", not the keys ad_model'):
        parse_alwayson(FACE)


@pytest.mark.parametrize("tab_prompt, count, expected", [
    ("", 2, ["main", "main"]),
    ("a face", 3, ["a face"] * 3),
    ("left [SEP] right", 3, ["left", "right", "right"]),  # the last part serves the regions after it
    ("[PROMPT], smile[SEP][SEP]  [SKIP]", 4, ["main, smile", "main", "[SKIP]", "[SKIP]"]),
    ("one [SEP] two [SEP] three", 1, ["one"]),
    ("x", 0, []),
])
def test_sep_prompt_and_skip(tab_prompt, count, expected):
    assert prompts_for(tab_prompt, "main", count) == expected


def test_only_a_whole_skip_part_skips():
    assert is_skip("[SKIP]") and is_skip("  [SKIP] ") and not is_skip("[SKIP] face") and not is_skip("skip")


def test_region_seeds():
    assert [region_seeds(100, 7, j) for j in range(3)] == [(100, 7), (101, 8), (102, 9)]
    assert region_seeds(100, 7, 2, same_seed=True) == (100, 7)


def test_ordinals_and_suffixes():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 111)] == ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "111th"]
    assert [suffix(n) for n in range(4)] == ["", " 2nd", " 3rd", " 4th"]


def test_a_default_tab_writes_only_what_adetailer_always_writes():
    assert tab_params(DetailerTab(**FACE), 0) == {
        "ADetailer model": "face_yolov8n.pt", "ADetailer confidence": "0.3", "ADetailer dilate erode": "4", "ADetailer mask blur": "4",
        "ADetailer denoising strength": "0.4", "ADetailer inpaint only masked": "True", "ADetailer inpaint padding": "32",
    }
    assert tab_params(DetailerTab(ad_model="x", ad_tab_enable=False), 0) == {}


def test_keys_follow_their_switches():
    tab = DetailerTab(ad_model="face_yolov8n.pt", ad_inpaint_only_masked=False, ad_mask_k=2, ad_use_sampler=True, ad_use_checkpoint=True,
                      ad_controlnet_model="control_v11p_sd15_inpaint", ad_cfg_scale=5.0, ad_use_clip_skip=False, ad_clip_skip=2)
    params = tab_params(tab, 1)
    assert params["ADetailer inpaint only masked 2nd"] == "False" and "ADetailer inpaint padding 2nd" not in params
    assert params["ADetailer mask only top k 2nd"] == "2" and params["ADetailer method to decide top k masks 2nd"] == "Area"
    assert params["ADetailer use separate sampler 2nd"] == "True" and params["ADetailer sampler 2nd"] == "DPM++ 2M Karras"
    assert "ADetailer scheduler 2nd" not in params  # at "Use same scheduler"
    assert params["ADetailer use separate checkpoint 2nd"] == "True" and "ADetailer checkpoint 2nd" not in params  # None is left out
    assert params["ADetailer ControlNet model 2nd"] == "control_v11p_sd15_inpaint" and "ADetailer ControlNet weight 2nd" not in params
    assert not any("CFG" in key or "CLIP" in key for key in params)


def test_infotext_round_trip_with_a_second_tab_after_a_disabled_one():
    first = DetailerTab(ad_model="face_yolov8n.pt", ad_prompt="a face, smiling [SEP] [PROMPT]", ad_confidence=0.5, ad_y_offset=-3,
                        ad_mask_merge_invert="Merge", ad_use_cfg_scale=True, ad_cfg_scale=5.0)
    third = DetailerTab(ad_model="hand_yolov8n.pt", ad_negative_prompt="extra fingers: 2", ad_mask_k=1, ad_mask_filter_method="Confidence",
                        ad_use_steps=True, ad_steps=12, ad_dilate_erode=-8)
    params = detailer_params([first, DetailerTab(), third])
    assert list(params)[-1] == "ADetailer version" and params["ADetailer version"] == "25.3.0"
    assert params["ADetailer model 3rd"] == "hand_yolov8n.pt" and params["ADetailer CFG scale"] == "5.0"
    assert not any(key.endswith(" 2nd") for key in params)
    text = "a cat\nNegative prompt: blurry\nSteps: 20, Seed: 1, " + format_parameters(params)
    tabs, issues = read_tabs(parse_infotext(text))
    assert tabs == [first, DetailerTab(), third] and issues == []
    assert detailer_params([DetailerTab()]) == {}


def test_older_keys_read_back_and_unknown_ones_are_reported():
    params = {"ADetailer model": "face_yolov8n.pt", "ADetailer conf": "30", "ADetailer dilate/erode": "8", "ADetailer inpaint full": "False",
              "ADetailer mask only top k largest": "1", "ADetailer enable": "True", "ADetailer mask merge/invert": "Merge",
              "ADetailer model 2nd": "hand_yolov8n.pt", "ADetailer use inpaint width/height 2nd": "True", "ADetailer inpaint width 2nd": "768",
              "ADetailer wobble 2nd": "3", "ADetailer confidence 2nd": "lots", "ADetailer prompt 4th": "orphan", "Steps": "20"}
    tabs, issues = read_tabs(params)
    assert len(tabs) == 4
    assert (tabs[0].ad_confidence, tabs[0].ad_dilate_erode, tabs[0].ad_inpaint_only_masked, tabs[0].ad_mask_k) == (0.3, 8, False, 1)
    assert tabs[0].ad_mask_merge_invert == "Merge" and tabs[0].ad_mask_filter_method == "Area"
    assert (tabs[1].ad_use_inpaint_width_height, tabs[1].ad_inpaint_width, tabs[1].ad_inpaint_height, tabs[1].ad_confidence) == (True, 768, 512, 0.3)
    assert not tabs[2].active and not tabs[3].active
    by_key = {issue.key: issue for issue in issues}
    assert set(by_key) == {"ADetailer wobble 2nd", "ADetailer confidence 2nd", "ADetailer prompt 4th"}
    assert by_key["ADetailer wobble 2nd"].reason == "an ADetailer setting Easel does not have"
    assert "ADetailer tab 2: ad_confidence must be a number" in by_key["ADetailer confidence 2nd"].reason
    assert by_key["ADetailer prompt 4th"].value == "orphan"
    assert read_tabs({"Steps": "20"}) == ([], [])
