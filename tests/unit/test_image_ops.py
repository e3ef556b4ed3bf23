"""Uploads to RGB (every PIL mode, EXIF orientation), the size check, and A1111's resize modes 0-2."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from modules.errors import UserError
from modules.generation.image_ops import RESIZE_MODE_NAMES, check_size, resize_image, to_rgb
from modules.generation.request import RESIZE_MODES

RED, GREEN, BLUE, YELLOW, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255)


def _pixels(image: Image.Image) -> list:
    return [image.getpixel((x, 0)) for x in range(image.width)]


def _row_of(mode: str, values: list) -> Image.Image:
    image = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)
    return image


def _stripes(colours: list[tuple[int, int, int]], stripe: int, height: int, vertical: bool = True) -> Image.Image:
    """Stripes `stripe` pixels wide, left to right (vertical) or top to bottom."""
    image = Image.new("RGB", (stripe * len(colours), height) if vertical else (height, stripe * len(colours)))
    for i, colour in enumerate(colours):
        box = (i * stripe, 0, (i + 1) * stripe, height) if vertical else (0, i * stripe, height, (i + 1) * stripe)
        image.paste(colour, box)
    return image


def test_resize_mode_names_are_the_request_ones():
    assert RESIZE_MODE_NAMES is RESIZE_MODES
    assert RESIZE_MODE_NAMES[:3] == ("Just resize", "Crop and resize", "Resize and fill")


# to_rgb


def test_rgb_is_copied_not_shared():
    image = Image.new("RGB", (2, 2), RED)
    out = to_rgb(image)
    assert out is not image and out.mode == "RGB" and out.getpixel((1, 1)) == RED
    out.putpixel((0, 0), BLUE)
    assert image.getpixel((0, 0)) == RED


def test_alpha_is_composited_over_the_background():
    image = _row_of("RGBA", [(255, 0, 0, 0), (255, 0, 0, 255), (255, 0, 0, 128), (0, 0, 255, 0)])
    before = image.tobytes()
    assert _pixels(to_rgb(image)) == [WHITE, RED, (255, 127, 127), WHITE]
    assert _pixels(to_rgb(image, background=(0, 0, 0))) == [(0, 0, 0), RED, (128, 0, 0), (0, 0, 0)]
    assert image.mode == "RGBA" and image.tobytes() == before  # input untouched


@pytest.mark.parametrize(
    "mode, values, expected",
    [
        ("LA", [(100, 0), (100, 255)], [WHITE, (100, 100, 100)]),
        ("PA", [(0, 0), (0, 255)], [WHITE, (0, 0, 0)]),
        ("RGBa", [(0, 0, 0, 0), (0, 255, 0, 255)], [WHITE, GREEN]),
        ("La", [(0, 0), (100, 255)], [WHITE, (100, 100, 100)]),
    ],
)
def test_other_alpha_modes(mode, values, expected):
    assert _pixels(to_rgb(_row_of(mode, values))) == expected


def test_palette_and_grey_transparency_use_the_background():
    palette = _row_of("P", [0, 1, 1])
    palette.putpalette([*RED, *GREEN])
    palette.info["transparency"] = 0
    assert _pixels(to_rgb(palette)) == [WHITE, GREEN, GREEN]
    assert _pixels(to_rgb(palette, (0, 0, 255))) == [BLUE, GREEN, GREEN]

    grey = _row_of("L", [10, 20])
    grey.info["transparency"] = 10
    assert _pixels(to_rgb(grey)) == [WHITE, (20, 20, 20)]
    assert "transparency" not in to_rgb(grey).info


def test_sixteen_bit_grey_is_scaled_to_eight_bits():
    for mode in ("I;16", "I;16B", "I;16L"):
        image = _row_of(mode, [65535, 32896, 257, 0])
        assert _pixels(to_rgb(image)) == [WHITE, (128, 128, 128), (1, 1, 1), (0, 0, 0)], mode


def test_thirty_two_bit_int_is_sixteen_bit_only_above_255():
    assert _pixels(to_rgb(_row_of("I", [65535, 32896, 0]))) == [WHITE, (128, 128, 128), (0, 0, 0)]
    assert _pixels(to_rgb(_row_of("I", [255, 128, 0]))) == [WHITE, (128, 128, 128), (0, 0, 0)]
    assert _pixels(to_rgb(_row_of("I", [-5, 200]))) == [(0, 0, 0), (200, 200, 200)]


def test_float_is_clamped_or_scaled_from_zero_to_one():
    assert _pixels(to_rgb(_row_of("F", [1.0, 0.5, 0.0]))) == [WHITE, (128, 128, 128), (0, 0, 0)]
    assert _pixels(to_rgb(_row_of("F", [300.0, 127.6, -5.0]))) == [WHITE, (128, 128, 128), (0, 0, 0)]


def test_cmyk_ignores_its_icc_profile():
    image = _row_of("CMYK", [(0, 0, 0, 0), (0, 255, 255, 0), (0, 0, 0, 255)])
    image.info["icc_profile"] = b"not a real profile"
    out = to_rgb(image)
    assert _pixels(out) == [WHITE, RED, (0, 0, 0)]
    assert "icc_profile" not in out.info


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("1", 1, WHITE),
        ("L", 77, (77, 77, 77)),
        ("RGBX", (1, 2, 3, 0), (1, 2, 3)),
        ("YCbCr", (255, 128, 128), WHITE),
        ("HSV", (0, 255, 255), RED),
        ("LAB", (255, 128, 128), (254, 255, 254)),  # PIL's own conversion, off by one
    ],
)
def test_plain_modes_convert(mode, value, expected):
    out = to_rgb(Image.new(mode, (1, 1), value))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == expected


def test_exif_orientation_6_turns_the_picture_upright():
    image = Image.new("RGB", (4, 2), BLUE)
    image.putpixel((0, 0), RED)  # stored top-left; orientation 6 means "rotate 90 degrees clockwise to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    loaded = Image.open(buffer)
    out = to_rgb(loaded)
    assert out.size == (2, 4)
    assert out.getpixel((1, 0)) == RED and out.getpixel((0, 0)) == BLUE
    assert loaded.size == (4, 2) and loaded.getexif()[0x0112] == 6  # input untouched


# check_size


def test_check_size_message_names_the_size_and_setting():
    with pytest.raises(UserError) as error:
        check_size(SimpleNamespace(size=(12000, 9000)), 25)
    assert str(error.value) == (
        "The image is 12000x9000 (108.0 megapixels); the largest allowed is 25 megapixels "
        "(setting max_input_megapixels). Make it smaller first."
    )


def test_check_size_limits_and_empty_images():
    check_size(Image.new("RGB", (1000, 1000)), 1.0)  # exactly at the limit is fine
    with pytest.raises(UserError, match="1000x1001"):
        check_size(Image.new("L", (1000, 1001)), 1.0)
    for size in ((0, 0), (0, 10), (10, 0)):
        with pytest.raises(UserError, match="empty"):
            check_size(Image.new("RGB", size), 25)


# resize_image


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("source", [(200, 100), (100, 200), (64, 64), (3, 7)])
def test_every_mode_gives_the_requested_size(mode, source):
    for size in ((64, 64), (96, 48), (40, 80)):
        out = resize_image(mode, Image.new("RGB", source, RED), *size)
        assert out.size == size and out.mode == "RGB"


def test_mode_0_stretches_everything_in():
    image = _stripes([RED, GREEN, BLUE, YELLOW], 50, 100)  # 200x100
    out = resize_image(0, image, 100, 100)
    assert [out.getpixel((x, 50)) for x in (5, 35, 65, 95)] == [RED, GREEN, BLUE, YELLOW]


def test_mode_1_keeps_the_centre_and_crops_the_sides():
    image = _stripes([RED, GREEN, BLUE, YELLOW], 100, 200)  # 400x200 -> scaled to 200x100, centred
    out = resize_image(1, image, 100, 100)
    assert out.getpixel((10, 50)) == GREEN and out.getpixel((90, 50)) == BLUE
    colours = {tuple(p) for p in np.asarray(out).reshape(-1, 3)}
    assert RED not in colours and YELLOW not in colours


def test_mode_1_crops_top_and_bottom_of_a_tall_image():
    image = _stripes([RED, GREEN, BLUE, YELLOW], 50, 100, vertical=False)  # 100x200
    out = resize_image(1, image, 100, 50)  # scaled to 100x200, only rows 75..125 stay
    assert out.getpixel((50, 10)) == GREEN and out.getpixel((50, 40)) == BLUE
    assert RED not in {tuple(p) for p in np.asarray(out).reshape(-1, 3)}


def test_mode_2_fits_the_whole_image_and_stretches_its_edge_rows_into_the_bands():
    image = _stripes([RED, GREEN, BLUE, YELLOW], 25, 200, vertical=False)  # 200x100
    out = np.asarray(resize_image(2, image, 100, 100))  # image 100x50 at y 25..75, bands 25 rows each
    assert (out[:25] == RED).all()  # band above: the first row, stretched
    assert (out[75:] == YELLOW).all()  # band below: the last row
    assert tuple(out[31, 50]) == RED and tuple(out[43, 50]) == GREEN
    assert tuple(out[56, 50]) == BLUE and tuple(out[68, 50]) == YELLOW


def test_mode_2_bands_left_and_right_repeat_the_edge_columns():
    image = _stripes([RED, GREEN, BLUE, YELLOW], 25, 200)  # 100x200, fills 50x100 at x 25..75
    gradient = np.asarray(image).copy()
    gradient[:, 0, 1] = np.arange(200) // 2  # the first column shades, so the band must follow it
    out = np.asarray(resize_image(2, Image.fromarray(gradient), 100, 100))
    assert (out[:, 75:] == YELLOW).all()
    left = out[:, :25].astype(int)
    assert (left == left[:, :1]).all()  # every column of the band is the same
    assert (left[:, 0, 0] == 255).all() and left[0, 0, 1] < left[99, 0, 1]  # red, shaded top to bottom
    assert tuple(out[50, 43]) == GREEN and tuple(out[50, 56]) == BLUE


def test_mode_2_without_gaps_is_a_plain_resize():
    image = _stripes([RED, BLUE], 50, 100)
    assert resize_image(2, image, 50, 50).tobytes() == image.resize((50, 50), Image.LANCZOS).tobytes()


def test_modes_keep_the_mask_mode_and_rgba_transparency():
    mask = Image.new("L", (100, 50), 255)
    for mode in (0, 1, 2):
        assert resize_image(mode, mask, 64, 64).mode == "L"
    sprite = Image.new("RGBA", (10, 10), (255, 0, 0, 255))
    out = resize_image(1, sprite, 20, 10)
    assert out.mode == "RGBA" and out.getpixel((10, 5)) == (255, 0, 0, 255)


def test_palette_images_keep_their_palette():
    image = Image.new("P", (4, 4), 1)
    image.putpalette([*BLUE, *RED])
    out = resize_image(2, image, 8, 4)
    assert out.mode == "P" and out.convert("RGB").getpixel((4, 2)) == RED


@pytest.mark.parametrize("mode", [3, -1, 4])
def test_latent_and_unknown_modes_are_refused(mode):
    with pytest.raises(ValueError):
        resize_image(mode, Image.new("RGB", (8, 8)), 16, 16)
