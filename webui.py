"""Starts Easel: command line -> services -> FastAPI app (API + Gradio UI) -> uvicorn.

    python webui.py [--listen] [--port 7860] [--api | --nowebui] [--ckpt PATH] ...  (--help for all)

Importing this file does nothing; `main()` does the work. Tests build the app with `create_app`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modules.cmd_args import Args
    from modules.services import Services

log = logging.getLogger("easel")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def set_offline_environment() -> None:
    """Must run before diffusers, transformers or gradio are imported: they read these at import."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def create_app(services: Services, args: Args) -> FastAPI:
    """The FastAPI app: API routes (with --api/--nowebui), then the UI at "/" (unless --nowebui)."""
    set_offline_environment()
    from fastapi import FastAPI

    from modules.uploads import RequestSizeLimit

    # The schema is served by install_docs, behind the API's auth (FastAPI's own route has none).
    app = FastAPI(title="Easel", docs_url=None, redoc_url=None, openapi_url=None)
    if args.api:
        from modules.api import api_auth_dependencies, install_api
        from modules.api.docs import install_docs

        install_api(app, services)
        install_docs(app, dependencies=api_auth_dependencies(services))
    if args.webui:
        from modules.ui.app import mount_ui

        app = mount_ui(app, services)
    # Outermost: a body over --max-upload-mb is refused before any route reads it.
    app.add_middleware(RequestSizeLimit, max_bytes=int(args.max_upload_mb * 1e6))
    return app


def _warn_if_exposed(args: Args) -> None:
    if args.host in LOOPBACK_HOSTS:
        return
    open_parts = args.open_surfaces()
    if open_parts:
        bar = "!" * 78
        print(
            f"{bar}\nWARNING: serving on {args.host}:{args.port}, reachable from other machines, WITHOUT a password for "
            f"{' and '.join(open_parts)}.\nAnyone who can reach this port can use it.\n{bar}",
            file=sys.stderr,
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    set_offline_environment()
    from modules.cmd_args import parse_args

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    _warn_if_exposed(args)

    import uvicorn

    from modules.errors import UserError
    from modules.services import build_services

    try:
        services = build_services(args, load_now=False)  # the page answers first; the model loads after
    except UserError as error:
        print(f"webui.py: error: {error}", file=sys.stderr)
        return 1
    app = create_app(services, args)
    shown = "127.0.0.1" if args.host == "0.0.0.0" else args.host
    parts = [] if args.nowebui else [f"web UI http://{shown}:{args.port}/"]
    if args.api:
        parts.append(f"API http://{shown}:{args.port}/sdapi/v1/ (docs at /docs)")
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=3))
    if not args.skip_load:
        threading.Thread(target=_preload_once_serving, args=(server, services), name="easel-preload", daemon=True).start()
    log.info("Serving on %s:%d: %s", args.host, args.port, "; ".join(parts))
    try:
        server.run()
    finally:
        services.close()
    return 0


def _preload_once_serving(server, services: Services) -> None:
    """Loads the start-up checkpoint as soon as the server answers (a generation asked for before
    that waits for it under the model lock)."""
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        services.preload()


if __name__ == "__main__":
    sys.exit(main())
