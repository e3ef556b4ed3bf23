"""/docs: Swagger UI for the OpenAPI schema, served from the `swagger-ui-bundle` package.

FastAPI's own /docs page loads Swagger UI's script and style from a CDN, which shows a blank page
on an offline machine; here the same page points at the files installed with the package.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs-assets"


def install_docs(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """GET /docs (the page) and /docs-assets/* (Swagger UI's files), left out of the schema."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title="Easel API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
