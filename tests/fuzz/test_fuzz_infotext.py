"""Property tests of infotext (modules/infotext/create.py, parse.py): what is written is read back
with the same values, and parsing never fails and never takes long on any text.

Budgets: see tests/fuzz/fuzzing.py (EASEL_FUZZ_SCALE; bench/fuzz.py runs these for minutes)."""

from __future__ import annotations

import re
from dataclasses import fields as dataclass_fields

from hypothesis import assume, example, strategies as st

from modules.generation.request import RNG_SOURCES, GenerationRequest, Img2ImgRequest
from modules.infotext.create import CORE_KEYS, create_infotext, format_value, join_infotext, sampler_and_schedule
from modules.infotext.parse import (
    MISSING_DEFAULTS, PARAM_PATTERN, SIZE_PATTERN, find_parameters, parse_infotext,
)
from modules.infotext.restore import restore_outpaint, restore_request
from modules.sampling.sampler_table import SAMPLERS, sampler_labels
from modules.sampling.schedules import SCHEDULES
from tests.fuzz.fuzzing import fuzz, timed

_TRICKY_VALUES = ['"x"', '""', '"', '\\"', "\\", " lead", "trail ", "a, b", "k: v", "line\nbreak", "\r", "", "x" * 300,
                  "5x5", "05x007", "\u0663x\u0663", "\u65e5\u672c, \U0001f436", '{"a": [1, 2]}', "Steps: 3", ", ,", "\t"]
EVERY_FIELD = {f.name for f in dataclass_fields(Img2ImgRequest)}
texts = st.one_of(st.sampled_from(_TRICKY_VALUES), st.text(max_size=30))
values = st.one_of(st.integers(-(2**63), 2**63), st.floats(allow_nan=False, allow_infinity=False), texts)
EXTRA_KEYS = ["Hires upscale", "Hires resize", "Hires steps", "Hires upscaler", "Hires prompt", "Hires negative prompt",
              "Mask blur", "Mask mode", "Masked content", "Inpaint area", "Masked area padding", "Noise multiplier",
              "Emphasis", "Lora hashes", "TI hashes", "Outpaint method", "Outpaint directions", "Version", "User"]
_random_keys = st.from_regex(r"[A-Za-z][A-Za-z0-9 _/-]{0,12}[A-Za-z0-9]", fullmatch=True).filter(
    lambda key: not re.search(r"-[12]$", key) and key not in ("Prompt", "Negative prompt", "Sampler"))
keys = st.one_of(st.sampled_from([key for key in (*CORE_KEYS, *EXTRA_KEYS) if key != "Sampler"]), _random_keys)


def _prompt_lines(max_lines: int):
    line = st.text(st.characters(exclude_characters="\n"), max_size=20).map(str.strip)
    return st.lists(line, max_size=max_lines).map("\n".join).filter(
        lambda text: not text.startswith("\n") and not any(row.startswith("Negative prompt:") for row in text.split("\n")))


prompts = st.one_of(_prompt_lines(4), st.sampled_from(["a, (b:1.2), [c:d:5]", 'say "hi": now', "\u65e5\u672c\n2nd line"]))


@fuzz(120, prompt=prompts, negative=prompts, sampler=st.sampled_from(sampler_labels()),
      params=st.dictionaries(keys, values, max_size=8))
@example(prompt="p", negative="", sampler="Euler", params={"Model": '"x"'})  # was read back as x
@example(prompt="p", negative="", sampler="Euler", params={"Model": " lead"})  # was read back as "lead"
@example(prompt="p", negative="", sampler="Euler", params={"Version": "v1 "})  # was read back as "v1"
@example(prompt="p", negative="", sampler="Euler", params={"Model": '""'})  # was read back as ""
def test_parameters_written_are_read_back(prompt, negative, sampler, params):
    params = {key: value for key, value in params.items() if format_value(value) != key}  # A1111 writes those bare
    line = {"Steps": 20, "Sampler": sampler, "CFG scale": 7.0, "Seed": 1, **params}
    parsed = parse_infotext(join_infotext(prompt, negative, line))
    expected = {"Prompt": prompt, "Negative prompt": negative}
    for key, value in line.items():
        text = format_value(value)
        size = SIZE_PATTERN.match(text)
        if size:
            expected[f"{key}-1"], expected[f"{key}-2"] = size.groups()
        else:
            expected[key] = text
    for key, default in MISSING_DEFAULTS.items():
        expected.setdefault(key, default)
    assert parsed == expected


_sizes = st.integers(8, 512).map(lambda n: n * 8)


@fuzz(120, prompt=prompts, negative=prompts, sampler=st.sampled_from([row.label for row in SAMPLERS]),
      scheduler=st.sampled_from([row.label for row in SCHEDULES]), steps=st.integers(1, 500),
      cfg=st.floats(0, 100), width=_sizes, height=_sizes, seed=st.integers(0, 2**32 - 1), subseed=st.integers(0, 2**32 - 1),
      strength=st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1), resize=st.tuples(st.integers(0, 4096), st.integers(0, 4096)),
      clip_skip=st.integers(1, 12), ensd=st.integers(0, 2**31), rng=st.sampled_from(RNG_SOURCES), tiling=st.booleans(),
      model=st.none() | texts, model_hash=st.none() | st.text("0123456789abcdef", min_size=10, max_size=64))
def test_requests_written_are_read_back(prompt, negative, sampler, scheduler, steps, cfg, width, height, seed, subseed,
                                        strength, resize, clip_skip, ensd, rng, tiling, model, model_hash):
    assume(model is None or (model != "Model" and not SIZE_PATTERN.match(model)))  # bare flag / split WxH
    request = GenerationRequest(
        prompt=prompt, negative_prompt=negative, sampler_name=sampler, scheduler=scheduler, steps=steps, cfg_scale=cfg,
        width=width, height=height, seed=seed, subseed=subseed, subseed_strength=strength, seed_resize_from_w=resize[0],
        seed_resize_from_h=resize[1], clip_skip=clip_skip, eta_noise_seed_delta=ensd, rng_source=rng, tiling=tiling,
    ).validate()
    params = parse_infotext(create_infotext(request, seed, subseed, model_name=model, model_hash=model_hash))
    restored = restore_request(params, EVERY_FIELD)
    assert restored.not_applied == []  # Easel's own infotext restores in full
    fields = restored.fields
    label, schedule = sampler_and_schedule(sampler, scheduler)
    expected = {
        "enable_hr": False, "prompt": prompt, "negative_prompt": negative, "steps": steps, "sampler_name": label,
        "scheduler": schedule, "cfg_scale": cfg, "seed": seed, "width": width, "height": height, "clip_skip": clip_skip,
        "rng_source": rng, "inpainting_mask_invert": 0, "inpainting_fill": 1, "inpaint_full_res": False,
        "inpaint_full_res_padding": 32, "hr_sampler_name": None, "hr_scheduler": None, "hr_prompt": "", "hr_negative_prompt": "",
    }
    if strength > 0:
        expected |= {"subseed": subseed, "subseed_strength": strength}
    if resize[0] > 0 and resize[1] > 0:
        expected |= {"seed_resize_from_w": resize[0], "seed_resize_from_h": resize[1]}
    if ensd and next(row for row in SAMPLERS if row.label == label).uses_ensd:
        expected["eta_noise_seed_delta"] = ensd
    if tiling:
        expected["tiling"] = True
    assert fields == expected
    assert params.get("Model") == (model or None)
    assert params.get("Model hash") == (model_hash[:10] if model_hash else None)


_LINE_TOKENS = ["Steps", "Model hash", "a", "Z", "_", "1", " ", "  ", "\t", "-", "/", ":", ": ", ",", ", ", '"', "\\", '\\"',
                "x", "\u00e9", "\u3000", "\u0663", "\n", "Size: 5x5"]
lines = st.lists(st.sampled_from(_LINE_TOKENS), max_size=30).map("".join)


@fuzz(300, line=lines | st.text(max_size=60))
@example(line='a: "x, b: "y", c: 1')
@example(line="-Steps: 1,\tSeed: 2 \t Model: x")
def test_parameter_scan_is_a1111s_findall(line):
    assert find_parameters(line) == PARAM_PATTERN.findall(line)


_long_units = st.lists(st.sampled_from(_LINE_TOKENS), min_size=1, max_size=6).map("".join)


@fuzz(12, shrink=False, unit=_long_units)
@example(unit="a ")  # 16,000 characters took 5.6 s, 100,000 minutes (PARAM_PATTERN retried at every position)
@example(unit='a: "x, ')
def test_long_infotext_parses_in_linear_time(unit):
    text = "prompt\n" + unit * (60_000 // len(unit))
    result, seconds = timed(parse_infotext, text)
    assert isinstance(result, dict), result
    assert seconds < 2.0, (unit, seconds)


infotexts = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(_LINE_TOKENS + ["Negative prompt:", "Negative prompt: x\n", "Sampler: DPM++ 2M Karras",
                                                       "Steps: 1e400", "Steps: nan", "CFG scale: inf", "Size: 99999999999999999999x1",
                                                       "Hires upscale: 2", "Outpaint method: x", "Outpaint pixels: -1"]),
                       st.text(max_size=5)), max_size=40).map("".join),
)


@fuzz(200, text=infotexts)
@example(text="p\nSteps: 1e400, Seed: 99999999999999999999999, CFG scale: nan")
def test_any_text_parses_to_strings_and_request_fields_never_fail(text):
    params = parse_infotext(text)
    assert isinstance(params["Prompt"], str) and isinstance(params["Negative prompt"], str)
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in params.items())
    fields = restore_request(params, EVERY_FIELD).fields
    for name in ("cfg_scale", "subseed_strength", "denoising_strength", "hr_scale"):
        assert name not in fields or fields[name] == fields[name] and abs(fields[name]) != float("inf")
    restore_outpaint(params)
