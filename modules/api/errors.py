"""A1111's JSON error answers `{error, detail, body, errors}` and the status code of each error.

Bad input never gets a 500: a field that cannot be used (size, base64, image, script) is 422, an
unknown checkpoint, VAE, upscaler or job 404, a full queue 503 (try again), any other UserError 400
(unknown sampler: A1111 answers "Sampler not found" with 400 too). Only a bug is a 500.
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modules.controlnet.preprocess import PreprocessorError
from modules.controlnet.units import ControlNetError
from modules.detailer.args import DetailerArgsError
from modules.detailer.detection import DetectorError
from modules.errors import ModelNotFoundError, UserError
from modules.generation.request import RequestError
from modules.infotext.embed import UnreadableImageError
from modules.jobs import JobNotFoundError, QueueFullError
from modules.merger.recipe import MergeError
from modules.prompts.dynamic import DynamicPromptsError
from modules.regions.errors import RegionalPromptError
from modules.upscalers.extras import ExtrasError

log = logging.getLogger(__name__)


class ApiInputError(UserError):
    """A request field the API cannot use (bad base64, unknown script...): answered with 422."""


class ApiNotFoundError(UserError):
    """Something the request names does not exist here (an upscaler, a script...): 404."""


def error_body(error: str, detail: object, body: object = "", errors: object = "") -> dict:
    return {"error": error, "detail": detail, "body": body, "errors": errors}


def status_for(exc: UserError) -> int:
    if isinstance(exc, (ModelNotFoundError, ApiNotFoundError, JobNotFoundError)):
        return 404
    if isinstance(exc, QueueFullError):
        return 503
    if isinstance(exc, (RequestError, ApiInputError, UnreadableImageError, ExtrasError, ControlNetError, PreprocessorError, DetailerArgsError,
                        DetectorError, DynamicPromptsError, RegionalPromptError, MergeError)):
        return 422
    return 400


def user_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UserError)
    headers = {"Retry-After": "5"} if isinstance(exc, QueueFullError) else None
    return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=status_for(exc), headers=headers)


def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(error_body("HTTPException", exc.detail, errors=f"{exc.status_code}: {exc.detail}"),
                        status_code=exc.status_code, headers=exc.headers)


def _where(error: dict) -> str:
    return ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"


def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A body that is not JSON, or a field of the wrong type: 422 naming each field."""
    assert isinstance(exc, RequestValidationError)
    problems = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
    detail = "; ".join(f"{_where(e)}: {e['msg']}" for e in problems) or "Invalid request."
    return JSONResponse(error_body("RequestValidationError", detail, errors=problems), status_code=422)


def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after sending this, so the server log gets the traceback once.
    return JSONResponse(error_body(type(exc).__name__, str(exc), errors=str(exc)), status_code=500)
