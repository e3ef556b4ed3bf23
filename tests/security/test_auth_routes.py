"""With --gradio-auth and --api-auth, no route the app mounts answers a visitor without the right
credentials: every route of `app.routes` (walked into the mounted Gradio app, so a route added by
Easel, an extension or a Gradio update is covered without editing this file) is called with each
of its methods, without credentials and with wrong ones (HTTP Basic, a forged Gradio cookie, the
UI login offered to the API and the API login offered to the UI).

API routes (/sdapi/v1, /ext/<name>, /docs, /openapi.json) must answer 401 with
`WWW-Authenticate: Basic`; page routes 401 (Gradio's or Easel's gate), except the few files the
login page needs (`PUBLIC`), which must carry nothing of this installation.
"""

from __future__ import annotations

import base64
import re

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from tests.security.conftest import API, API_PASSWORD, API_USER, EXTENSION, EXTENSION_SECRET, UI_PASSWORD, UI_USER

API_PREFIXES = (API + "/", "/ext/", "/docs", "/openapi.json")
# Routes an anonymous visitor may fetch, and why: the login page and what it loads.
PUBLIC = {
    "/": "the page: Gradio shows its login form",
    "/login": "the login form posts here", "/login/": "the login form posts here",
    "/logout": "clears the cookie",
    "/favicon.ico": "static", "/manifest.json": "static", "/robots.txt": "static", "/theme.css": "static",
    "/gradio_api/theme.css": "static", "/gradio_api/startup-events": "true/false: whether the page started",
    "/gradio_api/login_check": "answers 401 itself", "/gradio_api/login_check/": "answers 401 itself",
    "/assets/{path:path}": "Gradio's front-end files", "/static/{path:path}": "Gradio's front-end files",
    "/svelte/{path:path}": "Gradio's front-end files", "/pwa_icon": "static", "/pwa_icon/{size}": "static",
}
# What must never appear in an answer to a stranger: names of this installation's models,
# outputs and settings, the extension's data, the page's layout.
PRIVATE_MARKERS = ("alpha.safetensors", "alpha", "kept.png", "easel-checkpoint", "samples_format", EXTENSION_SECRET,
                   "txt2img-images", "sd_model_checkpoint")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


def mounted_routes(routes, prefix: str = "", where: str = "app") -> list[tuple[str, tuple[str, ...], str]]:
    """(path template, methods, where) of every route, walking into mounted apps; `where` is
    "app" for Easel's own routes, else the mounted app's class name (Gradio's `App`)."""
    found = []
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner is not None:
                found += mounted_routes(inner, prefix + route.path, type(route.app).__name__)
            else:  # a plain ASGI app (static files): every path under it
                found.append((prefix + route.path + "/{path:path}", ("GET",), where))
            continue
        methods = tuple(sorted(context.methods)) if context.methods else ("WEBSOCKET",)
        found.append((prefix + (context.path or ""), methods, where))
    return found


def concrete(template: str, site) -> str:
    """A URL for a route template; file routes get a real output file, so a refusal is not just
    'not found'."""
    kept = site.data / "outputs" / "txt2img-images" / "kept.png"
    path = re.sub(r"\{path_or_url(:path)?\}", str(kept), template)
    path = re.sub(r"\{(size|component_id|run)(:\w+)?\}", "1", path)
    return re.sub(r"\{[^}]+\}", "x", path)


def is_api(template: str, where: str) -> bool:
    return where == "app" and (template.startswith(API_PREFIXES) or template == "/openapi.json")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


STRANGERS = {
    "no credentials": {},
    "wrong API password": basic(API_USER, "wrong"),
    "UI login offered to the API": basic(UI_USER, UI_PASSWORD),
    "forged page cookie": {"Cookie": "access-token-x=forged; access-token-unsecure-x=forged"},
    "garbage Authorization": {"Authorization": "Basic !!!not-base64"},
}


@pytest.fixture(scope="module")
def routes(site):
    found = mounted_routes(site.app.routes)
    templates = {template for template, _, _ in found}
    # The walk sees what the app mounts: the API, the extension's route, docs, Gradio's routes.
    assert {API + "/txt2img", API + "/options", f"/ext/{EXTENSION}/secret", "/docs", "/openapi.json", "/config",
            "/gradio_api/queue/join", "/gradio_api/upload", "/gradio_api/file={path_or_url:path}", "/login"} <= templates
    return found


def test_every_route_refuses_strangers(site, routes):
    checked, failures = 0, []
    with httpx.Client(base_url=site.url, timeout=10, follow_redirects=False) as client:
        for template, methods, where in routes:
            url = concrete(template, site)
            for method in methods:
                if method == "WEBSOCKET":
                    continue
                for who, headers in STRANGERS.items():
                    try:
                        answer = client.request(method, url, headers=headers)
                    except httpx.TimeoutException:  # e.g. an open event stream instead of a refusal
                        failures.append(f"{method} {url} ({who}): no answer in 10 s (a stream was opened)")
                        continue
                    checked += 1
                    problem = judge(template, where, method, answer)
                    if problem:
                        failures.append(f"{method} {url} ({who}): {problem}")
    assert checked > 300
    assert not failures, "\n".join(failures)


def judge(template: str, where: str, method: str, answer: httpx.Response) -> str | None:
    body = answer.text
    if is_api(template, where):
        if answer.status_code != 401 or not answer.headers.get("www-authenticate", "").startswith("Basic"):
            return f"API route answered {answer.status_code} {body[:120]!r}"
        return None
    if template in PUBLIC:
        if answer.status_code >= 500:
            return f"public route failed with {answer.status_code}"
        leaked = [marker for marker in PRIVATE_MARKERS if marker in body]
        if leaked:
            return f"public route shows {leaked}"
        return None
    if answer.status_code in (401, 403):
        return None
    if method == "GET" and answer.status_code in (302, 303, 307) and "login" in answer.headers.get("location", ""):
        return None
    return f"page route answered {answer.status_code} {body[:120]!r}"


def test_login_page_shows_no_installation_data(site):
    page = httpx.get(site.url + "/")
    assert page.status_code == 200 and "auth_required" in page.text
    for marker in PRIVATE_MARKERS:
        assert marker not in page.text


def test_the_right_credentials_open_each_surface_and_only_it(site, api_auth):
    """The refusals above are the auth, not a broken server: each login opens its own surface."""
    with httpx.Client(base_url=site.url, timeout=30) as client:
        models = client.get(API + "/sd-models", auth=api_auth)
        assert models.status_code == 200 and "alpha" in models.text
        assert client.get(f"/ext/{EXTENSION}/secret", auth=api_auth).json() == {"secret": EXTENSION_SECRET}
        assert client.get("/openapi.json", auth=api_auth).json()["paths"][API + "/txt2img"]
        docs = client.get("/docs", auth=api_auth)
        assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
        assert client.get("/docs-assets/swagger-ui-bundle.js", auth=api_auth).status_code == 200
        assert client.get("/docs-assets/index.html", auth=api_auth).status_code == 404  # in the folder, not in the list
        # The API password does not open the page, the page login does not open the API.
        assert client.get("/config", auth=api_auth).status_code == 401
        cookies = site.login_cookies()
        config = client.get("/config", cookies=cookies)
        assert config.status_code == 200 and "easel-checkpoint" in config.text
        assert client.get("/gradio_api/app_id", cookies=cookies).status_code == 200
        assert client.get(API + "/sd-models", cookies=cookies).status_code == 401


def test_a_logged_out_cookie_no_longer_opens_the_page(site):
    cookies = site.login_cookies()
    with httpx.Client(base_url=site.url, timeout=10, cookies=cookies) as client:
        assert client.get("/config").status_code == 200
        client.get("/logout")
    assert httpx.get(site.url + "/config", cookies=cookies).status_code == 401


def test_generation_is_refused_without_credentials_and_makes_nothing(site):
    """A stranger's txt2img through the API and through Gradio's queue: 401, no file written."""
    outputs = site.data / "outputs"
    before = sorted(p for p in outputs.rglob("*") if p.is_file())
    body = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2}
    assert httpx.post(site.url + API + "/txt2img", json=body, auth=(API_USER, "nope"), timeout=30).status_code == 401
    join = httpx.post(site.url + "/gradio_api/queue/join", json={"data": ["a cat"], "fn_index": 0, "session_hash": "s"}, timeout=30)
    assert join.status_code == 401
    run = httpx.post(site.url + "/gradio_api/run/predict", json={"data": ["a cat"]}, timeout=30)
    assert run.status_code == 401
    assert sorted(p for p in outputs.rglob("*") if p.is_file()) == before
