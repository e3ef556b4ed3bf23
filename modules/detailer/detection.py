"""What a detector gives: boxes in pixels, their confidences, and a mask per box (a segmentation
model's own mask, else the filled box), in the picture's own size.

Every detector (YOLO files in models/adetailer, the face detectors packages ship, the demo shape
detector) implements `Detector`; ADetailer's filtering and mask steps (modules/detailer/masks.py)
work on a `Detections` whatever made it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from modules.errors import UserError


class DetectorError(UserError):
    """A detector that cannot be used (a missing or refused file, a package that is not installed)."""


@dataclass
class Detections:
    """Boxes (N, 4) as x1, y1, x2, y2 pixels; confidences (N,); masks (N, H, W) bool at the picture's size."""

    boxes: np.ndarray
    confidences: np.ndarray
    masks: np.ndarray
    labels: list[str] = field(default_factory=list)  # a class name per box, where the model has them

    @staticmethod
    def empty(width: int, height: int) -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, height, width), bool))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def box_masks(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """Filled-box masks for models that give no masks of their own."""
        masks = np.zeros((len(boxes), height, width), bool)
        for index, (x1, y1, x2, y2) in enumerate(boxes):
            left, top = max(int(x1), 0), max(int(y1), 0)
            right, bottom = min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)
            masks[index, top:bottom, left:right] = True
        return masks


class Detector(Protocol):
    name: str

    def detect(self, image: Image.Image, confidence: float, classes: list[str] | None = None) -> Detections:
        """The regions of `image` found with at least `confidence` (classes: YOLO-World/multi-class
        models' class names to keep; None: all)."""
        ...
