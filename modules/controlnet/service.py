"""Turning a request's ControlNet units into what the sampler uses: each unit's model (loaded for
the checkpoint in use), its control map (preprocessed, fitted to the size of the pass) and its
rules; and the infotext line the extension writes for each unit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image

from modules.controlnet.apply import ControlPlan, PreparedUnit
from modules.controlnet.catalog import ControlNetCatalog
from modules.controlnet.infotext import unit_line
from modules.controlnet.models import ControlNetModels
from modules.controlnet.preprocess import DEFAULT_RESOLUTION, detect, find_preprocessor, fit, pixel_perfect_resolution
from modules.controlnet.units import ControlNetError, ControlUnit
from modules.errors import ModelLoadError


@dataclass
class PassControl:
    """The prepared units of one pass and the maps they were made from."""

    units: list[PreparedUnit]
    maps: list[Image.Image]

    def plan(self, total_steps: int) -> ControlPlan | None:
        return ControlPlan(self.units, total_steps, lambda: 0) if self.units else None


class ControlNets:
    """The ControlNet models of models/ControlNet and the ones loaded."""

    def __init__(self, folders: Iterable[Path]):
        self.catalog = ControlNetCatalog(folders)
        self.models = ControlNetModels()

    def check(self, units: list[ControlUnit], has_init_image: bool) -> None:
        """What can be checked before the job is queued: images, preprocessors, model names."""
        for index, unit in enumerate(units):
            where = f"ControlNet unit {index}"
            if unit.image is None and not has_init_image:
                raise ControlNetError(f"{where}: the unit is enabled but has no image (txt2img needs one; img2img uses its picture).")
            find_preprocessor(unit.module, where)
            if unit.model in ("", "None", None):
                raise ControlNetError(f"{where}: no model is chosen (model is None); pick one of models/ControlNet.")
            self.catalog.find(unit.model, f"{where}, model")

    def prepare(self, units: list[ControlUnit], model: Any, width: int, height: int, init_image: Image.Image | None,
                hires: bool = False) -> PassControl:
        """The units for a pass at `width` x `height` (hires: the second pass, per `hr_option`)."""
        prepared, maps = [], []
        sdxl = model.spec.family.latent_space == "sdxl"
        for index, unit in enumerate(units):
            if unit.hr_option == ("Low res only" if hires else "High res only"):
                continue
            where = f"ControlNet unit {index}"
            source = unit.image if unit.image is not None else init_image
            if source is None:
                raise ControlNetError(f"{where}: the unit is enabled but has no image (txt2img needs one; img2img uses its picture).")
            preprocessor = find_preprocessor(unit.module, where)
            resolution = unit.processor_res if unit.processor_res > 0 else DEFAULT_RESOLUTION
            if unit.pixel_perfect:
                resolution = pixel_perfect_resolution(source.size, (width, height), unit.resize_mode)
            detected = detect(preprocessor, source, resolution, unit.threshold_a, unit.threshold_b)
            fitted = fit(detected, width, height, unit.resize_mode)
            hint = torch.from_numpy(fitted.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
            found = self.catalog.find(unit.model, f"{where}, model")
            try:
                network = self.models.get(found.path, model.unet)
            except ModelLoadError as error:  # the unit's model cannot serve this checkpoint: a field that cannot be used (422)
                raise ControlNetError(f"{where}, model {found.title}: {error}") from error
            mode = unit.control_mode
            if hires and preprocessor.name in ("canny", "mlsd") and mode == "Balanced":
                mode = "My prompt is more important"  # the extension's soft injection in the hires pass for these maps
            prepared.append(PreparedUnit(network, hint, unit.weight, mode, unit.guidance_start, unit.guidance_end, sdxl))
            maps.append(Image.fromarray(fitted))
        return PassControl(prepared, maps)

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
