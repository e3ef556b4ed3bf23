"""Typed settings with defaults and descriptions, persisted as JSON in the data dir.

A bad value in the file (wrong type, out of range, unknown choice) falls back to the default with a
warning; a file that is not JSON at all is moved aside and a fresh one started. Unknown keys are kept
untouched so settings of extensions or newer versions survive a round trip.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from modules.files import move_aside, write_atomically

log = logging.getLogger(__name__)

# The live preview methods (modules/generation/previews.py implements them; listed here so that
# reading settings never imports torch).
PREVIEW_METHODS = ("Approx cheap", "Full", "TAESD", "None")


def setting(default: Any, description: str, choices: tuple | None = None, minimum: float | None = None, maximum: float | None = None) -> Any:
    return field(default=default, metadata={"description": description, "choices": choices, "min": minimum, "max": maximum})


@dataclass
class Settings:
    """User settings (A1111 option names where one exists)."""

    sd_model_checkpoint: str = setting("", "Checkpoint to load at start (title, name or hash); empty: the first one found.")
    sd_vae: str = setting("Automatic", "VAE: Automatic (a VAE named like the checkpoint, else its own), None (its own), or a VAE file name.")
    sd_checkpoint_cache: int = setting(2, "Checkpoints kept in RAM for fast switching, the active one included.", minimum=1, maximum=16)
    sd_vae_checkpoint_cache: int = setting(2, "VAEs kept in RAM.", minimum=1, maximum=16)
    sd2_prediction: str = setting("auto", "Prediction type of SD2 checkpoints without a .yaml: auto detects it with a test pass.", choices=("auto", "epsilon", "v_prediction"))
    device: str = setting("auto", "Device: auto, cpu, cuda, cuda:N or mps.")
    dtype: str = setting("auto", "Weights dtype: auto (fp16 on GPU; on a CPU bf16 where it has AMX, else fp32), fp32, fp16 or bf16.", choices=("auto", "fp32", "fp16", "bf16"))
    show_progress_type: str = setting("Approx cheap", "Live preview method: Approx cheap (nearly free), Full (a real VAE decode), TAESD (needs taesd_decoder / taesdxl_decoder in models/VAE-approx) or None.", choices=PREVIEW_METHODS)
    show_progress_every_n_steps: int = setting(1, "Show a live preview every N sampling steps (0: no previews).", minimum=0, maximum=100)
    samples_save: bool = setting(True, "Save every generated image to the outputs folder.")
    api_save_images: bool = setting(True, "Save images made through the API even when the request leaves save_images false (A1111 saves them only when asked), so they are in the outputs folder and in History.")
    save_txt: bool = setting(False, "Also write each image's parameters to a .txt file beside it.")
    grid_save: bool = setting(True, "Save a grid of the images when a job makes more than one (in <task>-grids), and show it first in the gallery.")
    samples_format: str = setting("png", "File format of saved images (the generation parameters go into each).", choices=("png", "jpg", "webp"))
    samples_filename_pattern: str = setting("[seed]", "File name pattern after the counter: tags like [seed], [model_name], [prompt_words], [datetime<%Y%m%d>].")
    default_sampler: str = setting("DPM++ 2M", "Sampler selected when the page opens.")
    max_input_megapixels: float = setting(25.0, "Largest picture (and mask) img2img and inpaint accept, in megapixels; bigger ones are refused with a message.", minimum=0.25, maximum=400.0)
    max_queued_jobs: int = setting(64, "Jobs that may wait in the queue at once (the running one not counted); more are refused with \"the queue is full\" (the API answers 503) until one starts. 0: no limit.", minimum=0, maximum=100000)
    language: str = setting("auto", "Language of the page: auto (the browser's), en, zh-CN, or any language with a file in localizations/ (restart to apply).")
    ESRGAN_tile: int = setting(192, "Upscaler models run on tiles of this many pixels a side, so memory stays bounded (0: the whole picture at once).", minimum=0, maximum=4096)
    ESRGAN_tile_overlap: int = setting(8, "Pixels the upscaler tiles overlap by, blended so no seam shows.", minimum=0, maximum=256)
    control_net_no_detectmap: bool = setting(False, "Do not show the ControlNet units' control maps after the pictures (nor return them in the API's images).")
    ad_same_seed_for_each_tab: bool = setting(False, "ADetailer: every region of a tab gets the picture's own seed (off: region j gets seed + j).")
    ad_bbox_sortby: str = setting("None", "ADetailer: the order the regions of a tab are repainted in.", choices=("None", "Position (left to right)", "Position (center to edge)", "Area (large to small)"))
    dp_write_raw_template: bool = setting(True, "Dynamic Prompts: write the template (Template, Negative Template) into each picture's parameters, so the whole job can be drawn again; the prompt stays the one the picture was made with.")
    refiner_switch_by_sample_steps: bool = setting(False, "The refiner takes over after its share of the sampling steps, not of the model's timesteps (A1111 before 1.8).")
    hires_fix_refiner_pass: str = setting("second pass", "With hires fix, the pass the refiner takes part in.", choices=("first pass", "second pass", "both passes"))
    img2img_fix_steps: bool = setting(False, "img2img runs exactly the steps set (A1111's option); off: steps x denoising strength of them.")

    @staticmethod
    def describe() -> dict[str, dict[str, Any]]:
        """Each setting's default, description and allowed values (for the Settings UI and the API)."""
        return {f.name: {"default": f.default, **f.metadata} for f in fields(Settings)}

    def validate(self, name: str, value: Any) -> Any:
        """The value converted to the setting's type, or ValueError with a sentence."""
        spec = {f.name: f for f in fields(self)}.get(name)
        if spec is None:
            raise ValueError(f"Unknown setting {name}.")
        kind: type[Any] = type(spec.default)  # int, float, str or bool: every setting has a default
        if kind is int and isinstance(value, bool) or not isinstance(value, (kind, int if kind is float else kind)):
            kind_name = {int: "an integer", float: "a number", str: "text", bool: "true or false"}.get(kind, kind.__name__)
            raise ValueError(f"{name} must be {kind_name}, not {value!r}.")
        value = kind(value)
        if kind is float and not math.isfinite(value):  # JSON files may hold NaN and Infinity; no setting wants them
            raise ValueError(f"{name} must be a finite number, not {value!r}.")
        meta = spec.metadata
        if meta["choices"] and value not in meta["choices"]:
            raise ValueError(f"{name} must be one of {', '.join(meta['choices'])}, not {value!r}.")
        if meta["min"] is not None and value < meta["min"] or meta["max"] is not None and value > meta["max"]:
            raise ValueError(f"{name} must be between {meta['min']} and {meta['max']}, not {value!r}.")
        return value


class SettingsStore:
    """Loads and saves Settings as `config.json` in the data dir."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.extra: dict[str, Any] = {}
        self.settings = self._load()

    def _load(self) -> Settings:
        settings = Settings()
        if not self.path.exists():
            return settings
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:  # not JSON, not UTF-8, not an object, empty...
            try:
                aside = move_aside(self.path)  # config.json.corrupt, .corrupt.1 ...: earlier ones kept
                log.warning("Settings file %s is unreadable (%s); moved it to %s and started with the defaults.", self.path, error, aside)
            except OSError as move_error:
                log.warning("Settings file %s is unreadable (%s) and could not be moved aside (%s); using the defaults.",
                            self.path, error, move_error)
            return settings
        known = {f.name for f in fields(Settings)}
        for key, value in data.items():
            if key not in known:
                self.extra[key] = value
                continue
            try:
                setattr(settings, key, settings.validate(key, value))
            except ValueError as error:
                log.warning("Setting ignored, using the default: %s", error)
        return settings

    def update(self, values: dict[str, Any]) -> None:
        """Validates all values first, then applies and saves them (all or nothing)."""
        checked = {key: self.settings.validate(key, value) for key, value in values.items()}
        for key, value in checked.items():
            setattr(self.settings, key, value)
        self.save()

    def save(self) -> None:
        """Writes the settings and the unknown keys (a crash or a full disk leaves the old file whole)."""
        data = {**self.extra, **{f.name: getattr(self.settings, f.name) for f in fields(Settings)}}
        write_atomically(self.path, json.dumps(data, indent=2))
