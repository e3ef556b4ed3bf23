"""/docs: Swagger UI for the OpenAPI schema, served from the `swagger-ui-bundle` package, and the
schema itself at /openapi.json; all three behind the API's auth when --api-auth is set.

FastAPI's own /docs page loads Swagger UI's script and style from a CDN, which shows a blank page
on an offline machine; here the same page points at the files installed with the package. Those
files are served by name from the package's listing (never a path joined from the request).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Sequence

from fastapi import APIRouter, FastAPI, HTTPException, params
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs-assets"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png")


def install_docs(app: FastAPI, openapi_url: str = "/openapi.json", dependencies: Sequence[params.Depends] = ()) -> None:
    """GET /openapi.json, /docs (the page) and /docs-assets/<file> (Swagger UI's files), left out
    of the schema; `dependencies` (the API's auth) guard all of them."""
    router = APIRouter(dependencies=list(dependencies), include_in_schema=False)
    files = {name: Path(swagger_ui_path) / name for name in ASSET_FILES}

    @router.get(openapi_url)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title="Easel API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

    @router.get(ASSETS + "/{name}")
    def asset(name: str) -> FileResponse:
        path = files.get(name)
        if path is None:
            raise HTTPException(status_code=404, detail=f"No such file: {name}")
        return FileResponse(path, media_type=mimetypes.guess_type(name)[0] or "application/octet-stream")

    app.include_router(router)
