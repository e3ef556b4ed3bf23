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


@pytest.mark.xfail(reason="the demo reads its colours from the tokens after the colour word, so weighting that word does not tip it "
                          "(measured at CFG 2.5: redness 112 red-weighted vs 134 blue-weighted; see the model card); issue 9", strict=False)
def test_emphasis_strengthens_the_weighted_colour(draw):
    # "a red blue circle" is ambiguous; emphasis on either colour tips it that way
    seed = dict(seed=41, batch_size=4)
    towards_red = draw("a (red:1.6) (blue:0.6) circle on a white background", **seed)
    towards_blue = draw("a (red:0.6) (blue:1.6) circle on a white background", **seed)
    assert redness(towards_red) > redness(towards_blue) + 50
