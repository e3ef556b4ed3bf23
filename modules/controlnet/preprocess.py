"""Control maps from pictures: the preprocessors that need no weights, computed as the extension
computes them (OpenCV), the preprocessor resolution and pixel perfect, and fitting the map to the
generation size by the unit's resize mode.

With weights: softedge_hed(safe) and lineart_realistic/coarse run their networks
(modules/controlnet/annotators) when the user has put the file in models/ControlNet/annotators;
the others (depth, openpose, mlsd, lama) are listed but refused. Either way a missing file is
refused with its name: none are downloaded.

Maps only: what the extension does with some of them outside the map (tile_colorfix's correction
of each step's prediction towards the control picture's colours, recolor's swap of the finished
picture's lightness for the map's) is not done here. shuffle draws from numpy's legacy generator
as the extension does; the extension seeds it from the generation's seed and subseed, `run` uses
seed 0 (`content_shuffle` takes any seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

from modules.errors import UserError
from modules.i18n import N_

if TYPE_CHECKING:
    from modules.controlnet.annotators.files import AnnotatorModels

Annotate = Callable[[np.ndarray, "AnnotatorModels"], np.ndarray]  # (RGB uint8 HxWx3, the annotator files) -> map


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
    resize: Callable[[np.ndarray, int], np.ndarray] | None = None  # its own way to the resolution (default: _resize_short_side)
    seeded: Callable[[np.ndarray, int], np.ndarray] | None = None  # with the job's seed (shuffle), when there is one
    needs_mask: bool = False  # the inpaint preprocessors: the unit's mask (or img2img's) says what to repaint
    annotate: Annotate | None = None  # runs a network with the weights file `weights` (the annotator folders)

    @property
    def model_free(self) -> bool:
        return self.run is not None

    @property
    def needs_weights(self) -> bool:
        return self.run is None and bool(self.weights)


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


def pad64(image: np.ndarray) -> np.ndarray:
    """The picture grown to multiples of 64 by repeating its last row and column: the extension
    filters the padded picture and crops, which changes blurs near the right and bottom edges."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, -h % 64), (0, -w % 64), (0, 0)), mode="edge")


def grey3(channel: np.ndarray) -> np.ndarray:
    return np.repeat(channel.astype(np.uint8)[:, :, None], 3, axis=2)


def _scribble_xdog(image: np.ndarray, threshold: float, b: float) -> np.ndarray:
    """Difference of Gaussians (sigma 5 minus sigma 0.5, its smallest channel): a pixel is a line
    where twice its darkness exceeds the threshold. The doubling is uint8 arithmetic in the
    extension, so darkness of 128 and more wraps around; kept, maps match."""
    cv2, (h, w) = _cv2(), image.shape[:2]
    x = pad64(image).astype(np.float32)
    difference = (cv2.GaussianBlur(x, (0, 0), 5.0) - cv2.GaussianBlur(x, (0, 0), 0.5)).min(axis=2)
    darkness = 255 - np.clip(255 - difference, 0, 255).astype(np.uint8)
    doubled = (darkness.astype(np.uint16) * 2 % 256).astype(np.uint8)
    return grey3((doubled > threshold)[:h, :w] * 255)


def _lineart_standard(image: np.ndarray, a: float, b: float) -> np.ndarray:
    """How much darker each pixel is than its sigma-6 surroundings (smallest channel), scaled so
    the median of the clearly dark pixels (over 8, padded picture included) lands at 127."""
    cv2, (h, w) = _cv2(), image.shape[:2]
    x = pad64(image).astype(np.float32)
    darker = np.clip((cv2.GaussianBlur(x, (0, 0), 6.0) - x).min(axis=2), 0, 255)
    dark = darker[darker > 8]
    scale = max(16, np.median(dark)) if dark.size else 16
    return grey3(np.clip(darker / scale * 127, 0, 255)[:h, :w])


def _tile_resample(image: np.ndarray, rate: float, b: float) -> np.ndarray:
    """Area-averaged down by the rate (sides truncated); a rate under 1.1 leaves the picture."""
    if rate < 1.1:
        return image
    cv2, (h, w) = _cv2(), image.shape[:2]
    return cv2.resize(image, (max(1, int(w / rate)), max(1, int(h / rate))), interpolation=cv2.INTER_AREA)


def _color_resize(image: np.ndarray, resolution: int) -> np.ndarray:
    """The colour grid's own resize: short side to the resolution, area interpolation both ways."""
    cv2, (h, w) = _cv2(), image.shape[:2]
    size = (int(round(w / h * resolution)), resolution) if h < w else (resolution, int(round(h / w * resolution)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _color(image: np.ndarray, a: float, b: float) -> np.ndarray:
    """One colour per 64x64 cell: bicubic down to 1/64 (cv2's bicubic samples the 4x4 pixels at a
    cell's centre; it is no average), nearest back up."""
    cv2, (h, w) = _cv2(), image.shape[:2]
    cells = cv2.resize(image, (max(1, w // 64), max(1, h // 64)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(cells, (w, h), interpolation=cv2.INTER_NEAREST)


def _gamma_grey(channel: np.ndarray, gamma: float) -> np.ndarray:
    return grey3(np.clip((channel.astype(np.float32) / 255.0) ** gamma * 255.0, 0, 255))


def _recolor_luminance(image: np.ndarray, gamma: float, b: float) -> np.ndarray:
    """L of 8-bit Lab, gamma-corrected. The extension converts the RGB picture as if it were BGR,
    so red and blue trade weights in L; kept, maps match."""
    return _gamma_grey(_cv2().cvtColor(image, _cv2().COLOR_BGR2LAB)[:, :, 0], gamma)


def _recolor_intensity(image: np.ndarray, gamma: float, b: float) -> np.ndarray:
    """V of HSV (the brightest channel), gamma-corrected."""
    return _gamma_grey(image.max(axis=2), gamma)


def _noise_field(rng: np.random.RandomState, h: int, w: int, cell: int = 256) -> np.ndarray:
    """Smooth noise in 0..1: uniform values on a coarse grid one cell wider each side, bicubic up,
    the middle cut out, stretched to span 0..1."""
    cv2 = _cv2()
    coarse = rng.uniform(0, 1, size=(h // cell + 2, w // cell + 2, 1))
    field = cv2.resize(coarse, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)[cell:cell + h, cell:cell + w]
    field = field - field.min()
    return field / field.max()


def content_shuffle(image: np.ndarray, seed: int) -> np.ndarray:
    """The picture warped by a smooth random field: each pixel is read (bilinear) from the point
    whose x and y are two noise fields spread over the picture's width and height. Drawn from
    numpy's legacy generator seeded with `seed`, x's field first, as the extension does after
    `np.random.seed` (it seeds with (seed + subseed) & 0xFFFFFFFF)."""
    cv2, (h, w) = _cv2(), image.shape[:2]
    rng = np.random.RandomState(seed & 0xFFFFFFFF)
    x = (_noise_field(rng, h, w) * float(w - 1)).astype(np.float32)
    y = (_noise_field(rng, h, w) * float(h - 1)).astype(np.float32)
    return cv2.remap(image, x, y, cv2.INTER_LINEAR)


def _shuffle(image: np.ndarray, a: float, b: float) -> np.ndarray:
    return content_shuffle(image, 0)


def _annotator(module: str, function: str) -> Annotate:
    """`modules.controlnet.annotators.<module>.<function>`, imported (with torch) when it first runs."""
    def annotate(image: np.ndarray, annotators: AnnotatorModels) -> np.ndarray:
        run: Annotate = getattr(import_module(f"modules.controlnet.annotators.{module}"), function)
        return run(image, annotators)
    return annotate


PREPROCESSORS: dict[str, Preprocessor] = {p.name: p for p in [
    Preprocessor("none", _none, resolution=False, tag="All"),
    # each control type's first entry is its default (the extension's: lineart_standard, tile_resample)
    Preprocessor("lineart_standard", _lineart_standard, tag="Lineart"),
    Preprocessor("invert", _invert, tag="Lineart"),
    Preprocessor("canny", _canny, slider_a=Slider(N_("Canny Low Threshold"), 100, 1, 255), slider_b=Slider(N_("Canny High Threshold"), 200, 1, 255), tag="Canny"),
    Preprocessor("threshold", _threshold, slider_a=Slider(N_("Binarization Threshold"), 127, 0, 255), tag="Scribble"),
    Preprocessor("tile_resample", _tile_resample, resolution=False, slider_a=Slider(N_("Down Sampling Rate"), 1.0, 1.0, 8.0, 0.01), tag="Tile"),
    Preprocessor("blur_gaussian", _blur, slider_a=Slider(N_("Sigma"), 9.0, 0.01, 64.0, 0.01), tag="Tile"),
    Preprocessor("scribble_xdog", _scribble_xdog, slider_a=Slider(N_("XDoG Threshold"), 32, 1, 64, 0.01), tag="Scribble"),
    Preprocessor("tile_colorfix", _none, resolution=False, slider_a=Slider(N_("Variation"), 8.0, 3.0, 32.0), tag="Tile"),
    Preprocessor("tile_colorfix+sharp", _none, resolution=False, slider_a=Slider(N_("Variation"), 8.0, 3.0, 32.0),
                 slider_b=Slider(N_("Sharpness"), 1.0, 0.0, 2.0, 0.01), tag="Tile"),
    Preprocessor("color", _color, resize=_color_resize, tag="T2I-Adapter"),
    Preprocessor("recolor_luminance", _recolor_luminance, resolution=False, slider_a=Slider(N_("Gamma Correction"), 1.0, 0.1, 2.0, 0.001), tag="Recolor"),
    Preprocessor("recolor_intensity", _recolor_intensity, resolution=False, slider_a=Slider(N_("Gamma Correction"), 1.0, 0.1, 2.0, 0.001), tag="Recolor"),
    Preprocessor("shuffle", _shuffle, seeded=lambda image, seed: content_shuffle(image, seed), tag="Shuffle"),
    # the map is the picture; the mask goes with it to the network (masked pixels -1), and inpaint_only
    # also holds the unmasked latent and pastes the unmasked pixels back (modules/controlnet/service.py)
    Preprocessor("inpaint_only", _none, resolution=False, needs_mask=True, tag="Inpaint"),
    Preprocessor("inpaint", _none, resolution=False, needs_mask=True, tag="Inpaint"),
    Preprocessor("inpaint_only+lama", None, resolution=False, needs_mask=True, weights="ControlNetLama.pth", tag="Inpaint"),
    Preprocessor("depth_midas", None, weights="dpt_hybrid-midas-501f0c75.pt", tag="Depth"),
    Preprocessor("openpose", None, weights="body_pose_model.pth", tag="OpenPose"),
    Preprocessor("softedge_hed", None, weights="ControlNetHED.pth", tag="SoftEdge", annotate=_annotator("hed", "softedge_hed")),
    Preprocessor("softedge_hedsafe", None, weights="ControlNetHED.pth", tag="SoftEdge", annotate=_annotator("hed", "softedge_hedsafe")),
    Preprocessor("lineart_realistic", None, weights="sk_model.pth", tag="Lineart", annotate=_annotator("lineart", "lineart_realistic")),
    Preprocessor("lineart_coarse", None, weights="sk_model2.pth", tag="Lineart", annotate=_annotator("lineart", "lineart_coarse")),
    Preprocessor("mlsd", None, weights="mlsd_large_512_fp32.pth", tag="MLSD"),
]}
ALIASES = {"depth": "depth_midas", "hed": "softedge_hed", "hed_safe": "softedge_hedsafe", "lineart": "lineart_realistic", "None": "none",
           # the extension's UI labels, which its API also takes as module names
           "t2ia_color_grid": "color", "lineart_standard (from white bg & black line)": "lineart_standard",
           "invert (from white bg & black line)": "invert", "inpaint_global_harmonious": "inpaint"}
DEFAULT_RESOLUTION = 512


def _weights_missing(where: str, preprocessor: Preprocessor) -> PreprocessorError:
    return PreprocessorError(f"{where}: the {preprocessor.name} preprocessor needs its weights, {preprocessor.weights}, in models/ControlNet/annotators; "
                             "Easel downloads nothing. Send an already-made control map with module none instead.")


def find_preprocessor(name: str, where: str, annotators: AnnotatorModels | None = None) -> Preprocessor:
    """The preprocessor `name` (or an alias); one that needs weights Easel cannot run is refused, and
    with `annotators` one whose weights file none of their folders has."""
    key = ALIASES.get(name, name)
    found = PREPROCESSORS.get(key) or PREPROCESSORS.get(key.lower())
    if found is None:
        raise PreprocessorError(f"{where}: module {name!r} is not a preprocessor Easel has (it has: {', '.join(PREPROCESSORS)}).")
    if found.run is None and (found.annotate is None or (annotators is not None and annotators.find(found.weights) is None)):
        raise _weights_missing(where, found)
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


def detect(preprocessor: Preprocessor, image: Image.Image, resolution: int, threshold_a: float, threshold_b: float,
           seed: int | None = None, annotators: AnnotatorModels | None = None) -> np.ndarray:
    """The control map of `image` (RGB uint8), at the preprocessor resolution (-1: its default);
    `seed`: the job's, for the preprocessors that draw random numbers (else as a preview: seed 0);
    `annotators`: the weight files, for the preprocessors that run a network."""
    array = np.asarray(image.convert("RGB"))
    if preprocessor.resolution:
        array = (preprocessor.resize or _resize_short_side)(array, resolution if resolution > 0 else DEFAULT_RESOLUTION)
    a = threshold_a if threshold_a != -1 or preprocessor.slider_a is None else preprocessor.slider_a.value
    b = threshold_b if threshold_b != -1 or preprocessor.slider_b is None else preprocessor.slider_b.value
    if seed is not None and preprocessor.seeded is not None:
        return np.ascontiguousarray(preprocessor.seeded(array, seed).astype(np.uint8))
    if preprocessor.run is None:
        if preprocessor.annotate is None or annotators is None or annotators.find(preprocessor.weights) is None:
            raise _weights_missing("ControlNet", preprocessor)
        return np.ascontiguousarray(preprocessor.annotate(array, annotators).astype(np.uint8))
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
