"""The detailer on the demo model, with the shipped shape detector (models/adetailer/
easel-demo-shapes.safetensors): "a red circle on a white background", then a tab with the prompt
"a blue circle" at denoising 0.9. Inside the detected box the circle turns blue; outside the region
and its blurred edge (the box grown by ADetailer's dilation 4 and mask blur 4, plus rounding) not a
pixel changes. Over several seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modules.detailer.args import DetailerRequest, DetailerTab
from modules.detailer.catalog import DetectorCatalog
from modules.detailer.stage import detail
from modules.generation.engine import GenerationResult
from modules.generation.img2img import img2img
from modules.generation.txt2img import txt2img
from tests.semantic.colours import share_of
from tests.semantic.conftest import request

DETECTOR = Path(__file__).resolve().parents[2] / "models" / "adetailer" / "easel-demo-shapes.safetensors"
SEEDS = (300, 301, 302, 303)
REACH = 4 + 4 * 2 + 2  # dilation 4, the blur's kernel (about twice its radius), rounding
BLUE_INSIDE = 0.2  # share of blue pixels in the detected box after the detailer (none before; a circle fills at most pi/4 of its box)


@pytest.fixture(scope="module")
def detectors() -> DetectorCatalog:
    assert DETECTOR.is_file(), f"{DETECTOR} is missing: run tools/train_demo_detector.py"
    return DetectorCatalog([DETECTOR.parent])


@pytest.mark.parametrize("seed", SEEDS)
def test_the_detected_circle_is_repainted_blue_and_nothing_outside_changes(demo, detectors, seed):
    job = request("a red circle on a white background", seed)
    made = txt2img(demo, job)
    before = made.images[0].copy()
    found = detectors.detector(DETECTOR.name).detect(before, 0.3)
    assert len(found) >= 1, "the demo detector found no shape"
    areas = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
    x1, y1, x2, y2 = (int(round(v)) for v in found.boxes[int(areas.argmax())])  # the tab keeps the largest (ad_mask_k 1)
    assert share_of(before, "blue", (x1, y1, x2, y2)) < 0.05

    tab = DetailerTab(ad_model=DETECTOR.name, ad_prompt="a blue circle", ad_denoising_strength=0.9, ad_mask_k=1)
    result = GenerationResult(images=[before.copy()], seeds=made.seeds, subseeds=made.subseeds, image_seeds=made.image_seeds)
    detail(result, job, DetailerRequest(True, False, [tab]), detectors, lambda sub, on_step: img2img(demo, sub, on_step=on_step))
    after = result.images[0]
    assert result.extra_parameters["ADetailer regions"] == "1"
    blue, red = share_of(after, "blue", (x1, y1, x2, y2)), share_of(after, "red", (x1, y1, x2, y2))
    print(f"seed {seed}: box {(x1, y1, x2, y2)}, inside: blue {blue:.2f}, red {red:.2f} (red before {share_of(before, 'red', (x1, y1, x2, y2)):.2f})")
    assert blue >= BLUE_INSIDE and blue > red
    outside = np.ones((before.height, before.width), bool)
    outside[max(y1 - REACH, 0):y2 + REACH, max(x1 - REACH, 0):x2 + REACH] = False
    changed = np.abs(np.asarray(after).astype(int) - np.asarray(before).astype(int)).max(axis=2)
    assert changed[outside].max() == 0
