"""Inpainting masks as A1111 builds them: reading, blur (bit-exact with OpenCV), crop regions, fill,
overlays and the latent-size mask."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.generation.masks import (
    apply_overlay,
    blur_mask,
    crop_region,
    expand_crop_region,
    fill_masked,
    latent_mask,
    mask_from_image,
    overlay_image,
    overlay_mask,
    uncrop,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _mask(size: tuple[int, int], box: tuple[int, int, int, int] | None = None, value: int = 255) -> Image.Image:
    mask = Image.new("L", size, 0)
    if box:
        mask.paste(value, box)
    return mask


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _values(image: Image.Image) -> list[int]:
    return np.asarray(image).ravel().tolist()


def _kernel_size(sigma: float) -> int:
    return 2 * int(2.5 * sigma + 0.5) + 1


# mask_from_image


def test_rgba_with_transparency_uses_alpha_rounded_at_128():
    image = Image.new("RGBA", (4, 1))
    for x, alpha in enumerate((0, 128, 129, 255)):
        image.putpixel((x, 0), (0, 0, 0, alpha))  # black paint: luminance would say 0 everywhere
    assert _values(mask_from_image(image)) == [0, 0, 255, 255]
    assert _values(mask_from_image(image, round=False)) == [0, 128, 129, 255]
    assert mask_from_image(image).mode == "L"


def test_opaque_images_use_luminance_unrounded():
    opaque = Image.new("RGBA", (3, 1), (255, 0, 0, 255))
    opaque.putpixel((1, 0), (100, 100, 100, 255))
    opaque.putpixel((2, 0), (255, 255, 255, 255))
    assert _values(mask_from_image(opaque)) == [76, 100, 255]  # red's luminance, not rounded
    rgb = opaque.convert("RGB")
    assert _values(mask_from_image(rgb)) == [76, 100, 255]
    assert _values(mask_from_image(Image.new("L", (1, 1), 37))) == [37]


def test_other_modes():
    la = Image.new("LA", (2, 1), (0, 0))
    la.putpixel((1, 0), (0, 200))
    assert _values(mask_from_image(la)) == [0, 255]  # real alpha: like RGBA
    assert _values(mask_from_image(Image.new("LA", (1, 1), (90, 255)))) == [90]  # opaque: luminance

    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 0, 0, 0])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert _values(mask_from_image(palette)) == [0, 255]

    bilevel = Image.new("1", (2, 1), 0)
    bilevel.putpixel((1, 0), 1)
    assert _values(mask_from_image(bilevel)) == [0, 255]

    deep = Image.new("I;16", (2, 1), 0)
    deep.putpixel((1, 0), 65535)
    assert _values(mask_from_image(deep)) == [0, 255]


# blur_mask


def test_blur_of_one_pixel_is_a_gaussian_as_wide_as_the_formula():
    for sigma in (1, 3, 4, 10):
        radius = _kernel_size(sigma) // 2
        row = np.zeros((1, 4 * radius + 1), np.uint8)
        centre = 2 * radius
        row[0, centre] = 255
        out = np.asarray(blur_mask(Image.fromarray(row), sigma, 0))[0].astype(int)
        x = np.arange(row.shape[1]) - centre
        inside = np.abs(x) <= radius
        assert (out[~inside] == 0).all(), sigma  # nothing beyond the kernel's reach
        assert (out == out[::-1]).all() and out[centre] >= out.max() - 1  # OpenCV rounds the centre last
        gauss = np.exp(-(x * x) / (2 * sigma * sigma))
        expected = 255 * gauss / gauss[inside].sum()
        assert np.abs(out - expected)[inside].max() <= 1.5, sigma  # 8-bit fixed-point weights
        assert abs(out.sum() - 255) <= radius, sigma  # the total is kept, up to rounding


def test_blur_axes_are_separate_and_zero_skips():
    mask = _mask((41, 41), (20, 0, 21, 41))  # a vertical line
    assert blur_mask(mask, 0, 0).tobytes() == mask.tobytes()
    assert blur_mask(mask, 0, 5).tobytes() == mask.tobytes()  # blurring along the line changes nothing
    horizontal = np.asarray(blur_mask(mask, 3, 0))
    assert (horizontal == horizontal[:1]).all()  # every row the same
    assert horizontal[0, 20] < 255 and horizontal[0, 20 - 8] > 0 and horizontal[0, 20 - 9] == 0  # reach 8 for sigma 3


def test_blur_keeps_flat_masks_flat_up_to_the_borders():
    for value in (255, 173, 1):
        flat = Image.new("L", (7, 5), value)
        assert set(_values(blur_mask(flat, 4, 16))) == {value}  # mirrored borders, weights summing to 1


def test_blur_mirrors_the_border_without_repeating_the_edge_pixel():
    row = np.zeros((1, 30), np.uint8)
    row[0, 1] = 255
    out = np.asarray(blur_mask(Image.fromarray(row), 2, 0))[0].astype(int)
    row[0, 1], row[0, 15] = 0, 255
    interior = np.asarray(blur_mask(Image.fromarray(row), 2, 0))[0].astype(int)
    # reflect-101: position -1 reads pixel 1 (not 0), so pixel k sees the white pixel at distance
    # k - 1 and, mirrored, at k + 1; pixel 0 sees it twice at distance 1
    for k in range(8):
        assert abs(out[k] - (interior[15 + k - 1] + interior[15 + k + 1])) <= 1, k


def test_blur_kernels_wider_than_the_image():
    mask = _mask((3, 2), (0, 0, 1, 1))
    out = np.asarray(blur_mask(mask, 64, 64))
    assert out.shape == (2, 3) and out.min() > 0 and out.max() < 255


def test_blur_matches_opencv_bit_for_bit():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    for shape in ((64, 64), (37, 91), (1, 9), (9, 1), (3, 3), (120, 80)):
        masks = [
            (rng.random(shape) > 0.7).astype(np.uint8) * 255,
            rng.integers(0, 256, shape, dtype=np.uint8),
        ]
        for mask in masks:
            for blur_x, blur_y in ((1, 0), (0, 1), (4, 4), (2, 7), (16, 3), (64, 64), (0.5, 1.5)):
                expected = mask
                if blur_x > 0:
                    expected = cv2.GaussianBlur(expected, (_kernel_size(blur_x), 1), blur_x)
                if blur_y > 0:
                    expected = cv2.GaussianBlur(expected, (1, _kernel_size(blur_y)), blur_y)
                out = np.asarray(blur_mask(Image.fromarray(mask), blur_x, blur_y))
                assert np.array_equal(out, expected), (shape, blur_x, blur_y)


# crop_region and expand_crop_region


def test_crop_region_is_the_bounding_box_widened_and_clamped():
    mask = _mask((100, 80), (10, 30, 21, 41))
    assert crop_region(mask, 0) == (10, 30, 21, 41)
    assert crop_region(mask, 5) == (5, 25, 26, 46)
    assert crop_region(mask, 50) == (0, 0, 71, 80)
    assert crop_region(_mask((100, 80), (0, 0, 100, 80), value=1), 4) == (0, 0, 100, 80)


def test_crop_region_of_an_empty_mask_is_none():
    assert crop_region(_mask((64, 64)), 32) is None


@pytest.mark.parametrize(
    "region, processing, image, expected",
    [
        ((10, 10, 30, 20), (512, 512), (100, 100), (10, 5, 30, 25)),  # wide: grows in height about its centre
        ((10, 0, 30, 4), (512, 512), (100, 100), (10, 0, 30, 20)),  # at the top: slides down
        ((10, 96, 30, 100), (512, 512), (100, 100), (10, 80, 30, 100)),  # at the bottom: slides up
        ((0, 2, 40, 8), (512, 512), (40, 10), (0, 0, 40, 10)),  # image too short: clipped to it
        ((20, 20, 30, 30), (768, 512), (100, 100), (18, 20, 33, 30)),  # narrow: grows in width, extra to the right
        ((0, 40, 10, 60), (512, 512), (100, 100), (0, 40, 20, 60)),  # at the left edge: slides right
        ((95, 40, 100, 60), (512, 512), (100, 100), (80, 40, 100, 60)),  # at the right edge: slides left
        ((0, 0, 10, 3), (512, 512), (100, 100), (0, 0, 10, 10)),  # odd growth, truncated like A1111
        ((10, 10, 74, 74), (512, 512), (100, 100), (10, 10, 74, 74)),  # already the right shape
    ],
)
def test_expand_crop_region(region, processing, image, expected):
    assert expand_crop_region(region, *processing, *image) == expected


def test_expanded_regions_take_the_processing_aspect_ratio_inside_the_image():
    rng = np.random.default_rng(2)
    for _ in range(200):
        image_w, image_h = rng.integers(64, 400, 2)
        x1, x2 = sorted(rng.choice(image_w + 1, 2, replace=False))
        y1, y2 = sorted(rng.choice(image_h + 1, 2, replace=False))
        width, height = rng.choice([512, 768, 640, 1024], 2)
        ex1, ey1, ex2, ey2 = expand_crop_region((x1, y1, x2, y2), width, height, image_w, image_h)
        assert 0 <= ex1 <= x1 and x2 <= ex2 <= image_w and 0 <= ey1 <= y1 and y2 <= ey2 <= image_h
        fits = (ey2 - ey1) < image_h and (ex2 - ex1) < image_w
        if fits:
            assert abs((ex2 - ex1) - (ey2 - ey1) * width / height) <= 1 + width / height


# fill_masked


def test_fill_takes_colours_from_around_the_hole_and_keeps_the_rest():
    image = Image.new("RGB", (64, 64), RED)
    image.paste(GREEN, (24, 24, 40, 40))
    mask = _mask((64, 64), (24, 24, 40, 40))
    out = np.asarray(fill_masked(image, mask)).astype(int)
    keep = np.asarray(mask) == 0
    assert (out[keep] == np.asarray(image)[keep]).all()
    hole = out[24:40, 24:40]
    assert (hole[..., 0] >= 250).all() and (hole[..., 1] <= 5).all()  # red, not the old green


def test_fill_follows_the_nearest_colour():
    image = Image.new("RGB", (64, 32), RED)
    image.paste(BLUE, (32, 0, 64, 32))
    out = np.asarray(fill_masked(image, _mask((64, 32), (24, 0, 40, 32)))).astype(int)
    assert out[16, 25, 0] > out[16, 25, 2] and out[16, 38, 2] > out[16, 38, 0]


# overlays


def test_overlay_mask_doubles_and_clips():
    row = Image.fromarray(np.array([[0, 1, 100, 127, 128, 200, 255]], np.uint8))
    out = overlay_mask(row)
    assert out.mode == "L" and _values(out) == [0, 2, 200, 254, 255, 255, 255]


def test_overlay_image_is_the_original_with_the_repaint_area_transparent():
    image = _noise((16, 8))
    overlay = _mask((16, 8), (4, 0, 12, 8))
    out = overlay_image(image, overlay)
    rgba = np.asarray(out)
    assert out.mode == "RGBA" and out.size == (16, 8)
    assert (rgba[:, 4:12, 3] == 0).all()
    assert (rgba[:, :4, 3] == 255).all() and (rgba[:, :4, :3] == np.asarray(image)[:, :4]).all()
    half = overlay_image(Image.new("RGB", (1, 1), RED), Image.new("L", (1, 1), 128)).getpixel((0, 0))
    assert half[3] == 127 and half[:3] == RED


def test_uncrop_places_the_image_in_its_box_on_a_transparent_canvas():
    out = uncrop(Image.new("RGB", (32, 16), BLUE), (100, 60), (10, 20, 40, 20))
    assert out.mode == "RGBA" and out.size == (100, 60)
    assert out.getbbox() == (10, 20, 50, 40)
    assert out.getpixel((30, 30)) == (*BLUE, 255) and out.getpixel((5, 5)) == (0, 0, 0, 0)


def test_apply_overlay_keeps_the_original_outside_the_mask():
    original = _noise((64, 48))
    mask = _mask((64, 48), (20, 10, 40, 30))
    overlay = overlay_image(original, overlay_mask(mask))
    generated = Image.new("RGB", (64, 48), BLUE)
    out = np.asarray(apply_overlay(generated, None, overlay))
    keep = np.asarray(mask) == 0
    assert (out[keep] == np.asarray(original)[keep]).all()
    assert (out[10:30, 20:40] == BLUE).all()


def test_apply_overlay_with_paste_loc_uncrops_into_the_original():
    original = _noise((96, 64), seed=3)
    mask = _mask((96, 64), (40, 20, 50, 30))
    x1, y1, x2, y2 = expand_crop_region(crop_region(mask, 8), 64, 64, 96, 64)
    overlay = overlay_image(original, mask)  # "Only masked": the mask itself
    generated = Image.new("RGB", (64, 64), GREEN)  # the processing size
    out = np.asarray(apply_overlay(generated, (x1, y1, x2 - x1, y2 - y1), overlay))
    outside = np.ones((64, 96), bool)
    outside[y1:y2, x1:x2] = False
    assert out.shape == (64, 96, 3)
    assert (out[outside] == np.asarray(original)[outside]).all()
    assert (out[20:30, 40:50] == GREEN).all()


def test_apply_overlay_without_overlay_returns_the_image():
    image = _noise((8, 8))
    assert apply_overlay(image, None, None) is image


# latent_mask


def test_latent_mask_shape_values_and_rounding():
    mask = _mask((512, 384), (0, 0, 256, 384))  # left half repainted
    rounded = latent_mask(mask, 64, 48)
    assert rounded.shape == (48, 64) and rounded.dtype == np.float32
    assert set(np.unique(rounded)) == {0.0, 1.0}
    assert (rounded[:, :31] == 1).all() and (rounded[:, 33:] == 0).all()
    raw = latent_mask(mask, 64, 48, round=False)
    assert raw.dtype == np.float32 and 0 <= raw.min() and raw.max() <= 1
    assert ((raw > 0) & (raw < 1)).any()  # the bicubic edge
    assert np.array_equal(np.around(raw), rounded)


def test_latent_mask_drops_specks_smaller_than_half_a_latent_pixel():
    mask = _mask((64, 64), (8, 8, 11, 11))  # 3x3 pixels inside one 8x8 latent cell
    assert latent_mask(mask, 8, 8).sum() == 0
    assert latent_mask(mask, 8, 8, round=False).max() > 0
