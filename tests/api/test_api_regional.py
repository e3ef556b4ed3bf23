"""Regional prompts through A1111's API as Regional Prompter's clients send them (its 20 positional
arguments under "Regional Prompter"): the picture changes, the infotext carries the RP keys and
rebuilds the settings from an `infotext`; what Easel does not run is a 422 naming the argument."""

from __future__ import annotations

import json

import numpy as np

from tests.api.api_helpers import API, decode

BASE = {"width": 64, "height": 64, "steps": 4, "seed": 9, "cfg_scale": 5, "sampler_name": "Euler",
        "prompt": "a red circle BREAK a blue square"}


def rp_args(mode: str = "Matrix", calc: str = "Attention", ratios: str = "1,1") -> list:
    # active, debug, mode, matrix submode, mask submode, prompt submode, ratios, base ratios, use base, use common, use ncommon,
    # calc mode, options, lora neg te, lora neg u, threshold, mask, lora stop, lora hires stop, flip
    return [True, False, mode, "Columns", "Mask", "Prompt", ratios, "0.2", False, False, False, calc, False, "0", "0", "0.4", None, 0, 0, False]


def pixels(answer) -> np.ndarray:
    assert answer.status_code == 200, answer.text
    return np.asarray(decode(answer.json()["images"][0])).astype(int)


def test_regions_change_the_picture_and_write_the_extensions_keys(api):
    client, _ = api
    plain = client.post(f"{API}/txt2img", json=BASE)
    regional = client.post(f"{API}/txt2img", json={**BASE, "alwayson_scripts": {"Regional Prompter": {"args": rp_args()}}})
    assert np.abs(pixels(regional) - pixels(plain)).mean() > 0.5
    text = json.loads(regional.json()["info"])["infotexts"][0]
    for key in ("RP Active: True", "RP Divide mode: Matrix", "RP Matrix submode: Columns", "RP Calc Mode: Attention", 'RP Ratios: "1,1"'):
        assert key in text, key
    again = client.post(f"{API}/txt2img", json={"infotext": text})  # the settings come back from the infotext
    assert np.array_equal(pixels(again), pixels(regional))
    lower = client.post(f"{API}/txt2img", json={**BASE, "alwayson_scripts": {"regional prompter": {"args": rp_args()}}})
    assert np.array_equal(pixels(lower), pixels(regional))


def test_what_easel_does_not_run_is_named(api):
    client, _ = api
    for args, words in ((rp_args(mode="Prompt", calc="Latent"), "Prompt mode"),
                        (rp_args(mode="Mask"), "Mask mode needs a mask picture")):
        answer = client.post(f"{API}/txt2img", json={**BASE, "alwayson_scripts": {"Regional Prompter": {"args": args}}})
        assert answer.status_code == 422 and words in answer.json()["detail"], answer.text[:300]
    assert client.post(f"{API}/txt2img", json=BASE).status_code == 200


def test_latent_mode_runs_and_is_written(api):
    client, _ = api
    attention = client.post(f"{API}/txt2img", json={**BASE, "alwayson_scripts": {"Regional Prompter": {"args": rp_args()}}})
    latent = client.post(f"{API}/txt2img", json={**BASE, "alwayson_scripts": {"Regional Prompter": {"args": rp_args(calc="Latent")}}})
    assert latent.status_code == 200, latent.text[:300]
    assert "RP Calc Mode: Latent" in json.loads(latent.json()["info"])["infotexts"][0]
    assert not np.array_equal(pixels(latent), pixels(attention))


def test_prompt_mode_from_the_extensions_args(api):
    client, _ = api
    args = rp_args(mode="Prompt")
    args[5], args[15] = "Prompt-Ex", "0.5"  # prompt submode, threshold
    answer = client.post(f"{API}/txt2img", json={**BASE, "prompt": "a red cat on a mat BREAK (blue:1.4), cat",
                                               "alwayson_scripts": {"Regional Prompter": {"args": args}}})
    assert answer.status_code == 200, answer.text[:300]
    text = json.loads(answer.json()["info"])["infotexts"][0]
    assert "RP Divide mode: Prompt" in text and "RP Prompt submode: Prompt-Ex" in text and "RP threshold: 0.5" in text
    missing = client.post(f"{API}/txt2img", json={**BASE, "prompt": "a red cat BREAK blue, hat",
                                                "alwayson_scripts": {"Regional Prompter": {"args": args}}})
    assert missing.status_code == 422 and "'hat'" in missing.json()["detail"]
