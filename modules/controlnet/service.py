"""Turning a request's ControlNet units into what the sampler uses: each unit's model (loaded for
the checkpoint in use), its control map (preprocessed, fitted to the size of the pass) and its
rules; and the infotext line the extension writes for each unit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image

from modules.controlnet.annotators.files import AnnotatorModels
from modules.controlnet.apply import ControlPlan, LatentRule, PreparedUnit
from modules.controlnet.catalog import ControlNetCatalog
from modules.controlnet.infotext import unit_line
from modules.controlnet.models import ControlNetModels
from modules.controlnet.preprocess import DEFAULT_RESOLUTION, detect, find_preprocessor, fit, pixel_perfect_resolution
from modules.controlnet.units import ControlNetError, ControlUnit
from modules.errors import ModelLoadError

INPAINT_BLUR_SIGMA = 7  # the extension's control_net_inpaint_blur_sigma: the paste-back mask's dilation and blur


@dataclass
class PixelRule:
    """What a unit does to each decoded picture of its pass (the extension's post-processing):
    "paste" (inpaint_only) puts the unit's picture back outside the repaint mask, dilated and
    blurred by 7 px; "luminance" / "intensity" (recolor) put the map in as Lab's L or HSV's V."""

    kind: str
    source: np.ndarray  # paste: the picture (H, W, 3) uint8; recolor: the map's first channel (H, W)
    mask: np.ndarray | None = None  # paste: (H, W) float in [0, 1], 1 = the generated pixels

    def apply(self, image: Image.Image) -> Image.Image:
        if image.size != (self.source.shape[1], self.source.shape[0]):
            return image  # a pass of another size (the extension leaves it too)
        import cv2

        pixels = np.asarray(image.convert("RGB"))
        if self.kind == "paste":
            assert self.mask is not None
            m = self.mask[..., None]
            out = m * (pixels.astype(np.float32) / 255) + (1 - m) * (self.source.astype(np.float32) / 255)
            return Image.fromarray((out.clip(0, 1) * 255).astype(np.uint8))
        if self.kind == "luminance":
            lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)
            lab[..., 0] = self.source
            return Image.fromarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))
        hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)
        hsv[..., 2] = self.source
        return Image.fromarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


@dataclass
class PassControl:
    """The prepared units of one pass; the maps of those whose `save_detected_map` is on (the
    extension's detected maps, shown after the pictures); the units' rules on the predicted x0 and
    on the decoded pictures."""

    units: list[PreparedUnit]
    maps: list[Image.Image]
    latent_rules: list[LatentRule] = field(default_factory=list)
    pixel_rules: list[PixelRule] = field(default_factory=list)

    def encode_latents(self, encode: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Gives each latent rule the latent of its picture (`encode`: pixels in [0, 1] -> latent)."""
        for rule in self.latent_rules:
            if rule.latent is None:
                rule.latent = encode(rule.pixels)

    def plan(self, total_steps: int) -> ControlPlan | None:
        return ControlPlan(self.units, total_steps, lambda: 0, self.latent_rules) if self.units else None

    def finish(self, images: list[Image.Image]) -> list[Image.Image]:
        for rule in self.pixel_rules:
            images = [rule.apply(image) for image in images]
        return images


def shuffle_seed(seed: int, subseed: int) -> int:
    """The seed the extension gives numpy before a unit's preprocessor: (seed + subseed) & 0xFFFFFFFF,
    a subseed of -1 counting as the seed."""
    seed = max(int(seed), 0)
    return (seed + (seed if subseed == -1 else max(int(subseed), 0))) & 0xFFFFFFFF


def paste_mask(mask: np.ndarray) -> np.ndarray:
    """The repaint mask (H, W) in {0, 1} grown and softened as the extension does before pasting back:
    dilated by a 7x7 square, then a 7x7 box blur."""
    import cv2

    kernel = np.ones((INPAINT_BLUR_SIGMA, INPAINT_BLUR_SIGMA), dtype=np.uint8)
    return cv2.blur(cv2.dilate(mask, kernel), (INPAINT_BLUR_SIGMA, INPAINT_BLUR_SIGMA))


def _mask_array(mask: Image.Image) -> np.ndarray:
    """A mask picture (white: repaint) as (H, W, 3) uint8 for `fit`."""
    grey = np.asarray(mask.convert("L"))
    return np.stack([grey] * 3, axis=-1)


class ControlNets:
    """The ControlNet models of models/ControlNet and the ones loaded; the preprocessors' weight files
    of its annotators/ folder (and of each other ControlNet folder's) and the networks loaded."""

    def __init__(self, folders: Iterable[Path]):
        folders = [Path(folder) for folder in folders]
        self.catalog = ControlNetCatalog(folders)
        self.models = ControlNetModels()
        self.annotators = AnnotatorModels([folder / "annotators" for folder in folders])

    def check(self, units: list[ControlUnit], has_init_image: bool, has_init_mask: bool = False) -> None:
        """What can be checked before the job is queued: images, masks, preprocessors, model names."""
        for index, unit in enumerate(units):
            where = f"ControlNet unit {index}"
            if unit.image is None and not has_init_image:
                raise ControlNetError(f"{where}: the unit is enabled but has no image (txt2img needs one; img2img uses its picture).")
            preprocessor = find_preprocessor(unit.module, where, self.annotators)
            if preprocessor.needs_mask and unit.mask is None and not (unit.image is None and has_init_mask):
                raise ControlNetError(f"{where}: the {preprocessor.name} preprocessor needs a mask of what to repaint: send the unit's mask "
                                      "(white: repaint), or use it in img2img's Inpaint tab without its own image.")
            if unit.model in ("", "None", None):
                raise ControlNetError(f"{where}: no model is chosen (model is None); pick one of models/ControlNet.")
            self.catalog.find(unit.model, f"{where}, model")

    def prepare(self, units: list[ControlUnit], model: Any, width: int, height: int, init_image: Image.Image | None,
                hires: bool = False, init_mask: Image.Image | None = None, seed: int | None = None) -> PassControl:
        """The units for a pass at `width` x `height` (hires: the second pass, per `hr_option`).
        img2img: a unit without its own picture uses `init_image` (and `init_mask`, for the inpaint
        preprocessors); `seed`: the job's, for the preprocessors that draw random numbers."""
        control = PassControl([], [])
        sdxl = model.spec.family.latent_space == "sdxl"
        for index, unit in enumerate(units):
            if unit.hr_option == ("Low res only" if hires else "High res only"):
                continue
            where = f"ControlNet unit {index}"
            source = unit.image if unit.image is not None else init_image
            if source is None:
                raise ControlNetError(f"{where}: the unit is enabled but has no image (txt2img needs one; img2img uses its picture).")
            preprocessor = find_preprocessor(unit.module, where, self.annotators)
            resolution = unit.processor_res if unit.processor_res > 0 else DEFAULT_RESOLUTION
            if unit.pixel_perfect:
                resolution = pixel_perfect_resolution(source.size, (width, height), unit.resize_mode)
            detected = detect(preprocessor, source, resolution, unit.threshold_a, unit.threshold_b, seed, self.annotators)
            fitted = fit(detected, width, height, unit.resize_mode)
            hint = torch.from_numpy(fitted.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
            if preprocessor.needs_mask:
                mask_picture = unit.mask if unit.mask is not None else (init_mask if unit.image is None else None)
                if mask_picture is None:
                    raise ControlNetError(f"{where}: the {preprocessor.name} preprocessor needs a mask of what to repaint.")
                mask = (fit(_mask_array(mask_picture), width, height, unit.resize_mode)[..., 0] > 127).astype(np.float32)
                repaint = torch.from_numpy(mask)[None, None]
                # the inpaint ControlNets' protocol: the picture with the pixels to repaint at -1
                rgb = hint
                hint = rgb * (1 - repaint) - repaint
                if preprocessor.name == "inpaint_only":
                    control.latent_rules.append(LatentRule("inpaint", unit.weight, rgb, mask=repaint))
                    control.pixel_rules.append(PixelRule("paste", fitted, paste_mask(mask)))
            elif preprocessor.name.startswith("tile_colorfix"):
                variation = int(unit.threshold_a if unit.threshold_a != -1 else 8) * (2 if hires else 1)
                sharpness = (unit.threshold_b if unit.threshold_b != -1 else 1.0) if preprocessor.name.endswith("+sharp") else None
                control.latent_rules.append(LatentRule("colorfix", unit.weight, hint, variation=variation, sharpness=sharpness))
            elif preprocessor.name.startswith("recolor_"):
                control.pixel_rules.append(PixelRule(preprocessor.name.split("_")[1], fitted[..., 0].copy()))
            found = self.catalog.find(unit.model, f"{where}, model")
            try:
                network = self.models.get(found.path, model.unet)
            except ModelLoadError as error:  # the unit's model cannot serve this checkpoint: a field that cannot be used (422)
                raise ControlNetError(f"{where}, model {found.title}: {error}") from error
            mode = unit.control_mode
            if hires and preprocessor.name in ("canny", "mlsd") and mode == "Balanced":
                mode = "My prompt is more important"  # the extension's soft injection in the hires pass for these maps
            control.units.append(PreparedUnit(network, hint, unit.weight, mode, unit.guidance_start, unit.guidance_end, sdxl))
            if unit.save_detected_map:
                control.maps.append(Image.fromarray(fitted))
        return control

    def infotext(self, units: list[ControlUnit]) -> dict[str, str]:
        """`ControlNet N: "Module: ..., Model: ..., ..."` per unit, the extension's fields in its
        order (-1 thresholds and resolution as the preprocessor's defaults)."""
        lines = {}
        for index, unit in enumerate(units):
            preprocessor = find_preprocessor(unit.module, f"ControlNet unit {index}")
            values: dict[str, Any] = {
                "module": preprocessor.name, "model": self.catalog.find(unit.model).title, "weight": float(unit.weight),
                "resize_mode": unit.resize_mode,
                "processor_res": unit.processor_res if unit.processor_res > 0 else (DEFAULT_RESOLUTION if preprocessor.resolution else -1),
                "threshold_a": float(unit.threshold_a if unit.threshold_a != -1 or not preprocessor.slider_a else preprocessor.slider_a.value),
                "threshold_b": float(unit.threshold_b if unit.threshold_b != -1 or not preprocessor.slider_b else preprocessor.slider_b.value),
                "guidance_start": float(unit.guidance_start), "guidance_end": float(unit.guidance_end),
                "pixel_perfect": unit.pixel_perfect, "control_mode": unit.control_mode,
            }
            lines[f"ControlNet {index}"] = unit_line(values)
        return lines
