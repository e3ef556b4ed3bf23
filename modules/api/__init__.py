"""The A1111-compatible HTTP API under /sdapi/v1. No gradio here: the API only uses Services.

Routes by module: models_routes (checkpoints, VAEs, refresh, unload/reload), options_routes
(/options, /cmd-flags), generation_routes (txt2img, img2img, progress, interrupt, skip),
extras_routes (png-info, extras), misc_routes (listings, memory, the empty ones). Request and
answer shapes are in schemas.py / list_schemas.py, so /docs documents them.

Every answer is JSON; errors have A1111's shape `{error, detail, body, errors}` (see errors.py for
the status of each).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from modules.api.adetailer_routes import add_adetailer_routes
from modules.api.auth import basic_auth_dependency
from modules.api.controlnet_routes import add_controlnet_routes
from modules.api.errors import error_body, http_error, unexpected_error, user_error, validation_error
from modules.api.extras_routes import add_extras_routes
from modules.api.generation_routes import add_generation_routes
from modules.api.merge_routes import add_merge_routes
from modules.api.misc_routes import add_fallback_route, add_misc_routes
from modules.api.models_routes import add_model_routes
from modules.api.options_routes import add_options_routes
from modules.errors import UserError
from modules.services import Services

API_PREFIX = "/sdapi/v1"

__all__ = ["API_PREFIX", "api_auth_dependencies", "build_router", "error_body", "install_api"]


def api_auth_dependencies(services: Services) -> list:
    """HTTP Basic auth with the --api-auth pairs (none without the flag): for every API route,
    the extensions' routes and /docs, /openapi.json."""
    auth = services.args.api_auth
    return [Depends(basic_auth_dependency(auth))] if auth else []


def build_router(services: Services) -> APIRouter:
    """All API routes, behind HTTP Basic auth when --api-auth is given."""
    router = APIRouter(prefix=API_PREFIX, dependencies=api_auth_dependencies(services), tags=["sdapi"])
    add_generation_routes(router, services)
    add_extras_routes(router, services)
    add_options_routes(router, services)
    add_model_routes(router, services)
    add_misc_routes(router, services)
    add_fallback_route(router)  # last: only what no route above takes
    return router


def build_controlnet_router(services: Services) -> APIRouter:
    """The routes outside /sdapi/v1 (sd-webui-controlnet's at /controlnet/..., ADetailer's, and Easel's
    own at /easel/v1/...), behind the same auth as the API."""
    router = APIRouter(dependencies=api_auth_dependencies(services))
    add_controlnet_routes(router, services)
    add_adetailer_routes(router, services)
    add_merge_routes(router, services)  # Easel's own: /easel/v1/merge-checkpoints
    return router


def build_extension_router(services: Services) -> APIRouter:
    """The extensions' routes, each under /ext/<extension name>, behind the same auth as the API."""
    router = APIRouter(prefix="/ext", dependencies=api_auth_dependencies(services))
    for name, route in services.extensions.routes():
        router.add_api_route(f"/{name}{route.path}", route.endpoint, methods=list(route.methods), tags=[f"extension: {name}"])
    return router


def install_api(app: FastAPI, services: Services) -> None:
    """Adds the API routes and A1111's JSON error answers to `app` (before the UI is mounted at /)."""
    app.include_router(build_router(services))
    app.include_router(build_controlnet_router(services))
    app.include_router(build_extension_router(services))
    app.add_exception_handler(UserError, user_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
