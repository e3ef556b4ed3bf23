"""ADetailer's routes (25.3.0 `scripts/!adetailer.py` add_api_endpoints), at `/adetailer/v1/...` as it
mounts them: version, ad_model (the detectors this Easel has; "None" is not listed) and schema (the
tab arguments' JSON schema)."""

from __future__ import annotations

from typing import Any

import pydantic
from fastapi import APIRouter

from modules.detailer.args import ADETAILER_VERSION, DetailerTab
from modules.services import Services


def add_adetailer_routes(app_router: APIRouter, services: Services) -> None:
    router = APIRouter(prefix="/adetailer/v1", tags=["adetailer"])  # `app_router` brings the auth

    @router.get("/version")
    def version() -> dict[str, Any]:
        return {"version": ADETAILER_VERSION}

    @router.get("/ad_model")
    def ad_model() -> dict[str, Any]:
        return {"ad_model": services.detectors.names()}

    @router.get("/schema")
    def schema() -> dict[str, Any]:
        return pydantic.TypeAdapter(DetailerTab).json_schema()

    app_router.include_router(router)
