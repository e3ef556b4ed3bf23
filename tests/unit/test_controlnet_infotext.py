"""ControlNet units read back from infotext (modules/controlnet/infotext.py), in each format the
extension has written: separate keys (Feb-May 2023), one lowercase value (May-Aug 2023) and the
current "Module: ..., Model: ..." value; and restoring them (modules/infotext/restore.py)."""

from __future__ import annotations

from dataclasses import fields

from modules.controlnet.infotext import read_units, unit_line
from modules.controlnet.units import ControlUnit
from modules.generation.request import Img2ImgRequest
from modules.infotext.parse import parse_infotext
from modules.infotext.restore import CONTROLNET_ELSEWHERE, restore_request

HEAD = "a red circle\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
EVERY_FIELD = {f.name for f in fields(Img2ImgRequest)}


def units_of(text: str, slots: int = 3):
    return read_units(parse_infotext(HEAD + text), slots)


def settings(unit: ControlUnit) -> dict:
    return {k: v for k, v in vars(unit).items() if k not in ("image", "mask", "low_vram", "save_detected_map", "enabled")}


def test_the_current_format_with_forges_hr_option_and_an_unknown_field():
    read = units_of('ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.7, Resize Mode: Crop and Resize, '
                    'Low Vram: False, Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.1, Guidance End: 0.5, '
                    'Pixel Perfect: False, Control Mode: Balanced, Hr Option: Low res only, Save Detected Map: True, Union Control Type: Canny", '
                    'ControlNet 1: "Module: depth_midas, Model: control_v11f1p_sd15_depth [cfd03158], Weight: 1.0, Resize Mode: Resize and Fill, '
                    'Processor Res: 384, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: True, Control Mode: ControlNet is more important"')
    assert settings(read.units[0]) == {
        "module": "canny", "model": "control_v11p_sd15_canny [d14c016b]", "weight": 0.7, "resize_mode": "Crop and Resize",
        "processor_res": 512, "threshold_a": 100.0, "threshold_b": 200.0, "guidance_start": 0.1, "guidance_end": 0.5,
        "pixel_perfect": False, "control_mode": "Balanced", "hr_option": "Low res only"}
    assert settings(read.units[1])["module"] == "depth_midas" and read.units[1].resize_mode == "Resize and Fill"
    assert read.units[1].pixel_perfect is True and read.units[1].control_mode == "ControlNet is more important"
    assert read.units[1].threshold_a == -1 and read.units[1].processor_res == 384
    assert [(i.key, i.value, i.reason) for i in read.issues] == [
        ("ControlNet 0", "Union Control Type: Canny", "a ControlNet unit setting Easel does not have")]


def test_the_middle_format_with_its_tuples_and_an_enum_written_by_an_api_client():
    read = units_of('ControlNet: "preprocessor: canny, model: control_v11p_sd15_canny [d14c016b], weight: 1, starting/ending: (0.1, 0.8), '
                    'resize mode: ResizeMode.OUTER_FIT, pixel perfect: True, control mode: My prompt is more important, '
                    'preprocessor params: (512, 100, 200)"')
    assert settings(read.units[0]) == {
        "module": "canny", "model": "control_v11p_sd15_canny [d14c016b]", "weight": 1.0, "resize_mode": "Resize and Fill",
        "processor_res": 512, "threshold_a": 100.0, "threshold_b": 200.0, "guidance_start": 0.1, "guidance_end": 0.8,
        "pixel_perfect": True, "control_mode": "My prompt is more important", "hr_option": "Both"}
    assert read.issues == []


def test_the_oldest_format_of_separate_keys_both_spellings():
    read = units_of("ControlNet-0 Enabled: True, ControlNet-0 Module: canny, ControlNet-0 Model: control_sd15_canny [fef5e48e], "
                    "ControlNet-0 Weight: 1, ControlNet-0 Guidance Start: 0.2, ControlNet-0 Guidance End: 1, "
                    "ControlNet-1 Enabled: True, ControlNet-1 Module: hed, ControlNet-1 Model: control_sd15_hed [fef5e48e], "
                    "ControlNet-1 Weight: 0.5, ControlNet-1 Guidance Start: 0, ControlNet-1 Guidance End: 1")
    assert sorted(read.units) == [0, 1]
    assert (read.units[0].module, read.units[0].guidance_start, read.units[0].weight) == ("canny", 0.2, 1.0)
    assert (read.units[1].module, read.units[1].model, read.units[1].weight) == ("hed", "control_sd15_hed [fef5e48e]", 0.5)
    read = units_of('ControlNet Enabled: True, ControlNet Preprocessor: depth, ControlNet Model: control_sd15_depth [fef5e48e], '
                    'ControlNet Weight: 0.8, ControlNet Starting Step: 0, ControlNet Ending Step: 0.6, ControlNet Resize Mode: Just Resize, '
                    'ControlNet Pixel Perfect: False, ControlNet Control Mode: Balanced, ControlNet Preprocessor Parameters: "(384, 64, 64)"')
    assert settings(read.units[0]) == {
        "module": "depth", "model": "control_sd15_depth [fef5e48e]", "weight": 0.8, "resize_mode": "Just Resize",
        "processor_res": 384, "threshold_a": 64.0, "threshold_b": 64.0, "guidance_start": 0.0, "guidance_end": 0.6,
        "pixel_perfect": False, "control_mode": "Balanced", "hr_option": "Both"}
    guess = units_of("ControlNet Enabled: True, ControlNet Module: canny, ControlNet Model: c [0], ControlNet Weight: 1, ControlNet Guess Mode: True")
    assert guess.units[0].control_mode == "ControlNet is more important"
    off = units_of("ControlNet Enabled: False, ControlNet Module: canny, ControlNet Model: c [0], ControlNet Weight: 1")
    assert off.units == {} and off.issues == []


def test_units_that_cannot_be_used_are_named_with_why():
    read = units_of('ControlNet 2: "Module: canny, Model: x, Weight: 9", ControlNet 5: "Module: canny, Model: x", '
                    'ControlNet 1: "Module: canny, Model: x, Control Mode: Loudest"')
    assert read.units == {}
    assert {(i.key, i.reason) for i in read.issues} == {
        ("ControlNet 2", "ControlNet unit 2: weight must be between 0 and 2, not 9."),
        ("ControlNet 5", "Easel has 3 ControlNet unit slots (setting control_net_unit_count)"),
        ("ControlNet 1", "ControlNet unit 1: control_mode must be one of Balanced, My prompt is more important, ControlNet is more "
                         "important (or 0-2), not 'Loudest'."),
    }


def test_what_easel_writes_reads_back_the_same():
    unit = ControlUnit(module="canny", model="easel-demo-canny [e0a9bb85]", weight=0.65, resize_mode="Resize and Fill", processor_res=448,
                       threshold_a=80.0, threshold_b=160.0, guidance_start=0.1, guidance_end=0.9, pixel_perfect=True,
                       control_mode="My prompt is more important")
    line = unit_line({name: getattr(unit, name) for name in vars(unit)})
    assert line.startswith("Module: canny, Model: easel-demo-canny [e0a9bb85], Weight: 0.65, Resize Mode: Resize and Fill, Processor Res: 448")
    read = units_of(f'ControlNet 0: "{line}"')
    assert settings(read.units[0]) == settings(unit) and read.issues == []


def test_restoring_puts_units_where_the_target_takes_them_and_names_them_elsewhere():
    text = HEAD + 'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.5, Guidance End: 0.5"'
    restored = restore_request(parse_infotext(text), EVERY_FIELD)
    assert restored.fields["control_units"][0].weight == 0.5 and restored.not_applied == []
    elsewhere = restore_request(parse_infotext(text), EVERY_FIELD - {"control_units"})
    assert "control_units" not in elsewhere.fields
    assert [(i.key, i.reason) for i in elsewhere.not_applied] == [("ControlNet 0", CONTROLNET_ELSEWHERE)]
