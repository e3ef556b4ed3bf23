"""The preprocessors that need no weights, checked on drawn pictures against facts of the extension's
maps (sd-webui-controlnet v1.1.455): where lines are marked, which colour a cell takes, what size a
map has, which slider a preprocessor shows."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.api.controlnet_routes import module_detail
from modules.controlnet.preprocess import PREPROCESSORS, content_shuffle, detect, find_preprocessor


def run(name: str, image: Image.Image | np.ndarray, resolution: int = -1, a: float = -1, b: float = -1) -> np.ndarray:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return detect(find_preprocessor(name, "unit"), picture, resolution, a, b)


def white(size=(128, 128)) -> Image.Image:
    return Image.new("RGB", size, "white")


def test_every_model_free_preprocessor_makes_an_rgb_map_of_an_odd_sized_picture():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    ran = []
    for name, p in PREPROCESSORS.items():
        if p.run is None:
            continue
        a = p.slider_a.value if p.slider_a else 0
        b = p.slider_b.value if p.slider_b else 0
        direct = p.run(image, a, b)  # the picture as it is, sliders at their defaults
        assert direct.dtype == np.uint8 and direct.shape == (37, 53, 3), name
        mapped = detect(p, Image.fromarray(image), -1, -1, -1)  # through the preprocessor resolution
        assert mapped.dtype == np.uint8 and mapped.ndim == 3 and mapped.shape[2] == 3, name
        assert mapped.shape[:2] == ((512, 733) if p.resolution else (37, 53)), name
        ran.append(name)
    assert {"scribble_xdog", "lineart_standard", "tile_resample", "tile_colorfix", "tile_colorfix+sharp", "color",
            "recolor_luminance", "recolor_intensity", "shuffle"} <= set(ran)


def test_scribble_xdog_marks_the_edge_of_a_disc_not_its_inside():
    image = white()
    ImageDraw.Draw(image).ellipse((24, 24, 104, 104), fill="black")  # radius 40 around (64, 64)
    marks = run("scribble_xdog", image, 128)
    assert set(np.unique(marks)) == {0, 255} and (marks[:, :, 0] == marks[:, :, 2]).all()
    yy, xx = np.mgrid[:128, :128]
    radius = np.hypot(yy - 63.5, xx - 63.5)
    marked = marks[:, :, 0] == 255
    assert marked[np.abs(radius - 37) < 1].all()  # the dark side of the edge, all round
    assert (np.abs(radius[marked] - 38) <= 7).all()  # nothing far from the edge: not the inside, not the white
    assert not marked[radius < 25].any() and not marked[radius > 48].any()
    assert (run("scribble_xdog", image, 128, 64)[:, :, 0] == 255).sum() < marked.sum()  # a higher threshold marks less


def test_scribble_xdog_doubles_the_darkness_in_bytes_as_the_extension_does():
    """A 1-pixel line's darkness (sigma 5 minus sigma 0.5) is 181 for black, 138 for grey 60, 110 for
    grey 100; doubled in uint8 that is 106, 20 and 220: the grey-60 line falls under 32."""
    image = np.full((64, 96, 3), 255, np.uint8)
    image[:, 16], image[:, 48], image[:, 80] = 0, 60, 100
    marks = run("scribble_xdog", image, 64)[32, :, 0]
    assert marks[16] == 255 and marks[48] == 0 and marks[80] == 255


def test_lineart_standard_turns_a_black_line_on_white_into_a_bright_line_on_black():
    image = white()
    ImageDraw.Draw(image).line((20, 64, 108, 64), fill="black", width=3)  # rows 63-65
    lines = run("lineart_standard", image, 128)
    assert (lines[:, :, 0] == lines[:, :, 1]).all() and (lines[:, :, 1] == lines[:, :, 2]).all()
    on_line = lines[63:66, 24:104, 0]
    assert on_line.min() >= 120 and on_line.max() <= 140  # the median dark pixel lands at 127
    assert abs(int(np.median(on_line)) - 127) <= 1
    off = np.ones((128, 128), bool)
    off[61:68, 16:113] = False
    assert not lines[:, :, 0][off].any()  # white stays black, even next to the line


def test_lineart_standard_continues_the_picture_past_its_right_edge_like_the_extension_padding():
    """The extension blurs the picture grown to multiples of 64 by repeating its edge, then crops."""
    image = np.full((64, 70, 3), 255, np.uint8)
    image[:, 66:] = 0  # a dark band touching the right edge
    grown = np.concatenate([image, np.repeat(image[:, -1:], 58, axis=1)], axis=1)  # 70 -> 128
    assert np.array_equal(run("lineart_standard", image, 64), run("lineart_standard", grown, 64)[:, :70])


def test_tile_resample_area_averages_down_by_the_rate_and_ignores_the_resolution():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    half = run("tile_resample", image, 768, 2)
    assert half.shape == (18, 26, 3)
    assert np.array_equal(half, cv2.resize(image, (26, 18), interpolation=cv2.INTER_AREA))
    assert np.array_equal(run("tile_resample", image, 768), image)  # the default rate 1: the picture itself
    assert np.array_equal(run("tile_resample", image, -1, 1.05), image)  # under 1.1: unchanged
    assert run("tile_resample", image, -1, 3.3).shape == (11, 16, 3)  # sides truncated: 37 / 3.3, 53 / 3.3


def test_tile_colorfix_maps_are_the_picture_and_their_sliders_are_the_extensions():
    image = np.random.default_rng(4).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for name in ("tile_colorfix", "tile_colorfix+sharp"):
        assert np.array_equal(run(name, image, 1024), image)
    details = module_detail()
    assert details["tile_colorfix"]["sliders"] == [{"name": "Variation", "value": 8.0, "min": 3.0, "max": 32.0, "step": 1.0}]
    assert [s["name"] for s in details["tile_colorfix+sharp"]["sliders"]] == ["Variation", "Sharpness"]
    assert details["tile_colorfix+sharp"]["sliders"][1]["value"] == 1.0


def test_color_gives_each_64_cell_the_bicubic_sample_at_its_centre():
    """A 640x512 picture at resolution 512: 10 x 8 cells. Each cell is one colour; a cell painted
    one colour with another 4x4 patch at its centre takes the patch's colour (cv2's bicubic at 1/64
    reads only the 4x4 pixels round the cell centre), not the cell's mean."""
    rng = np.random.default_rng(5)
    colours = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    image = np.repeat(np.repeat(colours, 64, axis=0), 64, axis=1)
    image[64 + 30:64 + 34, 128 + 30:128 + 34] = (255, 0, 255)  # cell (1, 2)
    grid = run("color", image, 512)
    assert grid.shape == (512, 640, 3)
    cells = grid.reshape(8, 64, 10, 64, 3)
    assert (cells == cells[:, :1, :, :1]).all()  # one colour per 64x64 cell
    expected = colours.copy()
    expected[1, 2] = (255, 0, 255)
    assert np.array_equal(cells[:, 0, :, 0], expected)
    mean = image[64:128, 128:192].reshape(-1, 3).mean(axis=0)
    assert np.abs(cells[1, 0, 2, 0].astype(float) - mean).max() > 50
    small = np.ascontiguousarray(image[::2, ::2])  # 320x256: scaled up to the resolution first
    assert run("color", small, 512).shape == (512, 640, 3) and run("color", small, 256).shape == (256, 320, 3)
    assert find_preprocessor("t2ia_color_grid", "unit").name == "color"  # the extension's label
    assert [s["name"] for s in module_detail()["color"]["sliders"]] == ["Preprocessor Resolution"]


def srgb_lightness(rgb: tuple[int, int, int]) -> float:
    """CIE L* of an sRGB colour on OpenCV's 8-bit scale (L * 255 / 100)."""
    linear = [((c / 255 + 0.055) / 1.055) ** 2.4 if c / 255 > 0.04045 else c / 255 / 12.92 for c in rgb]
    y = 0.212671 * linear[0] + 0.715160 * linear[1] + 0.072169 * linear[2]
    lightness = 116 * y ** (1 / 3) - 16 if y > 0.008856 else 903.3 * y
    return lightness * 255 / 100


def test_recolor_luminance_is_lab_lightness_of_the_picture_read_as_bgr_with_gamma():
    """The extension converts the RGB picture with OpenCV's BGR-to-Lab: a red patch comes out as
    light as blue (82), a blue one as light as red (136)."""
    patches = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (128, 128, 128), (200, 120, 30)]
    image = np.concatenate([np.full((8, 8, 3), c, np.uint8) for c in patches], axis=1)
    for gamma in (1.0, 0.5, 2.0):
        grey = run("recolor_luminance", image, 256, gamma)
        assert grey.shape == image.shape and (grey[:, :, 0] == grey[:, :, 2]).all()
        for index, (r, g, b) in enumerate(patches):
            expected = (srgb_lightness((b, g, r)) / 255) ** gamma * 255
            assert abs(int(grey[4, index * 8 + 4, 0]) - expected) <= 1.5, (gamma, (r, g, b))
    assert abs(int(run("recolor_luminance", image)[0, 0, 0]) - 82) <= 1
    assert abs(int(run("recolor_luminance", image)[0, 12, 0]) - 136) <= 1
    assert [s["name"] for s in module_detail()["recolor_luminance"]["sliders"]] == ["Gamma Correction"]


def test_recolor_intensity_is_the_brightest_channel_with_gamma():
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, :3] = (200, 50, 10)
    image[:, 3:] = (10, 60, 90)
    grey = run("recolor_intensity", image, -1, 0.5)
    assert grey.shape == (4, 6, 3)
    assert grey[0, 0].tolist() == [225] * 3 and grey[0, 5].tolist() == [151] * 3  # 255*sqrt(200/255)=225.8, sqrt(90/255) -> 151.5
    assert grey[0, 0, 0] == run("recolor_intensity", image[:, :, ::-1].copy(), -1, 0.5)[0, 0, 0]  # channel order does not matter


def quadrants(size: int = 128) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    half = size // 2
    image[:half, :half], image[:half, half:] = (255, 0, 0), (0, 255, 0)
    image[half:, :half], image[half:, half:] = (0, 0, 255), (255, 255, 0)
    return image


def test_shuffle_is_the_same_for_a_seed_and_moves_the_content_around():
    image = quadrants()
    first, again, other = content_shuffle(image, 7), content_shuffle(image, 7), content_shuffle(image, 8)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert not np.array_equal(first, image)
    assert np.array_equal(run("shuffle", image, 128), run("shuffle", image, 128))  # run's fixed seed
    colours = {(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)}
    for shuffled in (first, other):
        pixels = [tuple(p) for p in shuffled.reshape(-1, 3).tolist()]
        pure = sum(p in colours for p in pixels)
        assert pure >= 0.9 * len(pixels)  # read from the picture (blends only along the quadrant borders)
        assert {p for p in pixels if p in colours} == colours  # the field spans the whole picture: every quadrant is read


def test_shuffle_keeps_the_colour_histogram_of_an_even_pattern():
    """512x512 of 16-pixel tiles in four colours, a quarter each: shuffled, each colour still covers
    about a quarter (the rest are bilinear blends where a read falls between two tiles)."""
    palette = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)], np.uint8)
    tiles = np.add.outer(np.arange(32), 2 * np.arange(32)) % 4
    image = np.repeat(np.repeat(palette[tiles], 16, axis=0), 16, axis=1)
    for seed in (0, 1, 2):
        pixels = content_shuffle(image, seed).reshape(-1, 3)
        shares = [float((pixels == colour).all(axis=1).mean()) for colour in palette]
        assert all(0.19 <= share <= 0.26 for share in shares) and sum(shares) >= 0.85, (seed, shares)


def test_shuffle_draws_as_numpy_seeded_the_extensions_way():
    """The extension calls np.random.seed(seed) and draws x's coarse noise before y's from the global
    legacy generator: reseeding numpy's global state gives the same numbers."""
    np.random.seed(1234)
    x_coarse = np.random.uniform(low=0, high=1, size=(2, 2, 1))
    rng = np.random.RandomState(1234)
    assert np.array_equal(rng.uniform(0, 1, size=(2, 2, 1)), x_coarse)
    assert np.array_equal(content_shuffle(quadrants(64), 1234), content_shuffle(quadrants(64), 1234 + 2 ** 32))  # 32-bit seed
    # red = x and green = y of where each pixel is read from; the values the extension's own
    # ContentShuffleDetector gives after np.random.seed(1234) on this picture
    yy, xx = np.mgrid[:64, :96]
    ramps = np.stack([xx * 255 // 95, yy * 255 // 63, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    shuffled = content_shuffle(ramps, 1234)
    assert shuffled[0, 0].tolist() == [0, 220, 0] and shuffled[10, 50].tolist() == [111, 109, 0]
    assert shuffled[32, 48].tolist() == [131, 119, 0] and shuffled[63, 95].tolist() == [255, 255, 0]


@pytest.mark.parametrize("name, sliders", [
    ("scribble_xdog", ["Preprocessor Resolution", "XDoG Threshold"]),
    ("lineart_standard", ["Preprocessor Resolution"]),
    ("tile_resample", ["Down Sampling Rate"]),
    ("recolor_intensity", ["Gamma Correction"]),
    ("shuffle", ["Preprocessor Resolution"]),
])
def test_module_detail_lists_the_new_sliders(name, sliders):
    detail = module_detail()[name]
    assert [s["name"] for s in detail["sliders"]] == sliders and detail["needs_weights"] is None


def test_the_extensions_labels_are_accepted_as_module_names():
    assert find_preprocessor("lineart_standard (from white bg & black line)", "unit").name == "lineart_standard"
    assert find_preprocessor("invert (from white bg & black line)", "unit").name == "invert"
