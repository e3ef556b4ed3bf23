"""The detailer's mask steps (modules/detailer/masks.py) on hand-made detections, against ADetailer
25.3.0's adetailer/mask.py results (OpenCV rectangle kernels, y offset upwards)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.detailer.args import DetailerTab
from modules.detailer.detection import Detections
from modules.detailer.masks import (
    dilate_erode,
    filter_by_ratio,
    keep_top_k,
    mask_box,
    merge_invert,
    offset_mask,
    region_masks,
    sort_detections,
    to_pil,
    touching,
)


def square(top: int, left: int, size: int = 10, shape: tuple[int, int] = (40, 40)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top:top + size, left:left + size] = True
    return mask


def detections(boxes: list[tuple[int, int, int, int]], confidences: list[float], width: int = 100, height: int = 100) -> Detections:
    array = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(array, np.asarray(confidences, np.float32), Detections.box_masks(array, width, height), [f"box{i}" for i in range(len(boxes))])


def test_dilate_4_grows_a_10_square_to_13():
    grown = dilate_erode(square(10, 10), 4)
    assert grown.sum() == 169 and mask_box(grown) == (9, 9, 22, 22)  # one pixel before, two after: the kernel's anchor is at 2


def test_erode_4_shrinks_a_10_square_to_7_and_the_edge_does_not_eat():
    shrunk = dilate_erode(square(10, 10), -4)
    assert shrunk.sum() == 49 and mask_box(shrunk) == (12, 12, 19, 19)
    assert dilate_erode(square(0, 0), -4).sum() == 81  # at the corner only the inner sides shrink
    assert not dilate_erode(square(10, 10, size=3), -4).any()
    assert dilate_erode(square(10, 10), 0) is not None and dilate_erode(square(10, 10), 0).sum() == 100


def test_dilate_3_matches_adetailers_own_test():
    mask = np.zeros((10, 10), bool)
    mask[3:6, 3:6] = True
    assert mask_box(dilate_erode(mask, 3)) == (2, 2, 7, 7) and dilate_erode(mask, 3).sum() == 25


def test_offset_x_right_y_up_and_nothing_wraps():
    mask = np.zeros((10, 10), bool)
    mask[4:6, 4:6] = True
    assert mask_box(offset_mask(mask, 1, 2)) == (5, 2, 7, 4)  # ADetailer's test: x=1, y=2 moves right 1, up 2
    assert mask_box(offset_mask(mask, -4, -3)) == (0, 7, 2, 9)
    clipped = offset_mask(mask, 0, 5)  # one row leaves at the top; ADetailer would wrap it to the bottom
    assert clipped.sum() == 2 and mask_box(clipped) == (4, 0, 6, 1)
    assert not offset_mask(mask, 20, 0).any()


def test_merge_and_merge_invert():
    a, b = square(0, 0), square(5, 5)
    assert merge_invert([a, b], "None") == [a, b]
    (merged,) = merge_invert([a, b], "Merge")
    assert merged.sum() == 175
    (inverted,) = merge_invert([a, b], "Merge and Invert")
    assert inverted.sum() == 40 * 40 - 175 and not (inverted & merged).any()
    assert merge_invert([], "Merge and Invert") == []


def test_ratio_filter_uses_box_area_over_picture_area():
    found = detections([(0, 0, 10, 10), (0, 0, 50, 50), (0, 0, 100, 100)], [0.9, 0.8, 0.7])  # ratios 0.01, 0.25, 1.0
    assert filter_by_ratio(found, 0.0, 1.0).labels == ["box0", "box1", "box2"]
    assert filter_by_ratio(found, 0.01, 0.25).labels == ["box0", "box1"]  # bounds included
    assert filter_by_ratio(found, 0.02, 0.9).labels == ["box1"]
    assert len(filter_by_ratio(found, 0.5, 0.4)) == 0


def test_k_largest_and_k_most_confident_reorder_and_keep_k():
    found = detections([(0, 0, 10, 10), (0, 0, 30, 30), (0, 0, 20, 20)], [0.9, 0.5, 0.7])
    assert keep_top_k(found, 0).labels == ["box0", "box1", "box2"]  # 0: all, as found
    assert keep_top_k(found, 2).labels == ["box1", "box2"]
    assert keep_top_k(found, 5, "Area").labels == ["box1", "box2", "box0"]
    assert keep_top_k(found, 2, "Confidence").labels == ["box0", "box2"]
    kept = keep_top_k(found, 1, "Confidence")
    assert kept.confidences.tolist() == pytest.approx([0.9]) and kept.masks[0].sum() == 100
    assert keep_top_k(detections([(0, 0, 10, 10), (50, 50, 60, 60)], [0.5, 0.5]), 1, "Area").labels == ["box1"]  # a tie: the later box


def test_box_orders():
    found = detections([(60, 60, 90, 90), (0, 0, 10, 10), (40, 40, 60, 60)], [0.9, 0.8, 0.7])
    assert sort_detections(found, "None").labels == ["box0", "box1", "box2"]
    assert sort_detections(found, "Position (left to right)").labels == ["box1", "box2", "box0"]
    assert sort_detections(found, "Position (center to edge)").labels == ["box2", "box0", "box1"]
    assert sort_detections(found, "Area (large to small)").labels == ["box0", "box2", "box1"]


def test_a_tab_runs_the_steps_in_adetailers_order():
    found = detections([(10, 10, 20, 20), (50, 50, 80, 80), (0, 0, 100, 100)], [0.9, 0.5, 0.8])
    tab = DetailerTab(ad_model="x", ad_mask_max_ratio=0.5, ad_y_offset=5, ad_dilate_erode=4)
    small, big = region_masks(found, tab)
    assert mask_box(small) == (9, 4, 22, 17) and small.sum() == 169  # up 5, then grown
    assert mask_box(big) == (49, 44, 82, 77)
    (merged,) = region_masks(found, DetailerTab(ad_model="x", ad_mask_k=1, ad_mask_filter_method="Confidence", ad_mask_merge_invert="Merge and Invert",
                                                ad_dilate_erode=0))
    assert merged.sum() == 100 * 100 - 100  # the most confident is the small box (0.9): all but it is repainted
    assert region_masks(Detections.empty(100, 100), DetailerTab(ad_model="x", ad_mask_merge_invert="Merge and Invert")) == []
    assert region_masks(found, DetailerTab(ad_model="x", ad_dilate_erode=-40, ad_mask_max_ratio=0.2)) == []  # eroded away: dropped


def test_masks_touching_the_users_inpainting_mask():
    a, b = square(0, 0, shape=(40, 40)), square(25, 25, shape=(40, 40))
    user = Image.new("L", (20, 20), 0)
    user.paste(255, (15, 15, 20, 20))  # at half size: the bottom-right corner, where b is
    assert touching([a, b], user) == [b]
    assert touching([], user) == []


def test_mask_to_pil():
    image = to_pil(square(0, 0, size=2, shape=(3, 4)))
    assert image.mode == "L" and image.size == (4, 3)
    assert np.asarray(image).tolist() == [[255, 255, 0, 0], [255, 255, 0, 0], [0, 0, 0, 0]]
    assert mask_box(np.zeros((3, 3), bool)) is None
