"""A1111's grid layout: round(sqrt(n)) rows, cells the size of the first image, empty cells black."""

from __future__ import annotations

import pytest
from PIL import Image

from modules.generation.grid import grid_rows, image_grid


@pytest.mark.parametrize("count, rows", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2), (6, 2), (7, 3), (9, 3), (10, 3), (16, 4)])
def test_rows(count, rows):
    assert grid_rows(count) == rows


def test_layout_and_pixels():
    colours = ["red", "green", "blue"]
    grid = image_grid([Image.new("RGB", (8, 4), c) for c in colours])
    assert grid.size == (16, 8)  # 2 rows x 2 columns
    assert [grid.getpixel(xy) for xy in ((0, 0), (8, 0), (0, 4), (8, 4))] == [(255, 0, 0), (0, 128, 0), (0, 0, 255), (0, 0, 0)]
