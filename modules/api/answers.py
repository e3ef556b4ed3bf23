"""The answer to txt2img / img2img: `{images, parameters, info}` as A1111 1.10.1 gives it.

`images` are bare base64 in the chosen format with each image's infotext embedded; with
`save_images` and several images the grid comes first (A1111's `return_grid`) and
`index_of_first_image` says so. `info` is a JSON string with every key of A1111's
`Processed.js()`: strict clients read them all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from modules.api.images import encode_image
from modules.api.request_mapping import ApiJobPlan
from modules.checkpoints.manager import LoadedModel
from modules.generation.engine import GenerationResult
from modules.infotext.create import A1111_VERSION
from modules.infotext.parse import parse_infotext
from modules.jobs import Job
from modules.services import Services


@dataclass(frozen=True)
class SeenModel:
    """What the answer needs of the model a job ran on, noted while it ran (the model may be
    switched back or swapped in place afterwards)."""

    name: str
    hash: str | None
    vae_name: str | None
    vae_hash: str | None
    inpainting: bool

    @classmethod
    def of(cls, services: Services, loaded: LoadedModel | None) -> "SeenModel | None":
        if loaded is None:
            return None
        registry, vae = services.registry, loaded.vae
        return cls(loaded.checkpoint.model_name, registry.shorthash(loaded.checkpoint), vae.name if vae else None,
                   registry.shorthash(vae) if vae else None, loaded.spec.family.inpainting)


def _model_facts(services: Services, infotexts: list[str], model: SeenModel | None) -> dict[str, Any]:
    """sd_model_name/hash and sd_vae_name/hash as the images' infotext names them, else as the job's
    model (or the active one) is."""
    if infotexts:
        params = parse_infotext(infotexts[0])
        return {"sd_model_name": params.get("Model"), "sd_model_hash": params.get("Model hash"),
                "sd_vae_name": params.get("VAE"), "sd_vae_hash": params.get("VAE hash")}
    seen = model or SeenModel.of(services, services.manager.loaded)
    if seen is None:
        return {"sd_model_name": None, "sd_model_hash": None, "sd_vae_name": None, "sd_vae_hash": None}
    return {"sd_model_name": seen.name, "sd_model_hash": seen.hash, "sd_vae_name": seen.vae_name, "sd_vae_hash": seen.vae_hash}


def _prompts(services: Services, plan: ApiJobPlan) -> tuple[str, str]:
    request = plan.request
    if request.styles:
        return services.styles.apply_styles(request.prompt, request.negative_prompt, request.styles)
    return request.prompt, request.negative_prompt


def info_object(services: Services, plan: ApiJobPlan, job: Job, result: GenerationResult, infotexts: list[str],
                first_image: int, model: SeenModel | None = None) -> dict[str, Any]:
    """A1111's `Processed.js()` keys for this job; `model`: the one it ran on, when known."""
    request = plan.request
    total = request.batch_size * request.n_iter
    prompt, negative = _prompts(services, plan)
    seeds = list(result.seeds) or [request.seed]
    subseeds = list(result.subseeds) or [request.subseed]
    facts = _model_facts(services, infotexts, model)
    started = job.started_at or job.created_at
    return {
        "prompt": prompt,
        "all_prompts": [prompt] * total,
        "negative_prompt": negative,
        "all_negative_prompts": [negative] * total,
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": subseeds[0],
        "all_subseeds": subseeds,
        "subseed_strength": request.subseed_strength,
        "width": request.width,
        "height": request.height,
        "sampler_name": request.sampler_name,
        "cfg_scale": request.cfg_scale,
        "steps": request.steps,
        "batch_size": request.batch_size,
        "restore_faces": bool(plan.echo.get("restore_faces")),
        "face_restoration_model": None,
        **facts,
        "seed_resize_from_w": plan.echo.get("seed_resize_from_w", request.seed_resize_from_w),
        "seed_resize_from_h": plan.echo.get("seed_resize_from_h", request.seed_resize_from_h),
        "denoising_strength": request.denoising_strength,
        "extra_generation_params": dict(result.extra_parameters),
        "index_of_first_image": first_image,
        "infotexts": infotexts,
        "styles": list(request.styles),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(started)),
        "clip_skip": int(request.clip_skip),
        "is_using_inpainting_conditioning": bool(model and model.inpainting),
        "version": A1111_VERSION,
        "task_id": job.id,
        "notes": list(result.notes),  # Easel's: what went differently, e.g. an image that could not be saved
    }


def generation_answer(services: Services, plan: ApiJobPlan, job: Job, result: GenerationResult | None,
                      model: SeenModel | None = None) -> dict[str, Any]:
    """The JSON answer (see the module docstring). `result` None: the job ended with nothing;
    `model`: the one the job ran on, when it was seen."""
    result = result if result is not None else GenerationResult()
    images = list(result.images)
    infotexts = list(result.infotexts)
    first_image = 0
    if plan.save_images and plan.output.return_grid and result.grid is not None and infotexts:
        images, infotexts, first_image = [result.grid, *images], [infotexts[0], *infotexts], 1
    if not services.settings.control_net_no_detectmap:
        images += result.detected_maps  # after the pictures, without infotexts, as the extension appends them
    encoded: list[str] = []
    if plan.send_images:
        output = plan.output
        for index, image in enumerate(images):
            text = infotexts[index] if output.embed_infotext and index < len(infotexts) else None
            encoded.append(encode_image(image, text, output.fmt, output.quality))
    info = info_object(services, plan, job, result, infotexts, first_image, model)
    return {"images": encoded, "parameters": plan.echo, "info": json.dumps(info, default=lambda _: None, ensure_ascii=False)}
