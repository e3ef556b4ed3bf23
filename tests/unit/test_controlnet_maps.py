"""Control maps as the extension makes them: canny at the preprocessor resolution, pixel perfect's
resolution, and the three resize modes fitting a map to the generation size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.controlnet.preprocess import PreprocessorError, detect, find_preprocessor, fit, pixel_perfect_resolution


def picture(size=(80, 40)) -> Image.Image:
    image = Image.new("RGB", size, (10, 20, 30))
    ImageDraw.Draw(image).rectangle((20, 10, 60, 30), fill=(250, 250, 250))
    return image


def test_pixel_perfect_is_the_extensions_formula():
    # 80x40 picture, 512x512 generation: Crop and Resize covers (k = max(512/40, 512/80) = 12.8), Resize and Fill fits (k = 6.4)
    assert pixel_perfect_resolution((80, 40), (512, 512), "Crop and Resize") == 512
    assert pixel_perfect_resolution((80, 40), (512, 512), "Resize and Fill") == 256
    assert pixel_perfect_resolution((512, 768), (512, 512), "Just Resize") == 512


def test_canny_runs_at_the_preprocessor_resolution_with_its_thresholds():
    edges = detect(find_preprocessor("canny", "unit"), picture(), 80, -1, -1)  # short side 40 -> 80
    assert edges.shape == (80, 160, 3) and set(np.unique(edges)) == {0, 255}
    inside = edges[30:50, 50:110, 0]
    assert (edges[:, :, 0] == 255).any() and not inside.any()  # the outline, not the filled rectangle
    none = detect(find_preprocessor("none", "unit"), picture(), -1, -1, -1)
    assert none.shape == (40, 80, 3)  # no resolution slider: the picture as it is
    inverted = detect(find_preprocessor("invert", "unit"), picture(), 40, -1, -1)
    assert inverted[0, 0].tolist() == [245, 235, 225]


def test_the_resize_modes_fit_the_map():
    """An 80x40 map with a bright rectangle over x 20-60, y 10-30, fitted to 64x64 (measured rows
    and columns through the middle; cubic resampling rings a little at the rectangle's edges)."""
    control = np.asarray(picture((80, 40)))

    def bright(line: np.ndarray) -> tuple[int, int]:
        on = np.flatnonzero(line[:, 0] >= 200)
        return int(on[0]), int(on[-1])
    stretched = fit(control, 64, 64, "Just Resize")  # each side scaled on its own: x 16-48, y 16-48
    assert stretched.shape == (64, 64, 3) and bright(stretched[:, 32]) == (16, 48) and bright(stretched[32, :]) == (16, 48)
    covered = fit(control, 64, 64, "Crop and Resize")  # scaled by 1.6 to 128x64, the middle 64 columns kept: all rectangle across
    assert bright(covered[32, :]) == (0, 63) and bright(covered[:, 32]) == (16, 48)
    filled = fit(control, 64, 64, "Resize and Fill")  # scaled by 0.8 to 64x32, centred, padded with the border's median colour
    assert filled[0, 32].tolist() == [10, 20, 30] and filled[63, 32].tolist() == [10, 20, 30]
    assert bright(filled[:, 32]) == (24, 40) and bright(filled[32, :]) == (16, 48)


def test_preprocessors_that_need_weights_say_which_file():
    with pytest.raises(PreprocessorError, match="openpose preprocessor needs its weights, body_pose_model.pth"):
        find_preprocessor("openpose", "ControlNet unit 0")
    assert find_preprocessor("None", "unit").name == "none"  # Forge's spelling
