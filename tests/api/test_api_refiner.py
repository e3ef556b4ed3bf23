"""A1111's refiner fields over HTTP: `refiner_checkpoint` and `refiner_switch_at` (any checkpoint can
refine, here an SD1 one another): the picture changes, the infotext says so, an unknown refiner is a
404 naming it, and "None" or an empty name means none."""

from __future__ import annotations

import json

import numpy as np

from tests.api.api_helpers import API, decode

BASE = {"prompt": "a red circle", "steps": 4, "width": 64, "height": 64, "seed": 21, "sampler_name": "Euler"}


def pixels(answer) -> np.ndarray:
    assert answer.status_code == 200, answer.text[:300]
    return np.asarray(decode(answer.json()["images"][0])).astype(int)


def test_the_refiner_fields(api):
    client, _ = api
    plain = pixels(client.post(f"{API}/txt2img", json=BASE))
    none = pixels(client.post(f"{API}/txt2img", json={**BASE, "refiner_checkpoint": "None", "refiner_switch_at": 0.5}))
    assert np.array_equal(none, plain)
    refined = client.post(f"{API}/txt2img", json={**BASE, "refiner_checkpoint": "beta", "refiner_switch_at": 0.5})
    assert not np.array_equal(pixels(refined), plain)
    text = json.loads(refined.json()["info"])["infotexts"][0]
    assert "Refiner: beta" in text and "Refiner switch at: 0.5" in text
    missing = client.post(f"{API}/txt2img", json={**BASE, "refiner_checkpoint": "gamma-refiner"})
    assert missing.status_code == 404 and "gamma-refiner" in missing.json()["detail"]
    bad = client.post(f"{API}/txt2img", json={**BASE, "refiner_checkpoint": "beta", "refiner_switch_at": 1.5})
    assert bad.status_code == 422 and "refiner_switch_at" in bad.json()["detail"]
