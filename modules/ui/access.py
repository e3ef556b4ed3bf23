"""Who may reach the page's routes: an ASGI gate in front of the mounted Gradio app.

Gradio checks its login on most of its routes (`Depends(login_check)`), but not on all of them
(`/gradio_api/heartbeat/...`, `/gradio_api/cancel`, `/gradio_api/reset`, `/gradio_api/stream/...`,
`/gradio_api/app_id`, the vibe editor and run-history routes, ...), and a Gradio update may add
more. With `--gradio-auth` this gate answers 401 to every request that does not carry a valid
login cookie, except the few paths the login page itself needs (`PUBLIC_PATHS`,
`PUBLIC_PREFIXES`: the page, the login form, Gradio's static files). So a route Gradio adds later
is closed until someone decides otherwise here.

Whatever the auth, `/gradio_api/file=<http(s) URL>` and `/gradio_api/proxy=...` are refused:
Easel never fetches from the network on a request's behalf (Gradio would download the URL).

Gradio's login page (served at "/" to anyone) embeds the page's API description, with the choices
of its dropdowns: checkpoint, VAE and style names. For a visitor who has not logged in the gate
empties it (`window.gradio_api_info = {}`), so the login page carries nothing of the installation.

The login cookie is the one Gradio's own `/login` sets; it is checked against the token table of
the same Gradio app (`App.tokens`, `App.cookie_id`), the way Gradio's `get_current_user` does.
"""

from __future__ import annotations

import json
from http.cookies import CookieError, SimpleCookie
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

# Exact paths an anonymous visitor may fetch: the page (Gradio shows its login form there), the
# login and logout routes, and files every page needs before login.
PUBLIC_PATHS = frozenset({
    "/", "/login", "/login/", "/logout", "/favicon.ico", "/manifest.json", "/robots.txt", "/theme.css",
    "/gradio_api/theme.css", "/gradio_api/login_check", "/gradio_api/login_check/", "/gradio_api/startup-events",
})
# Gradio's own front-end files (no user data there).
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/gradio_api/static/", "/pwa_icon")
# Routes that would make the server fetch a URL.
NETWORK_FETCH_PREFIXES = ("/gradio_api/proxy=", "/proxy=")
FILE_ROUTES = ("/gradio_api/file=", "/file=")

API_INFO_START = b"<script>window.gradio_api_info = "
API_INFO_END = b";</script>"
LOGIN_REQUIRED = "Log in first: this Easel page is password-protected (--gradio-auth)."
NO_NETWORK = "Easel does not fetch URLs for a request; send the file itself."


def route_path(scope: Scope) -> str:
    """The request path inside the mounted app (percent-decoded, as Starlette routes it)."""
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path or "/"


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def fetches_network(path: str) -> bool:
    if path.startswith(NETWORK_FETCH_PREFIXES):
        return True
    for prefix in FILE_ROUTES:
        if path.startswith(prefix):
            target = path[len(prefix):].lstrip().lower()
            return target.startswith(("http:", "https:", "//", "ftp:"))
    return False


def _cookies(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                parsed = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                continue
            found.update({key: morsel.value for key, morsel in parsed.items()})
    return found


class PageGate:
    """ASGI middleware for the Gradio app (add it with `gradio_app.add_middleware(PageGate, ...)`).

    `login_app` is the Gradio `App` whose `/login` issues the cookies; None when the page has no
    password (then only the network-fetch routes are refused)."""

    def __init__(self, app: ASGIApp, login_app: Any | None) -> None:
        self.app = app
        self.login_app = login_app

    def logged_in(self, scope: Scope) -> bool:
        assert self.login_app is not None  # called only with --gradio-auth
        cookies = _cookies(scope)
        cookie_id = self.login_app.cookie_id
        token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
        return token is not None and token in self.login_app.tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if fetches_network(path):
            await _refuse(scope, send, 403, NO_NETWORK)
            return
        if self.login_app is None or self.logged_in(scope):
            await self.app(scope, receive, send)
        elif not is_public(path):
            await _refuse(scope, send, 401, LOGIN_REQUIRED)
        elif path == "/" and scope["type"] == "http":
            await self.app(_uncompressed(scope), receive, _WithoutApiInfo(send))  # type: ignore[arg-type]  # starlette's Send takes a MutableMapping; ours reads it as a dict
        else:
            await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, status: int, sentence: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4401 if status == 401 else 4403, "reason": sentence})
        return
    body = json.dumps({"error": "Unauthorized" if status == 401 else "Forbidden", "detail": sentence}).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]})
    await send({"type": "http.response.body", "body": body})


def _uncompressed(scope: Scope) -> Scope:
    """The scope without Accept-Encoding, so the login page comes back as plain text to edit."""
    return {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]}


class _WithoutApiInfo:
    """A `send` that buffers an HTML answer and empties its embedded `gradio_api_info`."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = strip_api_info(b"".join(self.chunks))
        headers = [(k, v) for k, v in self.start.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def strip_api_info(page: bytes) -> bytes:
    """The page with `window.gradio_api_info = {...};` replaced by `{}` (the JSON is written with
    `<`, `>` escaped, so it cannot contain the closing `;</script>`)."""
    start = page.find(API_INFO_START)
    if start < 0:
        return page
    end = page.find(API_INFO_END, start + len(API_INFO_START))
    if end < 0:
        return page
    return page[: start + len(API_INFO_START)] + b"{}" + page[end:]
