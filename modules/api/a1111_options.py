"""A1111 settings that clients read and set through /options but that are not Easel settings.

Each is one row of COMPAT_OPTIONS. Their values are kept in config.json beside Easel's own (the
settings store keeps keys it does not know), show in GET /options, are validated on POST, and
the API reads them as the defaults of its requests: `CLIP_stop_at_last_layers` is the clip skip of
every API generation, `randn_source` its noise source, `jpeg_quality` the quality of JPEG/WebP
answers. A request's `override_settings` may name them too, for that request only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modules.api.errors import ApiInputError
from modules.generation.request import RNG_SOURCES


@dataclass(frozen=True)
class CompatOption:
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def check(self, name: str, value: Any) -> Any:
        """The value converted to the option's type, or ApiInputError with a sentence."""
        kind = type(self.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise ApiInputError(f"{name} must be true or false, not {value!r}.")
            return value
        if kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (kind is int and float(value) != int(value)):
                raise ApiInputError(f"{name} must be {'a whole number' if kind is int else 'a number'}, not {value!r}.")
            value = kind(value)
            if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
                raise ApiInputError(f"{name} must be between {self.minimum:g} and {self.maximum:g}, not {value!r}.")
            return value
        if not isinstance(value, str):
            raise ApiInputError(f"{name} must be text, not {value!r}.")
        if self.choices and value not in self.choices:
            raise ApiInputError(f"{name} must be one of {', '.join(self.choices)}, not {value!r}.")
        return value


COMPAT_OPTIONS: dict[str, CompatOption] = {
    "CLIP_stop_at_last_layers": CompatOption(1, "Clip skip of API generations.", 1, 12),
    "eta_noise_seed_delta": CompatOption(0, "ENSD: added to the seed of ancestral samplers' noise.", 0, 2**32 - 1),
    "randn_source": CompatOption("GPU", "Where initial noise is drawn (A1111's RNG setting).", choices=RNG_SOURCES),
    "s_noise": CompatOption(1.0, "Sigma noise of the samplers that take it.", 0.0, 10.0),
    "jpeg_quality": CompatOption(80, "Quality of JPEG and WebP images the API returns.", 1, 100),
    "enable_pnginfo": CompatOption(True, "Embed the infotext in the images the API returns."),
    "live_previews_enable": CompatOption(True, "Make live previews for /progress's current_image."),
    "return_grid": CompatOption(True, "With save_images, return the grid of a multi-image job first."),
    "send_seed": CompatOption(True, "A1111 UI option, kept for clients that read it."),
    "send_size": CompatOption(True, "A1111 UI option, kept for clients that read it."),
    "sd_checkpoints_limit": CompatOption(1, "A1111's name; Easel's is sd_checkpoint_cache.", 1, 16),
    "upscaler_for_img2img": CompatOption("None", "A1111 option, kept for clients that read it."),
}

# Request-level overrides: option name -> GenerationRequest field it sets.
REQUEST_FIELD_OPTIONS = {
    "CLIP_stop_at_last_layers": "clip_skip",
    "eta_noise_seed_delta": "eta_noise_seed_delta",
    "randn_source": "rng_source",
    "s_noise": "s_noise",
}


def compat_value(stored: dict[str, Any], name: str) -> Any:
    """The stored value of a compat option (checked; the default when missing or broken)."""
    option = COMPAT_OPTIONS[name]
    if name not in stored:
        return option.default
    try:
        return option.check(name, stored[name])
    except ApiInputError:
        return option.default


def compat_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """Every compat option with its current value (for GET /options)."""
    return {name: compat_value(stored, name) for name in COMPAT_OPTIONS}
