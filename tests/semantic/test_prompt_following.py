"""The demo model draws what the prompt says: the shape's colour and the background's colour, for
every named colour and shape, with the two reference samplers and with every sampler in the table."""

from __future__ import annotations

import pytest
from PIL import Image

from modules.sampling.sampler_table import sampler_labels
from tests.semantic.colours import NAMES, read
from tests.semantic.conftest import CFG
from tools.demo_shapes import SHAPES, Scene, render

# 8 colours x 3 shapes; the background cycles through the other colours (offsets 1, 3, 5: never
# the shape's own colour, each background used three times).
CASES = [(colour, shape, NAMES[(i + 1 + 2 * s) % len(NAMES)]) for i, colour in enumerate(NAMES) for s, shape in enumerate(SHAPES)]
REQUIRED = 0.9


def test_the_classifier_reads_every_training_colour_pair():
    for colour in NAMES:
        for background in NAMES:
            if colour != background:
                reading = read(render(Scene("circle", colour, background, "center", "small", (0.4, 0.6), 0.15)))
                assert (reading.foreground, reading.background) == (colour, background)
    assert read(Image.new("RGB", (64, 64), (30, 50, 220))).foreground is None


@pytest.mark.parametrize("cfg", [CFG, 7.0])
@pytest.mark.parametrize("sampler, scheduler", [("Euler a", "Automatic"), ("DPM++ 2M", "Karras")])
def test_colours_follow_the_prompt_in_at_least_90_percent(draw, sampler, scheduler, cfg):
    # at the demo's CFG 2.5 and at A1111's default 7 (measured 23-24 of 24 for each; see the model card)
    foreground_right = background_right = 0
    misses = []
    for index, (colour, shape, background) in enumerate(CASES):
        prompt = f"a {colour} {shape} on a {background} background"
        reading = read(draw(prompt, seed=1000 + index, sampler_name=sampler, scheduler=scheduler, cfg_scale=cfg)[0])
        foreground_right += reading.foreground == colour
        background_right += reading.background == background
        if (reading.foreground, reading.background) != (colour, background):
            misses.append(f"{prompt!r} -> {reading.foreground} on {reading.background}")
    print(f"\n{sampler} {scheduler} CFG {cfg}: foreground {foreground_right}/{len(CASES)}, background {background_right}/{len(CASES)}")
    assert foreground_right >= REQUIRED * len(CASES), misses
    assert background_right >= REQUIRED * len(CASES), misses


# At the demo's CFG 2.5 every sampler draws the prompt. At CFG 5 and 7, LMS, PLMS and Heun draw
# wrong colours (0-1 of 3); diffusers' own LMSDiscreteScheduler and PNDMScheduler failed the same
# way on the first version of the model: its guided predictions overshoot (see the model card).
@pytest.mark.parametrize("index, sampler", list(enumerate(sampler_labels())))
def test_every_sampler_draws_the_prompted_colours(draw, index, sampler):
    # one prompt per sampler, three seeds in one batch; two of three must be right (a single
    # unlucky seed is the model, a wrong majority is the sampler)
    colour, shape, background = CASES[(index * 7) % len(CASES)]
    prompt = f"a {colour} {shape} on a {background} background"
    images = draw(prompt, seed=2000 + index, sampler_name=sampler, batch_size=3)
    readings = [(r.foreground, r.background) for r in map(read, images)]
    assert sum(r == (colour, background) for r in readings) >= 2, f"{sampler}: {prompt!r} -> {readings}"

