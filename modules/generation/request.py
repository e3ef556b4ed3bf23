"""The typed request every task starts from, and its validation.

The UI and the API both build a `GenerationRequest` (never positional lists) and call `validate()`
before anything touches a model, so bad input fails at once with a sentence that says what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from PIL import Image

from modules.errors import UserError

RngSource = Literal["GPU", "CPU", "NV"]  # where initial noise is drawn (modules/sampling/noise.py)
RNG_SOURCES: tuple[RngSource, ...] = ("GPU", "CPU", "NV")
LIMITS: dict[str, tuple[float, float]] = {
    "width": (64, 4096),
    "height": (64, 4096),
    "steps": (1, 500),
    "cfg_scale": (0.0, 100.0),
    "batch_size": (1, 64),
    "n_iter": (1, 1000),
    "clip_skip": (1, 12),
    "subseed_strength": (0.0, 1.0),
    "s_noise": (0.0, 10.0),
    "seed_resize_from_w": (0, 4096),  # 0: off (the API's -1 arrives as 0)
    "seed_resize_from_h": (0, 4096),
}


class RequestError(UserError):
    """A request field is out of range or unknown; the message names the field and the fix."""


@dataclass
class GenerationRequest:
    """txt2img parameters in A1111's names (img2img and hires add their own on top)."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = field(default_factory=list)
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    batch_size: int = 1
    n_iter: int = 1
    clip_skip: int = 1
    tiling: bool = False
    eta: float | None = None
    s_noise: float = 1.0
    eta_noise_seed_delta: int = 0
    rng_source: RngSource = "GPU"  # validate() refuses anything else
    checkpoint: str | None = None  # override for this request, restored after
    vae: str | None = None
    preview_every: int = 1  # steps between live previews; 0 = none
    script_values: dict[str, dict[str, Any]] = field(default_factory=dict)  # always-on scripts' values by script name
    control_units: list[Any] = field(default_factory=list)  # enabled ControlNet units (modules/controlnet/units.py), images as PIL
    detailer: Any = None  # ADetailer's tabs (modules/detailer/args.py DetailerRequest); None: no detailer
    dynamic: Any = None  # a Dynamic Prompts template's settings (modules/prompts/dynamic DynamicRequest); None: the prompt as written
    regional: Any = None  # Regional Prompter settings (modules/regions/args.py RegionalRequest); None: off
    refiner_checkpoint: str = ""  # the checkpoint that takes the pass's last steps ("": none; modules/generation/refiner.py)
    refiner_switch_at: float = 0.8  # the share of the pass after which it takes over (0: from the first step)
    refiner_by_steps: bool | None = None  # switch by sampling steps (True), by model timestep (False), or as the setting says (None)
    save_samples: bool = True  # False: never written to the outputs folder (A1111's do_not_save_samples; the API's save_images)
    # Hires fix (txt2img): a second, img2img-like pass at a larger size (A1111's names and defaults).
    enable_hr: bool = False
    hr_scale: float = 2.0  # used when hr_resize_x and hr_resize_y are both 0
    hr_resize_x: int = 0  # target size; one of them 0 keeps the aspect ratio
    hr_resize_y: int = 0
    hr_upscaler: str = "Latent"  # a latent mode, a built-in resizer or an installed model (checked at submit)
    hr_second_pass_steps: int = 0  # 0: the same as steps
    hr_sampler_name: str | None = None  # None: the first pass's sampler
    hr_scheduler: str | None = None
    hr_prompt: str = ""  # "": the first pass's prompt
    hr_negative_prompt: str = ""
    denoising_strength: float | None = None  # hires pass strength (A1111's UI default 0.7)

    def validate(self) -> "GenerationRequest":
        """Checks every field; raises RequestError naming the first problem and how to fix it."""
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise RequestError(f"{name} must be a whole number of pixels, not {value!r}.")
            if value % 8:
                lower = max(8, value - value % 8)
                raise RequestError(f"{name} {value} is not a multiple of 8: use {lower} or {lower + 8}.")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(f"{name} must be a number, not {value!r}.")
            if not low <= value <= high:
                raise RequestError(f"{name} must be between {low:g} and {high:g}, not {value:g}.")
        if self.rng_source not in RNG_SOURCES:
            raise RequestError(f"rng_source must be one of {', '.join(RNG_SOURCES)}, not {self.rng_source!r}.")
        if self.preview_every < 0:
            raise RequestError("preview_every must be 0 (no previews) or a number of steps.")
        for name in ("seed", "subseed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < -1 or value >= 2**32:
                raise RequestError(f"{name} must be -1 (random) or a whole number from 0 to 4294967295, not {value!r}.")
        if self.enable_hr:
            self._validate_hires()
        if self.refiner_checkpoint and not 0.0 <= self.refiner_switch_at <= 1.0:
            raise RequestError(f"refiner_switch_at must be between 0 (from the first step) and 1, not {self.refiner_switch_at:g}.")
        return self

    def _validate_hires(self) -> None:
        if not isinstance(self.hr_upscaler, str) or not self.hr_upscaler.strip():
            raise RequestError(f"hr_upscaler must name an upscaler (see /upscalers and /latent-upscale-modes), not {self.hr_upscaler!r}.")
        if not 1.0 <= self.hr_scale <= 8.0:
            raise RequestError(f"hr_scale must be between 1 and 8, not {self.hr_scale:g}.")
        for name in ("hr_resize_x", "hr_resize_y"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 8192:
                raise RequestError(f"{name} must be 0 (use hr_scale) or a size from 64 to 8192, not {value!r}.")
        if not 0 <= self.hr_second_pass_steps <= 500:
            raise RequestError(f"hr_second_pass_steps must be 0 (same as steps) to 500, not {self.hr_second_pass_steps}.")
        strength = self.denoising_strength if self.denoising_strength is not None else 0.7
        if not 0.0 <= strength <= 1.0:
            raise RequestError(f"denoising_strength must be between 0 and 1, not {strength:g}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerationRequest":
        """Builds a request from A1111-style keys, ignoring unknown ones and nulls (as its clients send)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and v is not None})


# Hires fix upscalers: the latent ones interpolate the latent (torch mode, antialias), the others
# resize the decoded image (PIL, or a model from modules/upscalers) and encode it again.
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
IMAGE_UPSCALERS = ("Lanczos", "Nearest")
HIRES_UPSCALERS: tuple[str, ...] = (*LATENT_UPSCALE_MODES, *IMAGE_UPSCALERS)



class ResizeMode(IntEnum):
    """A1111's img2img resize modes, by the numbers its API sends (`resize_mode`)."""

    JUST_RESIZE = 0  # stretch to the size
    CROP_AND_RESIZE = 1  # cover the size, crop the overflow, centred
    RESIZE_AND_FILL = 2  # fit inside, fill the gaps by stretching the outermost rows or columns
    LATENT_UPSCALE = 3  # encode at its own size, then resize the latent


class MaskedContent(IntEnum):
    """What A1111 puts in the masked area before denoising, by its API's numbers (`inpainting_fill`)."""

    FILL = 0  # blurred surroundings
    ORIGINAL = 1
    LATENT_NOISE = 2
    LATENT_NOTHING = 3


RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")  # labels, by ResizeMode
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")  # labels, by MaskedContent
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
INPAINT_AREAS = ("Whole picture", "Only masked")


@dataclass
class Img2ImgRequest(GenerationRequest):
    """img2img and inpainting: txt2img's fields plus the picture to start from (A1111's API names).

    `init_images` are PIL images in any mode (flattened to RGB by the engine); `mask` (white =
    repaint, or the alpha of an RGBA image) turns img2img into inpainting. `width`/`height` are the
    size to render at; the UI turns "resize by" into them before building the request."""

    init_images: list["Image.Image"] = field(default_factory=list)
    mask: "Image.Image | None" = None
    resize_mode: int = ResizeMode.JUST_RESIZE  # a ResizeMode (the API sends its number)
    denoising_strength: float | None = 0.75
    mask_blur: int = 4
    mask_blur_x: int | None = None  # None: mask_blur
    mask_blur_y: int | None = None
    mask_round: bool = True
    inpainting_fill: int = MaskedContent.ORIGINAL  # a MaskedContent (the API sends its number; the UI's default is "original")
    inpaint_full_res: bool = False  # "Only masked"
    inpaint_full_res_padding: int = 32
    inpainting_mask_invert: int = 0  # 1: "Inpaint not masked"
    initial_noise_multiplier: float = 1.0

    def validate(self) -> "Img2ImgRequest":
        super().validate()
        if not self.init_images:
            raise RequestError("img2img needs an image to start from: upload one.")
        if self.resize_mode not in range(len(RESIZE_MODES)):
            raise RequestError(f"resize_mode must be 0-3 ({', '.join(RESIZE_MODES)}), not {self.resize_mode!r}.")
        strength = self.denoising_strength if self.denoising_strength is not None else 0.75
        if not 0.0 <= strength <= 1.0:
            raise RequestError(f"denoising_strength must be between 0 and 1, not {strength:g}.")
        if self.inpainting_fill not in range(len(MASKED_CONTENT)):
            raise RequestError(f"inpainting_fill must be 0-3 ({', '.join(MASKED_CONTENT)}), not {self.inpainting_fill!r}.")
        for name in ("mask_blur", "mask_blur_x", "mask_blur_y"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 256:
                raise RequestError(f"{name} must be between 0 and 256 pixels, not {value}.")
        if not 0 <= self.inpaint_full_res_padding <= 1024:
            raise RequestError(f"inpaint_full_res_padding must be between 0 and 1024 pixels, not {self.inpaint_full_res_padding}.")
        if self.inpainting_mask_invert not in (0, 1):
            raise RequestError(f"inpainting_mask_invert must be 0 (inpaint masked) or 1 (inpaint not masked), not {self.inpainting_mask_invert!r}.")
        if not 0.0 <= self.initial_noise_multiplier <= 1.5:
            raise RequestError(f"initial_noise_multiplier must be between 0 and 1.5, not {self.initial_noise_multiplier:g}.")
        return self

    @property
    def strength(self) -> float:
        return self.denoising_strength if self.denoising_strength is not None else 0.75

    @property
    def blur_xy(self) -> tuple[int, int]:
        x = self.mask_blur if self.mask_blur_x is None else self.mask_blur_x
        y = self.mask_blur if self.mask_blur_y is None else self.mask_blur_y
        return int(x), int(y)
