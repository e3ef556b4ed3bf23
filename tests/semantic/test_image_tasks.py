"""img2img, inpainting and outpainting keep or change what they should, judged by colour."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.generation.img2img import img2img
from modules.generation.outpaint import OutpaintRequest, outpaint
from modules.generation.request import Img2ImgRequest
from tests.semantic.colours import read, share_of
from tests.semantic.conftest import CFG, SIZE
from tools.demo_shapes import Scene, render

RED_CIRCLE = Scene("circle", "red", "blue", "left", "large", (0.35, 0.5), 0.24)


def img2img_request(image: Image.Image, prompt: str, seed: int, **changes) -> Img2ImgRequest:
    base = dict(prompt=prompt, seed=seed, steps=20, cfg_scale=CFG, width=SIZE, height=SIZE, sampler_name="Euler a",
                init_images=[image], preview_every=0, save_samples=False)
    return Img2ImgRequest(**{**base, **changes})


def shape_mask(image: Image.Image) -> np.ndarray:
    """Pixels clearly unlike the picture's background colour."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return np.sqrt(((pixels - read(image).background_rgb) ** 2).sum(-1)) > 90


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks."""
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_img2img_at_low_denoising_keeps_the_shape_and_colours(demo):
    source = render(RED_CIRCLE)
    out = img2img(demo, img2img_request(source, "a red circle on a blue background", seed=11, denoising_strength=0.3)).images[0]
    reading = read(out)
    assert (reading.foreground, reading.background) == ("red", "blue")
    # measured 0.97 at denoising 0 and 0.65 at 0.3 (the demo redraws the edge); an unrelated
    # picture of the same scene overlaps by well under 0.3
    assert overlap(shape_mask(out), shape_mask(source)) > 0.55


def test_img2img_at_high_denoising_follows_a_new_prompt(demo):
    source = render(RED_CIRCLE)
    prompt = "a yellow circle on a green background"
    images = img2img(demo, img2img_request(source, prompt, seed=12, denoising_strength=0.95, batch_size=3)).images
    readings = [(r.foreground, r.background) for r in map(read, images)]
    assert sum(r == ("yellow", "green") for r in readings) >= 2, readings


def test_inpainting_a_green_square_over_the_circle_replaces_it_and_keeps_the_rest(demo):
    # the masked box covers the red circle; the demo was trained on one shape per picture, so it
    # replaces the circle with the prompted shape (asked to add a second shape beside the circle, it
    # paints background there: see the model card)
    source = render(RED_CIRCLE)
    box = (4, 12, 42, 52)
    mask = Image.new("L", source.size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    outside = np.ones((SIZE, SIZE), dtype=bool)
    outside[box[1] - 4 : box[3] + 5, box[0] - 4 : box[2] + 5] = False  # the mask and its blur
    for fill, full_res in ((1, True), (1, False), (2, True), (0, False)):  # original, latent noise, fill
        request = img2img_request(source, "a green square on a blue background", seed=13, mask=mask, mask_blur=2, inpainting_fill=fill,
                                  inpaint_full_res=full_res, inpaint_full_res_padding=4, denoising_strength=1.0 if fill else 0.8)
        out = img2img(demo, request).images[0]
        label = f"masked content {fill}, only masked {full_res}"
        # measured 0.19-0.53 green in the box, no red left, 0.07 levels of change outside
        assert share_of(out, "green", box) > 0.12, label
        assert share_of(out, "red") < 0.01, label
        difference = np.abs(np.asarray(out, dtype=np.float32) - np.asarray(source, dtype=np.float32)).max(-1)
        assert difference[outside].mean() < 3, label
        assert share_of(out, "blue", (46, 0, 64, 64)) > 0.95, label  # the background right of the mask


def test_outpainting_continues_the_background_into_the_new_area(demo):
    source = render(RED_CIRCLE)
    request = OutpaintRequest(
        img2img_request(source, "a red circle on a blue background", seed=14, denoising_strength=0.8),
        method="Easel fill", directions=("right", "down"), pixels=32,
    )
    out = outpaint(demo, request).images[0]
    assert out.size == (SIZE + 32, SIZE + 32)
    assert share_of(out, "blue", (SIZE, 0, SIZE + 32, SIZE + 32)) > 0.8  # the new column on the right
    assert share_of(out, "blue", (0, SIZE, SIZE + 32, SIZE + 32)) > 0.8  # the new row below
    kept = np.abs(np.asarray(out.crop((0, 0, SIZE, SIZE)), dtype=np.float32) - np.asarray(source, dtype=np.float32))
    assert kept.mean() < 3  # the picture itself is not repainted
