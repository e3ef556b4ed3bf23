"""A1111's checkpoint and VAE routes under /sdapi/v1 (shapes as in REFERENCE.md §6); /options,
which also switches them, is in options_routes.py.

Routes are plain `def`s: FastAPI runs them in its thread pool, so a checkpoint load does not block
the event loop, and the model manager's lock serialises them with each other and with jobs.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from modules.api.list_schemas import SDModelItem, SDVaeItem
from modules.checkpoints.registry import ModelFile
from modules.services import Services

log = logging.getLogger(__name__)


def _checkpoint_item(services: Services, entry: ModelFile) -> dict[str, Any]:
    sha256 = services.registry.known_sha256(entry)  # never hashes here: listing must stay instant
    return {
        "title": services.registry.title(entry),
        "model_name": entry.model_name,
        "hash": sha256[:10] if sha256 else None,
        "sha256": sha256,
        "filename": str(entry.path),
        "config": None,
    }


def add_model_routes(router: APIRouter, services: Services) -> None:
    """Adds the checkpoint and VAE routes to `router`."""

    @router.get("/sd-models", response_model=list[SDModelItem])
    def sd_models() -> list[dict[str, Any]]:
        """Checkpoints found; `hash`/`sha256` are null until the file was hashed (when first loaded)."""
        return [_checkpoint_item(services, entry) for entry in services.registry.checkpoints]

    @router.get("/sd-vae", response_model=list[SDVaeItem])
    def sd_vae() -> list[dict[str, Any]]:
        return [{"model_name": vae.name, "filename": str(vae.path)} for vae in services.registry.vaes]

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        services.models.refresh()

    @router.post("/refresh-vae")
    def refresh_vae() -> None:
        services.models.refresh()

    @router.post("/unload-checkpoint")
    def unload_checkpoint() -> None:
        services.models.unload_checkpoint()

    @router.post("/reload-checkpoint")
    def reload_checkpoint() -> None:
        services.models.reload_checkpoint()
