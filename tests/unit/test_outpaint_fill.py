"""Outpainting's pure parts: how far each side grows, masks, windows and tiles as A1111 lays them
out, latent-cell padding, the Easel fill's pre-paint, mk2's matched noise, request validation,
infotext keys and step numbering across passes. No model needed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.errors import UserError
from modules.generation.engine import StepEvent
from modules.generation.outpaint import OUTPAINT_METHODS, OutpaintRequest, outpaint_parameters, resolve
from modules.generation.outpaint import canvas as cv
from modules.generation.outpaint.methods import blur_radius, easel_prefill
from modules.generation.outpaint.passes import PassRunner, steps_per_pass
from modules.generation.outpaint.spectral import match_histogram, matched_noise
from modules.generation.outpaint.task import describe_adjustments
from modules.generation.request import Img2ImgRequest


def gradient(width: int = 32, height: int = 24) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 90)], axis=2).astype(np.uint8))


def request(**changes) -> OutpaintRequest:
    base = Img2ImgRequest(prompt="p", width=64, height=64, steps=10, denoising_strength=0.8, init_images=[gradient()])
    return OutpaintRequest(base, **changes)


# growth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size, directions, pixels, multiple, expected", [
    ((64, 64), ("left", "right"), 100, 64, cv.Expansion(128, 128, 0, 0)),  # 264 -> 320, shared 128/128
    ((64, 64), ("left",), 100, 64, cv.Expansion(128, 0, 0, 0)),  # 164 -> 192: all of it on the left
    ((100, 80), ("up",), 40, 64, cv.Expansion(0, 0, 48, 0)),  # 120 -> 128
    ((100, 80), ("left", "right", "up", "down"), 40, 64, cv.Expansion(46, 46, 56, 56)),  # 180 -> 192: 40*92//80; 160 -> 192
    ((64, 64), ("right", "down"), 24, 8, cv.Expansion(0, 24, 0, 24)),  # already whole cells
    ((70, 50), ("left", "right"), 16, 8, cv.Expansion(17, 17, 0, 0)),  # 102 -> 104; the height stays 50
])
def test_plan_expansion_follows_a1111s_rule(size, directions, pixels, multiple, expected):
    grown = cv.plan_expansion(size, directions, pixels, multiple)
    assert grown == expected
    width, height = grown.size(size)
    if grown.left or grown.right:
        assert width % multiple == 0 and grown.left + grown.right >= pixels * (("left" in directions) + ("right" in directions))
    else:
        assert width == size[0]


def test_expansion_box_and_side_order():
    grown = cv.Expansion(left=8, right=16, up=0, down=24)
    assert grown.size((32, 40)) == (56, 64)
    assert grown.box((32, 40)) == (8, 0, 40, 40)
    assert [side for side, _ in grown.sides()] == ["left", "right", "down"]


def test_place_and_grow_side_put_the_picture_where_the_box_says():
    picture = gradient()
    canvas = cv.place_on_canvas(picture, cv.Expansion(left=8, up=16))
    assert canvas.size == (40, 40)
    assert np.array_equal(np.asarray(canvas.crop((8, 16, 40, 40))), np.asarray(picture))
    assert np.asarray(canvas)[:16].max() == 0  # the new area is black, as A1111 makes it
    grown, old = cv.grow_side(picture, "right", 24)
    assert grown.size == (56, 24) and old == (0, 0, 32, 24)


def test_keep_mask_reaches_into_the_picture_on_the_named_sides():
    mask = np.asarray(cv.keep_mask((48, 40), (8, 8, 40, 32), {"left": 4}))
    assert mask[8:32, 12:40].max() == 0  # kept: the box less 4 px on the left
    assert mask[8:32, 8:12].min() == 255 and mask[:8].min() == 255 and mask[:, 40:].min() == 255


@pytest.mark.parametrize("side, expected", [
    ("left", (0, 0, 64, 100)), ("right", (136, 0, 200, 100)), ("up", (0, 0, 200, 48)), ("down", (0, 52, 200, 100)),
])
def test_edge_window_is_at_the_new_edge_and_no_larger_than_the_limit(side, expected):
    assert cv.edge_window((200, 100), side, (64, 48)) == expected
    assert cv.edge_window((40, 30), side, (64, 48)) == (0, 0, 40, 30)  # the canvas is smaller than the limit


def test_tile_grid_matches_a1111_split_grid():
    grid = cv.tile_grid((320, 192), (128, 128), 64)
    assert grid.rows == [(0, [0, 64, 128, 192]), (64, [0, 64, 128, 192])]
    uneven = cv.tile_grid((300, 128), (128, 128), 32)  # cols = ceil(268 / 96) = 3, dx = 86
    assert uneven.rows == [(0, [0, 86, 172])]
    assert cv.tile_grid((64, 64), (512, 512), 128).rows == [(0, [0])]  # one tile, never larger than the canvas


def test_tile_overlap_stays_below_half_a_tile():
    grid = cv.tile_grid((192, 64), (64, 64), 128)  # A1111 would divide by zero here
    assert grid.overlap == 32 and grid.rows[0][1][-1] == 128


def test_combine_tiles_gives_back_the_picture_and_fades_overlaps():
    picture = gradient(96, 64)
    grid = cv.tile_grid(picture.size, (48, 48), 16)
    assert np.array_equal(np.asarray(cv.combine_tiles(grid, [picture.crop(b) for b in grid.boxes()])), np.asarray(picture))
    flat = cv.tile_grid((80, 48), (48, 48), 16)
    tiles = [Image.new("RGB", (48, 48), (0, 0, 0)), Image.new("RGB", (48, 48), (255, 255, 255))]
    row = np.asarray(cv.combine_tiles(flat, tiles))[0, :, 0].astype(int)
    assert row[31] == 0 and row[48] == 255  # before and after the 16-pixel overlap at x = 32
    assert all(np.diff(row[32:48]) > 0)  # a linear fade across it


def test_inside_box():
    assert cv.inside((8, 8, 16, 16), (0, 0, 16, 16)) and not cv.inside((8, 8, 24, 16), (0, 0, 16, 16))


def test_pad_to_multiple_repeats_the_last_row_and_column():
    picture = gradient(30, 21)
    padded = cv.pad_to_multiple(picture, 8)
    values = np.asarray(padded)
    assert padded.size == (32, 24)
    assert np.array_equal(values[:21, :30], np.asarray(picture))
    assert np.array_equal(values[:21, 31], values[:21, 29]) and np.array_equal(values[23], values[20])
    assert cv.pad_to_multiple(gradient(32, 24), 8).size == (32, 24)
    assert cv.pad_to_multiple(Image.new("L", (9, 8), 255)).mode == "L"
    assert cv.pad_to_multiple(gradient(72, 24), 8, minimum=64).size == (72, 64)


# Easel fill ---------------------------------------------------------------------------------------


def test_distance_outside_is_zero_inside_and_euclidean_outside():
    distance = cv.distance_outside((20, 20), (5, 5, 15, 15))
    assert distance[5:15, 5:15].max() == 0
    assert distance[10, 4] == 1 and distance[10, 0] == 5 and distance[4, 4] == pytest.approx(2**0.5)


def test_stretch_edges_continues_the_outermost_pixels():
    picture = gradient(16, 12)
    canvas = cv.place_on_canvas(picture, cv.Expansion(left=4, right=4, up=4))
    stretched = cv.stretch_edges(canvas, (4, 4, 20, 16))
    values = np.asarray(picture, dtype=np.float32)
    assert np.array_equal(stretched[4:16, 4:20], values)
    assert np.array_equal(stretched[4:16, 0], values[:, 0]) and np.array_equal(stretched[4:16, 23], values[:, -1])
    assert np.array_equal(stretched[0, 4:20], values[0]) and np.array_equal(stretched[0, 0], values[0, 0])


def test_graded_blur_keeps_the_picture_and_smooths_far_away():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    distance = cv.distance_outside((40, 40), (0, 0, 20, 40))
    out = cv.graded_blur(values, distance, per_pixel=0.5)
    assert np.allclose(out[:, :20], values[:, :20])
    assert out[:, 36:].std() < out[:, 21:23].std() < values[:, 21:23].std()


def test_smoothstep_ramps_from_zero_to_one():
    ramp = cv.smoothstep(np.array([0.0, 4.0, 8.0, 16.0, 30.0]), 16)
    assert ramp[0] == 0 and ramp[2] == pytest.approx(0.5) and ramp[3] == ramp[4] == 1
    assert np.all(np.diff(ramp) >= 0)
    assert list(cv.smoothstep(np.array([0.0, 1.0]), 0)) == [0, 1]


def test_easel_prefill_continues_the_border_and_fades_to_textured_colour():
    picture = gradient(32, 32)
    grown = cv.Expansion(left=32)
    canvas = cv.place_on_canvas(picture, grown)
    box = grown.box(picture.size)
    distance = cv.distance_outside(canvas.size, box)
    fill = easel_prefill(picture, canvas, box, distance, 16, np.random.default_rng(1))
    source = np.asarray(picture, dtype=np.float32)
    assert np.array_equal(fill[:, 32:], source)  # the picture is untouched
    assert np.abs(fill[:, 31] - source[:, 0]).max() < 6  # the first new column continues it
    assert np.abs(fill[:, :4].mean(axis=(0, 1)) - source[:, 0].mean(axis=0)).max() < 8  # far out: the edge's colours


# mk2 noise ---------------------------------------------------------------------------------------


def test_match_histogram_takes_the_reference_distribution_and_keeps_order():
    values = np.array([0.3, 0.1, 0.9, 0.5])
    out = match_histogram(values, np.array([10.0, 20.0, 30.0, 40.0]))
    assert list(out) == [20.0, 10.0, 40.0, 30.0]


def test_matched_noise_keeps_the_picture_and_matches_its_colours():
    values = np.asarray(gradient(48, 32), dtype=np.float64) / 255
    mask = np.zeros((32, 48))
    mask[:, 32:] = 1
    out = matched_noise(values, mask, noise_q=1.0, color_variation=0.05, rng=np.random.default_rng(3))
    assert np.array_equal(out[:, :32], values[:, :32])
    for channel in range(3):  # the strip's colours are distributed like the kept picture's
        kept, new = np.sort(values[:, :32, channel].ravel()), np.sort(out[:, 32:, channel].ravel())
        assert abs(np.quantile(new, 0.5) - np.quantile(kept, 0.5)) < 0.05
        assert abs(np.quantile(new, 0.1) - np.quantile(kept, 0.1)) < 0.05
    again = matched_noise(values, mask, 1.0, 0.05, np.random.default_rng(3))
    other = matched_noise(values, mask, 1.0, 0.05, np.random.default_rng(4))
    assert np.array_equal(out, again) and not np.array_equal(out, other)


# request, settings, infotext ---------------------------------------------------------------------


@pytest.mark.parametrize("changes, words", [
    (dict(directions=()), "at least one direction"),
    (dict(directions=("left", "sideways")), "'sideways'"),
    (dict(pixels=4), "between 8 and 512"),
    (dict(pixels=600), "between 8 and 512"),
    (dict(pixels=64.5), "whole number"),
    (dict(method="Magic"), "Outpainting mk2"),
    (dict(mask_blur=65), "Mask blur"),
    (dict(noise_q=5.0), "fall-off exponent"),
    (dict(color_variation=-0.1), "Color variation"),
    (dict(inpainting_fill=7), "Masked content"),
])
def test_bad_requests_are_refused_with_a_sentence(changes, words):
    with pytest.raises(UserError, match=words):
        request(**changes).validate()


def test_a_single_direction_may_be_a_string_and_order_is_canonical():
    assert request(directions="up").validate().chosen_directions == ("up",)
    assert request(directions=("down", "left", "down")).chosen_directions == ("left", "down")


def test_method_defaults_fill_what_the_request_leaves_open():
    poor = resolve(request(method="Poor man's outpainting", directions=("left",)), (32, 24))
    assert (poor.mask_blur, poor.inpainting_fill, poor.expansion) == (4, 0, cv.Expansion(left=160))  # 32 + 128 -> 192
    chosen = resolve(request(method="Poor man's outpainting", mask_blur=2, inpainting_fill=2), (32, 24))
    assert (chosen.mask_blur, chosen.inpainting_fill) == (2, 2)
    mk2 = resolve(request(method="Outpainting mk2", inpainting_fill=2), (32, 24))
    assert (mk2.mask_blur, mk2.inpainting_fill) == (8, 1)  # mk2 always starts from its noise ("original")
    assert resolve(request(directions=("right",), pixels=20), (32, 24)).expansion == cv.Expansion(right=24)


def test_seam_bands_follow_each_methods_blur():
    assert blur_radius(4) == 10 and blur_radius(0) == 0
    assert OUTPAINT_METHODS["Outpainting mk2"].seam_band(8) == 8 + 80
    assert OUTPAINT_METHODS["Poor man's outpainting"].seam_band(4) == 8 + 20
    assert OUTPAINT_METHODS["Easel fill"].seam_band(8) == 0


def test_infotext_keys_restore_the_settings():
    mk2 = request(method="Outpainting mk2", directions=("up", "left"), pixels=100, noise_q=1.5)
    params = outpaint_parameters(mk2, resolve(mk2, (32, 24)), (160, 128))
    assert params == {
        "Size": "160x128", "Denoising strength": 0.8, "Mask blur": 8, "Outpaint method": "Outpainting mk2",
        "Outpaint directions": "left up", "Outpaint pixels": 100, "Outpaint fall-off exponent": 1.5,
        "Outpaint color variation": 0.05,
    }
    poor = request(method="Poor man's outpainting")
    assert outpaint_parameters(poor, resolve(poor, (32, 24)), (96, 96))["Masked content"] == "fill"
    assert "Masked content" not in outpaint_parameters(request(), resolve(request(), (32, 24)), (96, 96))


def test_adjustments_are_explained():
    mk2 = request(method="Outpainting mk2", directions=("left",), pixels=40)
    notes = describe_adjustments(mk2, resolve(mk2, (32, 24)), (32, 24))
    assert notes == ["Outpainting mk2 needs the enlarged size in multiples of 64 pixels: expanded left 96 pixels instead of 40 (128x24)."]
    masked = request(pixels=16)
    masked.base.mask = Image.new("L", (32, 24), 255)
    assert describe_adjustments(masked, resolve(masked, (32, 24)), (32, 24)) == ["Outpainting makes its own masks: the uploaded mask was not used."]


# steps across passes -----------------------------------------------------------------------------


def test_step_events_count_on_across_passes():
    seen: list[StepEvent] = []
    base = request().base
    runner = PassRunner(model=None, base=base, image_index=2, image_count=4, passes=3, on_step=seen.append)
    assert steps_per_pass(base, False) == 9 and runner.steps_total == 27  # int(0.8 * 10) + 1 per pass
    runner._forward(StepEvent(0, 1, 1, 9, None))
    runner.steps_done = 9  # after the first pass
    runner._forward(StepEvent(0, 1, 4, 9, None))
    assert [(e.image_index, e.image_count, e.step, e.steps) for e in seen] == [(2, 4, 1, 27), (2, 4, 13, 27)]
    assert steps_per_pass(base, True) == 10
    assert steps_per_pass(Img2ImgRequest(denoising_strength=0.0), False) == 0
