"""Pydantic models of the generation routes, in A1111 1.10.1's field names and API defaults
(`StableDiffusionTxt2ImgProcessingAPI`, `...Img2ImgProcessingAPI`), so /docs documents them.

As A1111's clients expect: unknown keys are ignored, and a null is the same as leaving the key
out (the field's default applies; clients send every key, nulls included). Ranges are checked by
the request mapping with a sentence, not here, so an A1111 value Easel cannot use gets a clear
422 naming the field.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ApiModel(BaseModel):
    """Ignores unknown keys; a null value means "not given"."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class GenerationFields(ApiModel):
    """What txt2img and img2img share."""

    prompt: Optional[str] = Field("", description="The prompt (A1111 syntax: emphasis, editing, BREAK...).")
    negative_prompt: Optional[str] = ""
    styles: Optional[list[str]] = Field(default_factory=list, description="Names of prompt styles (see /prompt-styles) to apply.")
    seed: Optional[int] = Field(-1, description="-1: random. Image i of the job uses seed + i.")
    subseed: Optional[int] = -1
    subseed_strength: Optional[float] = 0.0
    seed_resize_from_h: Optional[int] = Field(-1, description="0 or -1: off.")
    seed_resize_from_w: Optional[int] = -1
    sampler_name: Optional[str] = Field(None, description="A label or alias from /samplers; 'DPM++ 2M Karras' also sets the schedule. Wins over sampler_index.")
    sampler_index: Optional[str] = Field("Euler", description="The old name of sampler_name, used when sampler_name is not given.")
    scheduler: Optional[str] = Field(None, description="A schedule id or label from /schedulers, any case ('automatic', 'karras'...).")
    batch_size: Optional[int] = 1
    n_iter: Optional[int] = Field(1, description="Batch count.")
    steps: Optional[int] = 50
    cfg_scale: Optional[float] = 7.0
    width: Optional[int] = Field(512, description="Multiple of 8.")
    height: Optional[int] = Field(512, description="Multiple of 8.")
    restore_faces: Optional[bool] = Field(None, description="false or left out: Easel has no face restorers yet (true is a 422).")
    tiling: Optional[bool] = None
    do_not_save_samples: Optional[bool] = False
    do_not_save_grid: Optional[bool] = False
    eta: Optional[float] = Field(None, description="Ancestral/DDIM eta; null: the sampler's default.")
    denoising_strength: Optional[float] = None
    s_min_uncond: Optional[float] = None
    s_churn: Optional[float] = None
    s_tmax: Optional[float] = None
    s_tmin: Optional[float] = None
    s_noise: Optional[float] = None
    override_settings: Optional[dict[str, Any]] = Field(
        None, description="Settings for this request only (sd_model_checkpoint, sd_vae, CLIP_stop_at_last_layers, "
        "eta_noise_seed_delta, randn_source, samples_format...); put back afterwards unless "
        "override_settings_restore_afterwards is false.")
    override_settings_restore_afterwards: Optional[bool] = True
    refiner_checkpoint: Optional[str] = Field(None, description="A checkpoint (title, name or hash) that takes the last steps; empty or None: none.")
    refiner_switch_at: Optional[float] = Field(None, description="The share of the steps after which the refiner takes over (0.01-1; A1111's UI default 0.8).")
    disable_extra_networks: Optional[bool] = False
    firstpass_image: Optional[str] = None
    comments: Optional[dict[str, Any]] = None
    force_task_id: Optional[str] = Field(None, description="The job id to use (it shows in /progress as current_task).")
    script_name: Optional[str] = Field(None, description="A selectable script from /scripts (img2img: 'outpainting mk2', \"poor man's outpainting\").")
    script_args: Optional[list[Any]] = Field(default_factory=list, description="The script's arguments, as /script-info lists them.")
    send_images: Optional[bool] = Field(True, description="Return the images (false: only info).")
    save_images: Optional[bool] = Field(False, description="Also save the images to the outputs folder.")
    alwayson_scripts: Optional[dict[str, Any]] = Field(
        default_factory=dict, description="Always-on scripts by name with their args, as A1111's extensions read them: ControlNet, ADetailer, "
        "Regional Prompter and 'Dynamic Prompts v<version>' run in Easel; other names Easel has no script for are ignored (and logged).")
    dynamic_prompts: Optional[dict[str, Any]] = Field(
        None, description="Easel's own form of Dynamic Prompts: its settings by name (enabled, combinatorial, combinatorial_batches, "
        "max_generations, use_fixed_seed, unlink_seed_from_prompt); the prompt is the template. Wins over the alwayson_scripts entry.")
    infotext: Optional[str] = Field(None, description="A1111 infotext whose values fill the fields this request leaves out.")


class Txt2ImgRequest(GenerationFields):
    """POST /sdapi/v1/txt2img."""

    enable_hr: Optional[bool] = Field(False, description="Hires fix: a second pass at a larger size.")
    firstphase_width: Optional[int] = Field(0, description="Legacy, ignored.")
    firstphase_height: Optional[int] = Field(0, description="Legacy, ignored.")
    hr_scale: Optional[float] = 2.0
    hr_upscaler: Optional[str] = Field(None, description="A name from /latent-upscale-modes or /upscalers; null: Latent.")
    hr_second_pass_steps: Optional[int] = 0
    hr_resize_x: Optional[int] = 0
    hr_resize_y: Optional[int] = 0
    hr_checkpoint_name: Optional[str] = Field(None, description="Only 'Use same checkpoint' (or null) is supported.")
    hr_sampler_name: Optional[str] = None
    hr_scheduler: Optional[str] = None
    hr_prompt: Optional[str] = ""
    hr_negative_prompt: Optional[str] = ""


class Img2ImgRequest(GenerationFields):
    """POST /sdapi/v1/img2img (with `mask`: inpainting)."""

    init_images: Optional[list[str]] = Field(default_factory=list, description="Base64 images (bare or data: URIs).")
    resize_mode: Optional[int] = Field(0, description="0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale.")
    denoising_strength: Optional[float] = 0.75
    image_cfg_scale: Optional[float] = None
    mask: Optional[str] = Field(None, description="Base64 mask: white (or alpha) = repaint.")
    mask_blur_x: Optional[int] = 4
    mask_blur_y: Optional[int] = 4
    mask_blur: Optional[int] = Field(None, description="Sets mask_blur_x and mask_blur_y.")
    mask_round: Optional[bool] = True
    inpainting_fill: Optional[int] = Field(0, description="0 fill, 1 original, 2 latent noise, 3 latent nothing.")
    inpaint_full_res: Optional[bool] = Field(True, description="True: only masked (the API's default), False: whole picture.")
    inpaint_full_res_padding: Optional[int] = 0
    inpainting_mask_invert: Optional[int] = Field(0, description="1: inpaint not masked.")
    initial_noise_multiplier: Optional[float] = None
    latent_mask: Optional[str] = None
    include_init_images: Optional[bool] = Field(False, description="Echo init_images and mask in `parameters`.")


class GenerationResponse(BaseModel):
    images: Optional[list[str]] = Field(None, description="Bare base64 images with their infotext embedded.")
    parameters: dict[str, Any]
    info: str = Field(description="A JSON string: prompt, all_seeds, infotexts... (A1111's Processed.js()).")


class ProgressResponse(BaseModel):
    progress: float = Field(description="0..1 of the running job; 0 when idle.")
    eta_relative: float
    state: dict[str, Any]
    current_image: Optional[str] = Field(None, description="The latest live preview, base64 PNG.")
    textinfo: Optional[str] = None
    current_task: Optional[str] = None


class PngInfoRequest(ApiModel):
    image: str = Field(description="Base64 image (bare or data: URI).")


class PngInfoResponse(BaseModel):
    info: str = Field(description="The infotext ('' when none).")
    items: dict[str, Any] = Field(default_factory=dict, description="The image's other text metadata.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="The infotext parsed as A1111 does.")
