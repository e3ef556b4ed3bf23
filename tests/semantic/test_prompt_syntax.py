"""Prompt emphasis and prompt editing move the picture the way the syntax says."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.semantic.colours import read


def redness(images: list[Image.Image]) -> float:
    """Mean (red - blue) of the foreground pixels over the pictures, in 0-255 units."""
    values = []
    for image in images:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3)
        unlike = np.sqrt(((pixels - read(image).background_rgb) ** 2).sum(-1)) > 90
        if unlike.any():
            values.append(float((pixels[unlike, 0] - pixels[unlike, 2]).mean()))
    return float(np.mean(values)) if values else 0.0


def test_prompt_editing_switches_colour_at_the_right_step(draw):
    # [from:to:when]: the early steps settle the colours, so switching early draws "to",
    # switching late draws "from"; the edits at 0 and 1 are exactly the plain prompts
    red, blue = "a red circle on a white background", "a blue circle on a white background"
    seed = dict(seed=31, batch_size=3)
    plain_red, plain_blue = draw(red, **seed), draw(blue, **seed)
    early = draw(f"[{red}:{blue}:0.1]", **seed)
    late = draw(f"[{red}:{blue}:0.9]", **seed)
    assert redness(plain_red) > 100 and redness(plain_blue) < -100
    assert redness(late) > redness(early) + 100
    assert [read(i).foreground for i in early].count("blue") >= 2
    assert [read(i).foreground for i in late].count("red") >= 2


@pytest.mark.parametrize("first, second", [("red", "blue"), ("blue", "red")])
def test_emphasis_tips_a_two_colour_mix_towards_the_weighted_colour(draw, first, second):
    # "a red blue circle" is a mix of the two; weighting either word tips the mix its way,
    # whichever of them comes first
    seed = dict(seed=41, batch_size=4)
    weighted = {
        colour: redness(draw(f"a ({first}:{1.5 if colour == first else 0.7}) ({second}:{1.5 if colour == second else 0.7}) circle on a white background", **seed))
        for colour in (first, second)
    }
    assert weighted["red"] > weighted["blue"] + 80


def test_moderate_emphasis_keeps_a_single_colour(draw):
    # a weight moves a word's pull, not its meaning: one colour weighted up or down stays that colour
    for colour in ("red", "green", "blue"):
        for weight in (0.5, 1.5):
            images = draw(f"a ({colour}:{weight}) circle on a white background", seed=51, batch_size=4)
            assert [read(i).foreground for i in images].count(colour) >= 3, (colour, weight)
