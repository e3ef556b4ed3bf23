"""The listing routes (samplers, schedulers, upscalers, styles, scripts...), /memory, and the
A1111 routes for features Easel does not have, which answer empty lists (never 404: clients call
them at start and give up on an error).
"""

from __future__ import annotations

from typing import Any

import psutil
from fastapi import APIRouter, HTTPException, Request
from fastapi.routing import APIRoute

from modules.api.list_schemas import (
    EmbeddingsResponse,
    ExtensionItem,
    LatentUpscalerModeItem,
    MemoryResponse,
    PromptStyleItem,
    SamplerItem,
    SchedulerItem,
    ScriptInfo,
    ScriptsList,
    UpscalerItem,
)
from modules.api.scripts import available_scripts, extension_script_info
from modules.generation.request import LATENT_UPSCALE_MODES
from modules.sampling.sampler_table import SAMPLERS, SamplerSpec
from modules.sampling.schedules import SCHEDULES
from modules.services import Services
from modules.upscalers.catalog import UpscalerCatalog

A1111_NO_RHO = -1.0  # A1111's default_rho of schedules without one


def sampler_options(row: SamplerSpec) -> dict[str, str]:
    """A1111's sampler `options` (its pydantic model makes every value a string)."""
    options: dict[str, str] = {}
    if row.default_schedule:
        options["scheduler"] = row.default_schedule
    flags = {"second_order": row.second_order, "brownian_noise": row.brownian, "discard_next_to_last_sigma": row.discard_next_to_last_sigma,
             "uses_ensd": row.uses_ensd}
    options.update({key: "True" for key, on in flags.items() if on})
    return options


def samplers() -> list[dict[str, Any]]:
    return [{"name": row.label, "aliases": list(row.aliases), "options": sampler_options(row)} for row in SAMPLERS]


def schedulers() -> list[dict[str, Any]]:
    return [
        {"name": s.id, "label": s.label, "aliases": list(s.aliases) or None,
         "default_rho": s.default_rho if s.default_rho is not None else A1111_NO_RHO, "need_inner_model": s.needs_model}
        for s in SCHEDULES
    ]


def upscalers(catalog: UpscalerCatalog) -> list[dict[str, Any]]:
    """A1111's /upscalers: the built-ins, then each installed model file (its listed scale)."""
    return [
        {"name": entry.name, "model_name": entry.path.stem if entry.path else None,
         "model_path": str(entry.path) if entry.path else None, "model_url": None, "scale": float(entry.scale)}
        for entry in catalog.entries()
    ]


def realesrgan_models(catalog: UpscalerCatalog) -> list[dict[str, Any]]:
    """A1111's /realesrgan-models: the Real-ESRGAN models that are installed (models/RealESRGAN)."""
    return [{"name": entry.name, "path": str(entry.path), "scale": entry.scale} for entry in catalog.entries() if entry.folder == "RealESRGAN"]


def memory() -> dict[str, Any]:
    """RAM of the machine, and CUDA memory when torch has a GPU (A1111's shape)."""
    ram = psutil.virtual_memory()
    process = psutil.Process()
    result: dict[str, Any] = {"ram": {"free": ram.available, "used": process.memory_info().rss, "total": ram.total}}
    import torch  # loaded already by the model manager; only read here

    if not torch.cuda.is_available():
        result["cuda"] = {"error": "unavailable"}
        return result
    free, total = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()
    result["cuda"] = {
        "system": {"free": free, "used": total - free, "total": total},
        "active": {"current": stats.get("active_bytes.all.current", 0), "peak": stats.get("active_bytes.all.peak", 0)},
        "allocated": {"current": stats.get("allocated_bytes.all.current", 0), "peak": stats.get("allocated_bytes.all.peak", 0)},
        "reserved": {"current": stats.get("reserved_bytes.all.current", 0), "peak": stats.get("reserved_bytes.all.peak", 0)},
        "inactive": {"current": stats.get("inactive_split_bytes.all.current", 0), "peak": stats.get("inactive_split_bytes.all.peak", 0)},
        "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
    }
    return result


def add_misc_routes(router: APIRouter, services: Services) -> None:
    @router.get("/samplers", response_model=list[SamplerItem])
    def get_samplers() -> list[dict[str, Any]]:
        """Sampler labels (what sampler_name takes), with their old API aliases."""
        return samplers()

    @router.get("/schedulers", response_model=list[SchedulerItem])
    def get_schedulers() -> list[dict[str, Any]]:
        """Schedule types: `name` (id) or `label`, any case, is what `scheduler` takes."""
        return schedulers()

    @router.get("/upscalers", response_model=list[UpscalerItem])
    def get_upscalers() -> list[dict[str, Any]]:
        """Upscalers for extras, hires fix and SD upscale: None, Lanczos, Nearest, then the model
        files in models/ESRGAN, RealESRGAN, SwinIR, DAT, HAT and ScuNET."""
        return upscalers(services.upscalers.catalog)

    @router.get("/realesrgan-models", response_model=list[dict[str, Any]])
    def get_realesrgan_models() -> list[dict[str, Any]]:
        """The installed Real-ESRGAN models (models/RealESRGAN)."""
        return realesrgan_models(services.upscalers.catalog)

    @router.get("/latent-upscale-modes", response_model=list[LatentUpscalerModeItem])
    def get_latent_upscale_modes() -> list[dict[str, str]]:
        return [{"name": name} for name in LATENT_UPSCALE_MODES]

    @router.get("/prompt-styles", response_model=list[PromptStyleItem])
    def get_prompt_styles() -> list[dict[str, str]]:
        """The styles of styles.csv, in file order."""
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt} for s in services.styles.styles()]

    @router.get("/embeddings", response_model=EmbeddingsResponse)
    def get_embeddings() -> dict[str, Any]:
        """As A1111: the embeddings that fit the loaded model's text encoder, and the others."""
        return embeddings_listing(services)

    @router.post("/refresh-embeddings")
    def refresh_embeddings() -> None:
        services.embeddings.refresh()

    @router.get("/scripts", response_model=ScriptsList)
    def get_scripts() -> dict[str, list[str]]:
        """Selectable scripts by tab (the names `script_name` takes)."""
        return {tab: [s.name for s in available_scripts(tab == "img2img")] + [s.name for s in services.extensions.scripts(tab, always_on=False)]
                for tab in ("txt2img", "img2img")}

    @router.get("/script-info", response_model=list[ScriptInfo])
    def get_script_info() -> list[dict[str, Any]]:
        """Each script's arguments in `script_args` order (the extensions' always-on ones too)."""
        ours = [s.info() for s in (*available_scripts(False), *available_scripts(True))]
        return ours + [extension_script_info(s, tab, services.upscalers.names()) for tab in ("txt2img", "img2img") for s in services.extensions.scripts(tab)]

    @router.get("/extensions", response_model=list[ExtensionItem])
    def get_extensions() -> list[dict[str, Any]]:
        """The extensions found, in load order, and whether they are enabled (A1111's shape)."""
        return [{"name": e.name, "version": e.manifest.version, "enabled": e.enabled} for e in services.extensions.extensions]

    @router.get("/memory", response_model=MemoryResponse)
    def get_memory() -> dict[str, Any]:
        return memory()

    @router.get("/loras", response_model=list[dict[str, Any]])
    def get_loras() -> list[dict[str, Any]]:
        """The LoRAs of models/Lora (A1111's shape: name, alias, path, metadata)."""
        return [entry.api_dict() for entry in services.loras.entries()]

    @router.post("/refresh-loras")
    def refresh_loras() -> None:
        services.loras.refresh()

    @router.get("/hypernetworks", response_model=list[dict[str, Any]])
    def get_hypernetworks() -> list[dict[str, Any]]:
        """The hypernetworks of models/hypernetworks (A1111's shape: name, path); a prompt uses one with <hypernet:name:1>."""
        return [{"name": entry.name, "path": str(entry.path)} for entry in services.hypernetworks.entries()]

    router.add_api_route("/face-restorers", _empty_list, methods=["GET"], response_model=list[dict[str, Any]],
                         summary="Face restorers (none in Easel yet: an empty list)")


def embeddings_listing(services: Services) -> dict[str, Any]:
    loaded = services.manager.loaded
    width = loaded.text_encoder("text_encoder").config.hidden_size if loaded is not None and "text_encoder" in loaded.modules else None
    answer: dict[str, Any] = {"loaded": {}, "skipped": {}}
    for name, embedding in services.embeddings.embeddings.items():
        vectors = embedding.for_width(width) if width is not None else next(iter(embedding.vectors.values()))
        shown = vectors if vectors is not None else next(iter(embedding.vectors.values()))
        answer["loaded" if vectors is not None else "skipped"][name] = {
            "step": embedding.step, "sd_checkpoint": embedding.sd_checkpoint, "sd_checkpoint_name": embedding.sd_checkpoint_name,
            "shape": int(shown.shape[-1]), "vectors": int(shown.shape[0]),
        }
    for name in services.embeddings.skipped:
        answer["skipped"].setdefault(name, {"shape": 0, "vectors": 0})
    return answer


def _empty_list() -> list[dict[str, Any]]:
    return []


def add_fallback_route(router: APIRouter) -> None:
    """Answers any other path under /sdapi/v1 with A1111's JSON error (404, or 405 for a known path
    and another method) before the UI mounted at / would answer it with its own 404. Add it last."""
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

    def no_such_route(path: str, request: Request) -> None:
        # starlette declares Route.methods optional; an APIRoute's is always a set.
        allowed = sorted({m for route in router.routes if isinstance(route, APIRoute) and route.path == request.url.path
                          for m in route.methods or ()})
        if allowed:
            raise HTTPException(405, f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}.",
                                headers={"Allow": ", ".join(allowed)})
        raise HTTPException(404, f"There is no API route {request.url.path} (see /docs for the list).")

    router.add_api_route("/{path:path}", no_such_route, methods=methods, include_in_schema=False)
