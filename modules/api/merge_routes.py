"""`POST /easel/v1/merge-checkpoints`: the checkpoint merger over HTTP (Easel's own route: A1111 has
none). The merge runs as a job on the generation queue; the answer comes when the new checkpoint is
written and listed, with its title as `/sdapi/v1/sd-models` and `sd_model_checkpoint` take it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from pydantic import Field

from modules.api.schemas import ApiModel
from modules.merger.recipe import METHODS, WEIGHTED_SUM, MergeError, MergeRecipe

if TYPE_CHECKING:
    from modules.services import Services


class MergeRequest(ApiModel):
    primary_model_name: str = Field(description="A: a checkpoint's title, name or hash, as /sdapi/v1/sd-models lists it.")
    secondary_model_name: str = Field("", description="B (Weighted sum and Add difference).")
    tertiary_model_name: str = Field("", description="C (Add difference: A + (B - C) x M).")
    interp_method: str = Field(WEIGHTED_SUM, description="One of: " + ", ".join(METHODS) + ".")
    multiplier: float = Field(0.3, description="M, from 0 to 1.")
    save_as_half: bool = Field(False, description="Write float16 weights.")
    custom_name: str = Field("", description="The new file's name (default: A_0.7-B_0.3-Weighted_sum-merged).")
    bake_in_vae: str = Field("", description="A VAE to put in the checkpoint (its name as /sdapi/v1/sd-vae lists it), or empty.")
    discard_weights: str = Field("", description="A regular expression: the weights whose keys it finds are left out (e.g. model_ema).")


class MergeResponse(ApiModel):
    title: str
    filename: str
    seconds: float


def add_merge_routes(app_router: APIRouter, services: "Services") -> None:
    router = APIRouter(prefix="/easel/v1", tags=["easel"])  # `app_router` brings the auth

    @router.post("/merge-checkpoints", response_model=MergeResponse, summary="Merge checkpoints into a new one")
    def merge_checkpoints(body: MergeRequest) -> dict[str, Any]:
        """Weighted sum, add difference or no interpolation, as A1111's Checkpoint Merger tab; the
        result is written to the checkpoints folder and listed at once."""
        recipe = MergeRecipe(body.primary_model_name, body.secondary_model_name, body.tertiary_model_name, body.interp_method,
                             body.multiplier, body.save_as_half, body.custom_name, body.bake_in_vae,
                             body.discard_weights)
        result = services.merges.submit(recipe).result()
        if result is None:
            raise MergeError("The merge was interrupted before it finished; nothing was written.")
        return {"title": result.title, "filename": result.path.name, "seconds": round(result.seconds, 3)}

    app_router.include_router(router)
