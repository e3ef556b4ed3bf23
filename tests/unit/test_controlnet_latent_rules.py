"""The units' rules beyond residuals, checked against hand computations: inpaint_only's hold of the
unmasked latent and its paste-back, tile_colorfix(+sharp)'s low-frequency swap, recolor's L / V
replacement, and the seed shuffle draws with (modules/controlnet/apply.py, service.py)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image

from modules.controlnet.apply import ControlPlan, LatentRule, box_blur
from modules.controlnet.preprocess import PREPROCESSORS, content_shuffle, detect
from modules.controlnet.service import PixelRule, paste_mask, shuffle_seed


def test_inpaint_holds_the_unmasked_latent_by_the_weight():
    torch.manual_seed(0)
    x0, origin = torch.randn(2, 4, 8, 8), torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :32] = 1  # repaint the left half
    rule = LatentRule("inpaint", 0.6, torch.zeros(1, 3, 64, 64), mask=mask, latent=origin)
    out = rule.apply(x0, None)
    # max-pooled 10x10, stride 8, padding 1: latent column j sees pixels 8j-1 .. 8j+8, so columns
    # 0-4 touch the masked half (column 4 sees pixel 31) and 5-7 do not
    assert torch.allclose(out[..., :5], x0[..., :5], atol=1e-6)
    assert torch.allclose(out[..., 5:], 0.6 * origin.expand(2, -1, -1, -1)[..., 5:] + 0.4 * x0[..., 5:], atol=1e-6)
    full = LatentRule("inpaint", 3.0, torch.zeros(1, 3, 64, 64), mask=mask, latent=origin).apply(x0, None)  # weight clamped to 1
    assert torch.allclose(full[..., 5:], origin.expand(2, -1, -1, -1)[..., 5:])


def test_colorfix_swaps_the_low_frequencies_and_sharp_softens_the_unconditional_rows():
    checker = (torch.arange(8)[None, :] + torch.arange(8)[:, None]) % 2 * 2.0 - 1.0  # +-1, mean 0
    x0 = (checker + 3.0).expand(2, 4, 8, 8).clone()
    origin = torch.full((1, 4, 8, 8), -2.0)
    rule = LatentRule("colorfix", 1.0, torch.zeros(1, 3, 64, 64), variation=3, latent=origin)
    out = rule.apply(x0, None)
    assert torch.allclose(out, x0 - box_blur(x0, 3) + box_blur(origin.expand(2, -1, -1, -1), 3), atol=1e-6)
    centre = out[0, 0, 3:5, 3:5]  # away from the edges the 7x7 mean of the checker is +-1/49 around 3
    assert torch.allclose(centre - checker[3:5, 3:5], torch.full((2, 2), -2.0) - (box_blur(x0, 3)[0, 0, 3:5, 3:5] - 3.0), atol=1e-6)
    half = LatentRule("colorfix", 0.5, torch.zeros(1, 3, 64, 64), variation=3, latent=origin).apply(x0, None)
    assert torch.allclose(half, 0.5 * out + 0.5 * x0, atol=1e-6)
    sharp = LatentRule("colorfix", 1.0, torch.zeros(1, 3, 64, 64), variation=3, sharpness=40.0, latent=origin)
    rows = torch.tensor([False, True])
    shaped = sharp.apply(x0, rows)
    assert torch.allclose(shaped[0], out[0], atol=1e-6)  # the conditional row as without +sharp
    assert torch.allclose(shaped[1], 0.4 * box_blur(out, 3)[1] + 0.6 * out[1], atol=1e-6)


def test_a_plan_applies_its_rules_in_order_and_none_leaves_x0_alone():
    x0 = torch.randn(1, 4, 8, 8)
    assert torch.equal(ControlPlan([], 10, lambda: 0).adjust_x0(x0, None), x0)
    origin = torch.zeros(1, 4, 8, 8)
    rules = [LatentRule("colorfix", 1.0, torch.zeros(1, 3, 64, 64), variation=3, latent=origin),
             LatentRule("inpaint", 1.0, torch.zeros(1, 3, 64, 64), mask=torch.zeros(1, 1, 64, 64), latent=origin)]
    assert torch.equal(ControlPlan([], 10, lambda: 0, rules).adjust_x0(x0, None), torch.zeros(1, 4, 8, 8))  # nothing repainted: all origin


def test_inpaint_only_pastes_back_outside_the_grown_and_blurred_mask():
    mask = np.zeros((64, 64), np.float32)
    mask[20:40, 20:40] = 1
    soft = paste_mask(mask)
    # dilated by 3 px each side (rows 17-42), then a 7-row mean: full at the mask's edge, fading out
    assert soft[30, 30] == 1 and soft[20, 30] == 1 and np.isclose(soft[17, 30], 4 / 7)
    assert np.isclose(soft[14, 30], 1 / 7) and soft[13, 30] == 0
    source = np.full((64, 64, 3), 200, np.uint8)
    generated = Image.fromarray(np.full((64, 64, 3), 50, np.uint8))
    out = np.asarray(PixelRule("paste", source, soft).apply(generated)).astype(int)
    assert (out[30, 30] == 50).all() and (out[5, 5] == 200).all()
    assert 50 < out[20 - 5, 30, 0] < 200
    other_size = Image.new("RGB", (32, 32), "red")
    assert PixelRule("paste", source, soft).apply(other_size) is other_size


def test_recolor_puts_the_map_in_as_lightness_or_value():
    rng = np.random.default_rng(1)
    picture = Image.fromarray(rng.integers(110, 150, (24, 24, 3), dtype=np.uint8))  # mild colours: every lightness stays in gamut
    lightness = np.tile(np.linspace(40, 220, 24).astype(np.uint8), (24, 1))
    out = np.asarray(PixelRule("luminance", lightness).apply(picture))
    assert np.abs(cv2.cvtColor(out, cv2.COLOR_RGB2LAB)[..., 0].astype(int) - lightness).max() <= 3
    value = np.asarray(PixelRule("intensity", lightness).apply(picture))
    assert np.abs(value.max(axis=2).astype(int) - lightness).max() <= 1


def test_shuffle_draws_with_the_extensions_seed():
    assert shuffle_seed(5, -1) == 10 and shuffle_seed(5, 7) == 12 and shuffle_seed(2**32 - 1, -1) == 2**32 - 2
    picture = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    seeded = detect(PREPROCESSORS["shuffle"], picture, 64, -1, -1, seed=10)
    assert np.array_equal(seeded, content_shuffle(np.asarray(picture), 10))
    assert not np.array_equal(seeded, detect(PREPROCESSORS["shuffle"], picture, 64, -1, -1, seed=11))
    assert np.array_equal(detect(PREPROCESSORS["shuffle"], picture, 64, -1, -1), content_shuffle(np.asarray(picture), 0))  # a preview
