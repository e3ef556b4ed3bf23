"""Control maps from pictures: the preprocessors that need no weights, computed as the extension
computes them (OpenCV), the preprocessor resolution and pixel perfect, and fitting the map to the
generation size by the unit's resize mode.

With weights (depth, openpose, hed, lineart, ...) a preprocessor is listed but refused with the
file it needs: none are downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from modules.errors import UserError


@dataclass(frozen=True)
class Slider:
    name: str
    value: float
    minimum: float
    maximum: float
    step: float = 1.0


@dataclass(frozen=True)
class Preprocessor:
    name: str
    run: Callable[[np.ndarray, float, float], np.ndarray] | None  # (RGB uint8 HxWx3, threshold a, b) -> map; None: needs weights
    resolution: bool = True  # has the "Preprocessor Resolution" slider (default 512)
    slider_a: Slider | None = None
    slider_b: Slider | None = None
    weights: str = ""  # the annotator file it needs, for the ones with weights
    tag: str = ""  # control type (Canny, Depth, ...)

    @property
    def model_free(self) -> bool:
        return self.run is not None


class PreprocessorError(UserError):
    pass


def _cv2():
    import cv2

    return cv2


def _none(image: np.ndarray, a: float, b: float) -> np.ndarray:
    return image


def _invert(image: np.ndarray, a: float, b: float) -> np.ndarray:
    return 255 - image


def _canny(image: np.ndarray, low: float, high: float) -> np.ndarray:
    edges = _cv2().Canny(image, int(low), int(high))
    return np.stack([edges] * 3, axis=-1)


def _threshold(image: np.ndarray, value: float, b: float) -> np.ndarray:
    binary = (image.min(axis=2) > value).astype(np.uint8) * 255
    return np.stack([binary] * 3, axis=-1)


def _blur(image: np.ndarray, sigma: float, b: float) -> np.ndarray:
    return _cv2().GaussianBlur(image, (0, 0), float(sigma))


PREPROCESSORS: dict[str, Preprocessor] = {p.name: p for p in [
    Preprocessor("none", _none, resolution=False, tag="All"),
    Preprocessor("invert", _invert, tag="Lineart"),
    Preprocessor("canny", _canny, slider_a=Slider("Canny Low Threshold", 100, 1, 255), slider_b=Slider("Canny High Threshold", 200, 1, 255), tag="Canny"),
    Preprocessor("threshold", _threshold, slider_a=Slider("Binarization Threshold", 127, 0, 255), tag="Scribble"),
    Preprocessor("blur_gaussian", _blur, slider_a=Slider("Sigma", 9.0, 0.01, 64.0, 0.01), tag="Tile"),
    Preprocessor("depth_midas", None, weights="dpt_hybrid-midas-501f0c75.pt", tag="Depth"),
    Preprocessor("openpose", None, weights="body_pose_model.pth", tag="OpenPose"),
    Preprocessor("softedge_hed", None, weights="ControlNetHED.pth", tag="SoftEdge"),
    Preprocessor("lineart_realistic", None, weights="sk_model.pth", tag="Lineart"),
    Preprocessor("mlsd", None, weights="mlsd_large_512_fp32.pth", tag="MLSD"),
]}
ALIASES = {"depth": "depth_midas", "hed": "softedge_hed", "lineart": "lineart_realistic", "None": "none"}
DEFAULT_RESOLUTION = 512


def find_preprocessor(name: str, where: str) -> Preprocessor:
    key = ALIASES.get(name, name)
    found = PREPROCESSORS.get(key) or PREPROCESSORS.get(key.lower())
    if found is None:
        raise PreprocessorError(f"{where}: module {name!r} is not a preprocessor Easel has (it has: {', '.join(PREPROCESSORS)}).")
    if found.run is None:
        raise PreprocessorError(f"{where}: the {found.name} preprocessor needs its weights, {found.weights}, in models/ControlNet/annotators; "
                                "Easel downloads nothing. Send an already-made control map with module none instead.")
    return found


def pixel_perfect_resolution(image_size: tuple[int, int], target: tuple[int, int], resize_mode: str) -> int:
    """The extension's pixel perfect: the preprocessor resolution at which the map lands at the
    generation size without resampling."""
    (w, h), (width, height) = image_size, target
    k = max(height / h, width / w) if resize_mode != "Resize and Fill" else min(height / h, width / w)
    return int(round(k * min(h, w)))


def _resize_short_side(image: np.ndarray, resolution: int) -> np.ndarray:
    cv2 = _cv2()
    h, w = image.shape[:2]
    k = resolution / min(h, w)
    size = (max(1, int(round(w * k))), max(1, int(round(h * k))))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)


def detect(preprocessor: Preprocessor, image: Image.Image, resolution: int, threshold_a: float, threshold_b: float) -> np.ndarray:
    """The control map of `image` (RGB uint8), at the preprocessor resolution (-1: its default)."""
    array = np.asarray(image.convert("RGB"))
    if preprocessor.resolution:
        array = _resize_short_side(array, resolution if resolution > 0 else DEFAULT_RESOLUTION)
    a = threshold_a if threshold_a != -1 or preprocessor.slider_a is None else preprocessor.slider_a.value
    b = threshold_b if threshold_b != -1 or preprocessor.slider_b is None else preprocessor.slider_b.value
    assert preprocessor.run is not None
    return np.ascontiguousarray(preprocessor.run(array, a, b).astype(np.uint8))


def fit(control: np.ndarray, width: int, height: int, resize_mode: str) -> np.ndarray:
    """The map at the generation size: stretched (Just Resize), covering and centre-cropped (Crop
    and Resize), or inside and padded with the median colour of its border (Resize and Fill)."""
    cv2 = _cv2()
    h, w = control.shape[:2]

    def scaled(k: float) -> np.ndarray:
        size = (max(1, int(round(w * k))), max(1, int(round(h * k))))
        return cv2.resize(control, size, interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)

    if resize_mode == "Just Resize":
        return cv2.resize(control, (width, height), interpolation=cv2.INTER_CUBIC if width * height > w * h else cv2.INTER_AREA)
    if resize_mode == "Crop and Resize":
        big = scaled(max(width / w, height / h))
        top, left = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
        return big[top:top + height, left:left + width]
    small = scaled(min(width / w, height / h))
    border = np.concatenate([control[0], control[-1], control[:, 0], control[:, -1]])
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = np.median(border, axis=0).astype(np.uint8)
    top, left = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out
