"""The Outpainting tab's pure parts: the enlarged-canvas preview and its line, and the settings an
outpainted picture's infotext restores (as the controls show them)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from modules.generation.outpaint.canvas import Expansion, canvas_preview
from modules.infotext.parse import parse_infotext
from modules.infotext.restore import restore_outpaint
from modules.ui.outpainting import plan_canvas, settings_display_values

POOR_MANS = (
    "a lake\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 3, Size: 192x128, Denoising strength: 0.8, Mask blur: 4, "
    "Outpaint method: Poor man's outpainting, Outpaint directions: left down, Outpaint pixels: 64, Masked content: latent noise"
)


def test_canvas_preview_keeps_the_picture_and_checkers_the_new_area():
    source = Image.new("RGB", (40, 30), (10, 200, 30))
    shown = np.asarray(canvas_preview(source, Expansion(left=24, down=16)))
    assert shown.shape == (46, 64, 3)
    assert (shown[:30, 24:] == (10, 200, 30)).all()  # the picture, untouched
    new = shown[30 + 2 :, :]  # below the outline
    assert set(np.unique(new)) == {150, 200} and (new[..., 0] == new[..., 1]).all()  # grey checkerboard
    assert (shown[:30, 23] == (255, 140, 0)).all() and (shown[:30, 22] != (255, 140, 0)).any()  # a 1-pixel outline just outside the picture's left edge
    assert np.array_equal(np.asarray(canvas_preview(source, Expansion())), np.asarray(source))


def test_plan_canvas_says_the_sizes_and_the_rounding():
    picture = Image.new("RGB", (64, 48))
    image, line = plan_canvas(picture, ["right", "down"], 32, "Easel fill")
    assert image.size == (96, 80) and "64x48 → <b>96x80</b>: right +32, down +32" in line and "rounded" not in line
    image, line = plan_canvas(picture, ["down"], 32, "Outpainting mk2")
    assert image.size == (64, 128) and "down +80 (rounded up to a multiple of 64)" in line
    assert plan_canvas(None, ["down"], 32, "Easel fill")[0] is None
    image, line = plan_canvas(picture, [], 32, "Easel fill")
    assert image.size == (64, 48) and "Tick at least one side" in line


def test_an_outpainted_infotext_restores_its_settings_as_the_controls_show_them():
    params = parse_infotext(POOR_MANS)
    shown = settings_display_values(restore_outpaint(params).fields)
    assert shown == {"method": "Poor man's outpainting", "directions": ["left", "down"], "pixels": 64, "mask_blur": 4,
                     "inpainting_fill": "latent noise"}
    assert restore_outpaint(parse_infotext("a lake\nSteps: 20, Seed: 3, Mask blur: 4")).fields == {}  # inpainted, not outpainted
    odd = settings_display_values({"method": "Magic", "directions": ("sideways",), "pixels": 4000, "inpainting_fill": 2})
    assert odd == {"pixels": 512}  # unknown method and directions left out, pixels clamped, fill of no method dropped
    assert "inpainting_fill" not in settings_display_values({"method": "Easel fill", "inpainting_fill": 1})
