"""The A1111-compatible HTTP API under /sdapi/v1. No gradio here: the API only uses Services.

Every answer is JSON; errors have A1111's shape `{error, detail, body, errors}`: a UserError is 400
(404 when a model is not found), a malformed request 422, a bug 500.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modules.api.auth import basic_auth_dependency
from modules.api.models_routes import add_model_routes
from modules.app_services import Services
from modules.errors import ModelNotFoundError, UserError

API_PREFIX = "/sdapi/v1"


def error_body(error: str, detail: object, body: object = "", errors: object = "") -> dict:
    return {"error": error, "detail": detail, "body": body, "errors": errors}


def _user_error(request: Request, exc: Exception) -> JSONResponse:
    status = 404 if isinstance(exc, ModelNotFoundError) else 400
    return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=status)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(error_body("HTTPException", exc.detail), status_code=exc.status_code, headers=exc.headers)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(error_body("RequestValidationError", "Invalid request.", errors=str(exc.errors())), status_code=422)


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after sending this, so the server log gets the traceback once.
    return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=500)


def build_router(services: Services) -> APIRouter:
    """All API routes, behind HTTP Basic auth when --api-auth is given."""
    auth = services.args.api_auth
    dependencies = [Depends(basic_auth_dependency(auth))] if auth else []
    router = APIRouter(prefix=API_PREFIX, dependencies=dependencies)
    add_model_routes(router, services)
    return router


def install_api(app: FastAPI, services: Services) -> None:
    """Adds the API routes and A1111's JSON error answers to `app` (before the UI is mounted at /)."""
    app.include_router(build_router(services))
    app.add_exception_handler(UserError, _user_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
