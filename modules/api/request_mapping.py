"""A1111 API requests -> the typed requests the job queue runs (the same ones the UI builds).

1. `infotext` fills the fields the request leaves out (A1111's `apply_infotext`), and switches to the
   checkpoint and VAE it names; a setting of it that Easel cannot apply is a 422 naming it.
2. The sampler: `sampler_name`, else `sampler_index`, else Euler; "DPM++ 2M Karras" also sets the
   schedule. Unknown samplers and schedules are refused here, before anything is queued.
3. `override_settings`: the checkpoint and VAE (checked to exist, switched by the job and put
   back after it), clip skip, ENSD, noise source and sigma noise become request fields; the
   output format and quality shape the answer. Stored A1111 options give the defaults.
4. img2img: images decoded (422 for bad base64 or a damaged image), A1111's API defaults (only
   masked, fill, no padding), mask blur from `mask_blur` or `mask_blur_x`/`_y`.
5. `script_name` picks a selectable script (outpainting); `alwayson_scripts` for scripts Easel does
   not have are ignored, as clients send them for extensions that may be absent.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from modules.api.a1111_options import COMPAT_OPTIONS, REQUEST_FIELD_OPTIONS, compat_value
from modules.api.errors import ApiInputError
from modules.api.extension_requests import ADETAILER, CONTROLNET, REGIONAL, control_units, detailer_request, dynamic_request, regional_request
from modules.api.images import decode_image
from modules.api.schemas import GenerationFields
from modules.api.schemas import Img2ImgRequest as ApiImg2Img
from modules.api.schemas import Txt2ImgRequest as ApiTxt2Img
from modules.api.scripts import SelectableScript, find_script
from modules.checkpoints.manager import VAE_AUTOMATIC, VAE_NONE
from modules.config import Settings
from modules.controlnet.infotext import is_controlnet_key
from modules.detailer.args import DetailerRequest
from modules.detailer.infotext import is_detailer_key
from modules.generation.request import GenerationRequest, Img2ImgRequest
from modules.infotext.restore import REQUEST_FIELDS, not_applied_sentence
from modules.prompts.dynamic import is_dynamic_key
from modules.regions.args import RegionalRequest
from modules.sampling.sampler_table import parse_sampler_name
from modules.sampling.schedules import find_schedule
from modules.services import Services

log = logging.getLogger(__name__)

SAME_CHECKPOINT = ("", "Use same checkpoint", "None")
ETA_RANGE = (0.0, 10.0)
SEED_RESIZE_MAX = 4096  # as width/height: the noise is made at this size
# infotext-derived request fields that are settings in A1111's API (override_settings)
_INFOTEXT_OVERRIDES = {field: option for option, field in REQUEST_FIELD_OPTIONS.items()}


@dataclass
class OutputOptions:
    """How the answer's images are encoded."""

    fmt: str = "png"
    quality: int = 80
    embed_infotext: bool = True
    return_grid: bool = True


@dataclass
class ApiJobPlan:
    """A request ready to queue, and what the answer needs to know about it."""

    kind: str  # "txt2img" | "img2img"
    request: GenerationRequest
    echo: dict[str, Any]  # the `parameters` of the answer
    output: OutputOptions
    job_id: str | None = None
    send_images: bool = True
    save_images: bool = False
    persist: dict[str, Any] = field(default_factory=dict)  # settings to keep after the job
    script: SelectableScript | None = None
    script_request: Any = None  # what the script's job runs (an OutpaintRequest)
    extension_script: tuple[Any, dict[str, Any]] | None = None  # an extension's selectable script and its values


Fields = TypeVar("Fields", bound=GenerationFields)  # the route's body class, kept through model_copy


def apply_infotext(services: Services, body: Fields) -> tuple[Fields, dict[str, Any], DetailerRequest | None, RegionalRequest | None]:
    """The request with the fields it left out taken from its `infotext`, the override settings the
    infotext implies (clip skip, the checkpoint and VAE it names...), and its ADetailer tabs (used
    when the request sends no `alwayson_scripts.ADetailer` of its own). Explicitly given
    fields and `override_settings` always win. A setting of the infotext that Easel cannot apply
    (an unknown sampler or upscaler, a checkpoint that is not here, an extension's setting...) and
    that the request does not give itself is a 422 naming each, never a silent substitution."""
    if not body.infotext:
        return body, {}, None, None
    given = body.model_fields_set
    given_options = set(body.override_settings or {})
    img2img = isinstance(body, ApiImg2Img)
    restored = services.models.picture_restorer().restore(body.infotext, {*type(body).model_fields, *_INFOTEXT_OVERRIDES, "detailer", "regional"},
                                                          hires_in_picture=img2img)
    detailer = restored.fields.pop("detailer", None)
    regional = restored.fields.pop("regional", None)
    update: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    for name, value in restored.fields.items():
        if name in _INFOTEXT_OVERRIDES:
            overrides[_INFOTEXT_OVERRIDES[name]] = value
        elif name not in given:
            update[name] = value
    if restored.checkpoint is not None:
        overrides["sd_model_checkpoint"] = services.registry.title(restored.checkpoint)
    if restored.vae is not None:
        overrides["sd_vae"] = restored.vae
    overridden_by_request = {"Model": "sd_model_checkpoint" in given_options, "VAE": "sd_vae" in given_options}
    scripts = {str(name).lower() for name in (body.alwayson_scripts or {})}
    problems = [item for item in restored.not_applied
                if not overridden_by_request.get(item.key, False) and _field_of(item.key) not in given
                and not (CONTROLNET in scripts and is_controlnet_key(item.key))
                and not (ADETAILER in scripts and is_detailer_key(item.key))]
    if problems:
        raise ApiInputError(f"infotext: {not_applied_sentence(problems)} Give these fields in the request, or leave them out of the infotext.")
    return body.model_copy(update=update), overrides, detailer, regional


def _field_of(key: str) -> str | None:
    """The request field an infotext key fills (None for a key that fills none)."""
    entry = REQUEST_FIELDS.get(key)
    return entry[0] if entry else None


def _check_sampler(name: str | None) -> tuple[str, str | None]:
    row, carried = parse_sampler_name(name)  # UserError naming the choices
    return row.label, carried


def _schedule_label(name: str | None) -> str:
    return find_schedule(name).label  # UserError naming the choices


def _stored(services: Services, name: str) -> Any:
    return compat_value(services.config.store.extra, name)


def _settings_overrides(services: Services, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Checks `override_settings`: (request field values, everything known, checked, for keeping
    after the job when asked). Unknown keys are ignored, as in A1111."""
    fields_: dict[str, Any] = {}
    known: dict[str, Any] = {}
    settings_names = {f.name for f in fields(Settings)}
    for key, value in overrides.items():
        if key == "sd_model_checkpoint":
            if not isinstance(value, str) or not value.strip():
                raise ApiInputError(f"override_settings.sd_model_checkpoint must be a checkpoint title or name, not {value!r}.")
            entry = services.registry.find_checkpoint(value)  # ModelNotFoundError (404) when unknown
            fields_["checkpoint"] = entry.name
            known[key] = value
        elif key == "sd_vae":
            if not isinstance(value, str):
                raise ApiInputError(f"override_settings.sd_vae must be Automatic, None or a VAE name, not {value!r}.")
            fields_["vae"] = value if value in (VAE_AUTOMATIC, VAE_NONE) else services.registry.find_vae(value).name
            known[key] = value
        elif key in COMPAT_OPTIONS:
            known[key] = COMPAT_OPTIONS[key].check(f"override_settings.{key}", value)
            if key in REQUEST_FIELD_OPTIONS:
                fields_[REQUEST_FIELD_OPTIONS[key]] = known[key]
        elif key in settings_names:
            if isinstance(value, float) and not math.isfinite(value):
                raise ApiInputError(f"override_settings.{key} must be a finite number, not {value}.")
            try:
                known[key] = services.settings.validate(key, value)
            except ValueError as error:
                raise ApiInputError(f"override_settings: {error}") from error
        else:
            log.info("override_settings: ignoring %s, which Easel does not have", key)
    return fields_, known


def _output(services: Services, known: dict[str, Any]) -> OutputOptions:
    def pick(name: str) -> Any:
        return known[name] if name in known else _stored(services, name)

    fmt = known.get("samples_format", services.settings.samples_format)
    return OutputOptions(fmt, int(pick("jpeg_quality")), bool(pick("enable_pnginfo")), bool(pick("return_grid")))


def _preview_every(services: Services, known: dict[str, Any]) -> int:
    settings = services.settings
    live = known.get("live_previews_enable", _stored(services, "live_previews_enable"))
    every = known.get("show_progress_every_n_steps", settings.show_progress_every_n_steps)
    method = known.get("show_progress_type", settings.show_progress_type)
    return int(every) if live and method != "None" else 0


def _common(services: Services, body: GenerationFields, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Request fields both tasks share, and the checked override settings."""
    sampler, carried = _check_sampler(body.sampler_name or body.sampler_index or "Euler")
    scheduler = _schedule_label(carried if carried is not None else body.scheduler)
    if body.restore_faces:
        raise ApiInputError("restore_faces: Easel has no face restoration model yet (GFPGAN and CodeFormer are not supported); send false.")
    if body.eta is not None and not ETA_RANGE[0] <= body.eta <= ETA_RANGE[1]:
        raise ApiInputError(f"eta must be between {ETA_RANGE[0]:g} and {ETA_RANGE[1]:g}, not {body.eta:g}.")
    for name in ("seed_resize_from_w", "seed_resize_from_h"):
        value = getattr(body, name)
        if value > SEED_RESIZE_MAX:
            raise ApiInputError(f"{name} must be 0 or -1 (off) or a size up to {SEED_RESIZE_MAX}, not {value}.")
    requested, known = _settings_overrides(services, overrides)
    values: dict[str, Any] = {
        "prompt": body.prompt or "",
        "negative_prompt": body.negative_prompt or "",
        "styles": list(body.styles or []),
        "sampler_name": sampler,
        "scheduler": scheduler,
        "steps": body.steps,
        "cfg_scale": body.cfg_scale,
        "width": body.width,
        "height": body.height,
        "seed": body.seed,
        "subseed": body.subseed,
        "subseed_strength": body.subseed_strength,
        "seed_resize_from_w": max(body.seed_resize_from_w or 0, 0),  # never None: nulls are dropped (schemas.ApiModel)
        "seed_resize_from_h": max(body.seed_resize_from_h or 0, 0),
        "batch_size": body.batch_size,
        "n_iter": body.n_iter,
        "tiling": bool(body.tiling),
        "eta": body.eta,
        "clip_skip": _stored(services, "CLIP_stop_at_last_layers"),
        "eta_noise_seed_delta": _stored(services, "eta_noise_seed_delta"),
        "rng_source": _stored(services, "randn_source"),
        "s_noise": body.s_noise if body.s_noise is not None else _stored(services, "s_noise"),
        "preview_every": _preview_every(services, known),
        "refiner_checkpoint": "" if body.refiner_checkpoint in (None, "None") else body.refiner_checkpoint,
        # A1111 switches at the first step when only the checkpoint is sent
        "refiner_switch_at": body.refiner_switch_at if body.refiner_switch_at is not None else 0.0,
        # A1111's API saves only when asked; Easel also saves when api_save_images is on (its default)
        "save_samples": bool(body.save_images) or services.settings.api_save_images,
    }
    values.update(requested)
    return values, known


def _plan(kind: str, request: GenerationRequest, body: GenerationFields, services: Services, known: dict[str, Any], echo: dict[str, Any]) -> ApiJobPlan:
    persist = {} if body.override_settings_restore_afterwards is not False else dict(known)
    ignored = [str(name) for name in (body.alwayson_scripts or {})
               if services.extensions.find_script(str(name), kind) is None and str(name).lower() not in (CONTROLNET, ADETAILER)
               and not is_dynamic_key(name) and str(name).strip().lower() != REGIONAL]
    if ignored:
        log.info("%s: ignoring alwayson_scripts %s (not scripts Easel has)", kind, ", ".join(ignored))
    return ApiJobPlan(
        kind, request, echo, _output(services, known), job_id=(body.force_task_id or None),
        send_images=body.send_images is not False, save_images=bool(body.save_images), persist=persist,
    )


def _script_values(services: Services, body: GenerationFields, tab: str) -> dict[str, dict[str, Any]]:
    """`alwayson_scripts` ({name: {"args": [...]}}, A1111's shape) for the extensions' always-on
    scripts of `tab`, typed; names Easel has no script for are left out (A1111 clients send
    ControlNet's and others' whether or not they are there)."""
    found: dict[str, dict[str, Any]] = {}
    for name, entry in (body.alwayson_scripts or {}).items():
        script = services.extensions.find_script(str(name), tab)
        if script is None or not script.always_on:
            continue
        args = entry.get("args", []) if isinstance(entry, dict) else entry
        try:
            found[script.name] = script.values_from(args)
        except ValueError as error:
            raise ApiInputError(f"alwayson_scripts[{name!r}]: {error}.") from error
    return found


def _extension_script_names(services: Services, tab: str) -> tuple[str, ...]:
    return tuple(s.name for s in services.extensions.scripts(tab, always_on=False))


def _extension_script(services: Services, body: GenerationFields, tab: str) -> tuple[Any, dict[str, Any]] | None:
    """The extension script `script_name` names, with its `script_args` typed; None when no
    extension has a selectable script of that name."""
    script = services.extensions.find_script(body.script_name or "", tab) if body.script_name else None
    if script is None or script.always_on:
        return None
    try:
        return script, script.values_from(body.script_args or [])
    except ValueError as error:
        raise ApiInputError(f"script_args: {error}.") from error


def txt2img_plan(services: Services, body: ApiTxt2Img) -> ApiJobPlan:
    """POST /txt2img -> a GenerationRequest (see the module docstring)."""
    body, infotext_overrides, infotext_detailer, infotext_regional = apply_infotext(services, body)
    extension_script = _extension_script(services, body, "txt2img")
    if body.script_name and extension_script is None:
        find_script(body.script_name, is_img2img=False, others=_extension_script_names(services, "txt2img"))  # 422: unknown
    values, known = _common(services, body, {**infotext_overrides, **(body.override_settings or {})})
    values["script_values"] = _script_values(services, body, "txt2img")
    values["control_units"] = control_units(services, body)
    values["detailer"] = detailer_request(body, infotext_detailer)
    values["dynamic"] = dynamic_request(body)
    values["regional"] = regional_request(services, body, infotext_regional)
    if body.hr_checkpoint_name not in (None, *SAME_CHECKPOINT):
        raise ApiInputError("hr_checkpoint_name: a different checkpoint for the hires pass is not supported yet; use 'Use same checkpoint'.")
    hr_sampler = None if body.hr_sampler_name in (None, "", "Use same sampler") else _check_sampler(body.hr_sampler_name)[0]
    hr_scheduler = None if body.hr_scheduler in (None, "", "Use same scheduler") else _schedule_label(body.hr_scheduler)
    values.update(
        enable_hr=bool(body.enable_hr), hr_scale=body.hr_scale, hr_upscaler=body.hr_upscaler or "Latent",
        hr_second_pass_steps=body.hr_second_pass_steps, hr_resize_x=body.hr_resize_x, hr_resize_y=body.hr_resize_y,
        hr_sampler_name=hr_sampler, hr_scheduler=hr_scheduler, hr_prompt=body.hr_prompt or "",
        hr_negative_prompt=body.hr_negative_prompt or "", denoising_strength=body.denoising_strength,
    )
    request = GenerationRequest(**values)
    plan = _plan("txt2img", request, body, services, known, body.model_dump())
    plan.extension_script = extension_script
    return plan


def img2img_plan(services: Services, body: ApiImg2Img) -> ApiJobPlan:
    """POST /img2img -> an Img2ImgRequest (see the module docstring)."""
    body, infotext_overrides, infotext_detailer, infotext_regional = apply_infotext(services, body)
    extension_script = _extension_script(services, body, "img2img")
    script = (find_script(body.script_name, is_img2img=True, others=_extension_script_names(services, "img2img"))
              if body.script_name and extension_script is None else None)
    values, known = _common(services, body, {**infotext_overrides, **(body.override_settings or {})})
    values["script_values"] = _script_values(services, body, "img2img")
    values["control_units"] = control_units(services, body)
    values["detailer"] = detailer_request(body, infotext_detailer)
    values["dynamic"] = dynamic_request(body)
    values["regional"] = regional_request(services, body, infotext_regional)
    limit = services.settings.max_input_megapixels
    if not body.init_images:
        raise ApiInputError("init_images is empty: img2img needs at least one base64 image to start from.")
    images = [decode_image(text, f"init_images[{i}]", limit) for i, text in enumerate(body.init_images)]
    mask = decode_image(body.mask, "mask", limit) if body.mask else None
    blur_x, blur_y = (body.mask_blur, body.mask_blur) if body.mask_blur is not None else (body.mask_blur_x, body.mask_blur_y)
    values.update(
        init_images=images, mask=mask, resize_mode=body.resize_mode, denoising_strength=body.denoising_strength,
        mask_blur=blur_x, mask_blur_x=blur_x, mask_blur_y=blur_y, mask_round=bool(body.mask_round),
        inpainting_fill=body.inpainting_fill, inpaint_full_res=bool(body.inpaint_full_res),
        inpaint_full_res_padding=body.inpaint_full_res_padding, inpainting_mask_invert=body.inpainting_mask_invert,
        initial_noise_multiplier=body.initial_noise_multiplier if body.initial_noise_multiplier is not None else 1.0,
    )
    request = Img2ImgRequest(**values)
    echo = body.model_dump()
    if not body.include_init_images:
        echo["init_images"], echo["mask"] = None, None
    plan = _plan("img2img", request, body, services, known, echo)
    plan.extension_script = extension_script
    if script is not None:
        plan.script = script
        plan.script_request = script.build(request, script.named_args(list(body.script_args or [])))
    return plan
