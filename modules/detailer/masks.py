"""From detections to the masks the detailer repaints, step by step as ADetailer 25.3.0 takes them
(`pred_preprocessing` in its scripts/!adetailer.py, the steps in adetailer/mask.py):

1. keep the boxes whose area is within [min, max] of the picture's area (`filter_by_ratio`);
2. keep the k largest boxes, or the k most confident (k = 0 keeps all; k > 0 also reorders them,
   largest / most confident first) (`keep_top_k`);
3. order them by the setting "Sort bounding boxes by" (`ad_bbox_sortby`, default "None")
   (`sort_detections`);
4. move each mask by the x (right) and y (up) offsets, then grow it (positive) or shrink it
   (negative) with a square kernel of that many pixels (`offset_mask`, `dilate_erode`);
5. merge them into one, or merge and invert (`merge_invert`);
6. in img2img inpainting over the whole picture, keep the masks that touch the user's mask (`touching`).

The region index of each mask (its seed offset, its [SEP] prompt part) is its place in the result.
"Inpaint only masked" is A1111's own: ADetailer hands `inpaint_full_res` and the padding to the
img2img pass, whose crop Easel computes in modules/generation/masks.py (`crop_region`,
`expand_crop_region`); nothing is cropped here.

Where Easel differs on purpose: ADetailer shifts masks with `ImageChops.offset`, which wraps what
leaves one edge around to the other (a face pushed past the top would repaint a strip at the
bottom, and the crop would then span the picture); Easel lets it fall off. Masks left empty are
dropped after every step (ADetailer drops them only after dilating or eroding).
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from modules.detailer.args import DetailerTab
from modules.detailer.detection import Detections

SORT_ORDERS = ("None", "Position (left to right)", "Position (center to edge)", "Area (large to small)")


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """(x2 - x1) * (y2 - y1) of each box."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def select(detections: Detections, order: Sequence[int]) -> Detections:
    """The detections at `order`, in that order (labels too, where there are any)."""
    index = np.asarray(order, dtype=np.int64)
    labels = [detections.labels[i] for i in index] if len(detections.labels) == len(detections) else list(detections.labels)
    return Detections(detections.boxes[index], detections.confidences[index], detections.masks[index], labels)


def picture_size(detections: Detections) -> tuple[int, int]:
    """(width, height) of the picture the detections were made on."""
    return int(detections.masks.shape[2]), int(detections.masks.shape[1])


def filter_by_ratio(detections: Detections, low: float, high: float) -> Detections:
    """The boxes whose area over the picture's area is within [low, high] (ADetailer's `filter_by_ratio`)."""
    if len(detections) == 0:
        return detections
    width, height = picture_size(detections)
    ratios = box_areas(detections.boxes) / (width * height)
    return select(detections, [i for i, ratio in enumerate(ratios) if low <= ratio <= high])


def keep_top_k(detections: Detections, k: int, method: str = "Area") -> Detections:
    """The `k` largest boxes ("Area") or most confident ("Confidence"), that one first; all for k = 0
    (`filter_k_largest` / `filter_k_most_confident`: equal values keep the later box first)."""
    if len(detections) == 0 or k == 0:
        return detections
    if method == "Area":
        values = box_areas(detections.boxes)
    elif method == "Confidence":
        values = np.asarray(detections.confidences, dtype=np.float64)
    else:
        raise ValueError(f"unknown top-k method {method!r}")
    order = np.argsort(values, kind="stable")[-k:][::-1]
    return select(detections, order.tolist())


def sort_detections(detections: Detections, order: str = "None") -> Detections:
    """The boxes in the order of the setting "Sort bounding boxes by" (ADetailer's `sort_bboxes`)."""
    if order == "None" or len(detections) <= 1:
        return detections
    boxes = np.asarray(detections.boxes, dtype=np.float64)
    if order == "Position (left to right)":
        keys = boxes[:, 0].tolist()
    elif order == "Position (center to edge)":
        width, height = picture_size(detections)
        keys = [math.dist((width / 2, height / 2), ((x1 + x2) / 2, (y1 + y2) / 2)) for x1, y1, x2, y2 in boxes.tolist()]
    elif order == "Area (large to small)":
        keys = (-box_areas(boxes)).tolist()
    else:
        raise ValueError(f"unknown box order {order!r}; one of {', '.join(SORT_ORDERS)}")
    return select(detections, sorted(range(len(detections)), key=keys.__getitem__))


def offset_mask(mask: np.ndarray, x: int, y: int) -> np.ndarray:
    """`mask` moved `x` pixels right and `y` pixels up (ADetailer's "x(→)" and "y(↑)"); what leaves the
    picture is gone (ADetailer wraps it round: see the module docstring)."""
    if x == 0 and y == 0:
        return mask
    height, width = mask.shape
    moved = np.zeros_like(mask)
    rows, cols = -y, x  # array rows grow downwards
    src_rows = slice(max(-rows, 0), min(height - rows, height))
    dst_rows = slice(max(rows, 0), min(height + rows, height))
    src_cols = slice(max(-cols, 0), min(width - cols, width))
    dst_cols = slice(max(cols, 0), min(width + cols, width))
    if src_rows.start < src_rows.stop and src_cols.start < src_cols.stop:
        moved[dst_rows, dst_cols] = mask[src_rows, src_cols]
    return moved


def dilate_erode(mask: np.ndarray, value: int) -> np.ndarray:
    """Grown by a `value` x `value` square (value > 0) or shrunk by a -value square (value < 0), as
    OpenCV's dilate/erode with a MORPH_RECT kernel anchored at its centre: a 10 x 10 square becomes
    13 x 13 for 4, 7 x 7 for -4; the picture's edge neither grows nor eats a mask."""
    if value == 0:
        return mask
    size = abs(value)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    values = mask.astype(np.uint8) * 255
    changed = cv2.dilate(values, kernel, iterations=1) if value > 0 else cv2.erode(values, kernel, iterations=1)
    return changed > 0


def merge_invert(masks: list[np.ndarray], mode: str = "None") -> list[np.ndarray]:
    """"None": the masks as they are; "Merge": their union; "Merge and Invert": what the union leaves.
    No masks give no masks, whatever the mode."""
    if mode == "None" or not masks:
        return masks
    merged = np.logical_or.reduce(np.stack(masks))
    if mode == "Merge":
        return [merged]
    if mode == "Merge and Invert":
        return [~merged]
    raise ValueError(f"unknown merge mode {mode!r}")


def _non_empty(masks: list[np.ndarray]) -> list[np.ndarray]:
    return [mask for mask in masks if mask.any()]


def region_masks(detections: Detections, tab: DetailerTab, sort_order: str = "None") -> list[np.ndarray]:
    """Steps 1-5 for one tab: the (H, W) bool masks to repaint, in region order."""
    kept = filter_by_ratio(detections, tab.ad_mask_min_ratio, tab.ad_mask_max_ratio)
    kept = keep_top_k(kept, tab.ad_mask_k, tab.ad_mask_filter_method)
    kept = sort_detections(kept, sort_order)
    masks = _non_empty([offset_mask(np.asarray(mask, dtype=bool), tab.ad_x_offset, tab.ad_y_offset) for mask in kept.masks])
    masks = _non_empty([dilate_erode(mask, tab.ad_dilate_erode) for mask in masks])
    return _non_empty(merge_invert(masks, tab.ad_mask_merge_invert))


def touching(masks: list[np.ndarray], inpaint_mask: Image.Image) -> list[np.ndarray]:
    """The masks that share a pixel with the user's inpainting mask (ADetailer's `inpaint_mask_filter`,
    used in img2img inpainting when "only masked" is off). `inpaint_mask` is the binary "L" mask,
    already inverted for "inpaint not masked"; it is brought to the masks' size with Lanczos."""
    if not masks:
        return masks
    height, width = masks[0].shape
    if inpaint_mask.size != (width, height):
        inpaint_mask = inpaint_mask.resize((width, height), resample=Image.Resampling.LANCZOS)
    user = np.asarray(inpaint_mask.convert("L")) > 0
    return [mask for mask in masks if np.logical_and(mask, user).any()]


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """x1, y1, x2, y2 (right and bottom exclusive) around the mask's pixels; None for an empty mask."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    top, bottom = np.flatnonzero(rows)[[0, -1]]
    left, right = np.flatnonzero(cols)[[0, -1]]
    return int(left), int(top), int(right) + 1, int(bottom) + 1


def to_pil(mask: np.ndarray) -> Image.Image:
    """A bool mask as the "L" image img2img takes: 255 where it repaints, 0 elsewhere."""
    return Image.fromarray(np.where(mask, 255, 0).astype(np.uint8))
