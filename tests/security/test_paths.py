"""No request reads or writes outside models/, outputs/ and the data dir: names are looked up in
scanned lists, never joined as paths.

The rule for symlinks (SECURITY.md): a file the scan of models/ lists is usable even when it is a
symlink to elsewhere (the owner put the link there); a request's name is only ever matched
against that list, so `../`, absolute paths, URL-encoded and double-encoded names find nothing.
Gradio serves files only from outputs/ (and its own upload cache), judged on the real path, so a
symlink inside outputs/ pointing out of it is refused.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import quote

import httpx
import pytest

from tests.security.conftest import API, EXTENSION, SECRET

TINY = {"width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "seed": 1}


def traversal_names(site, target: str) -> list[str]:
    """Spellings of `target` (a path under the test root) that a careless join would reach."""
    absolute = str(site.root / target)
    relative = "../../" + target
    return [
        relative, "../" * 8 + absolute.lstrip("/"), absolute, "file://" + absolute,
        quote(relative, safe=""), quote(quote(relative, safe=""), safe=""),  # %2e%2e%2f and %252e%252e%252f
        relative.replace("/", "\\"), "Stable-diffusion/../../" + target,
    ]


def outputs_now(site) -> set[str]:
    return {str(p.relative_to(site.root)) for p in site.root.rglob("*") if p.is_file() and "outputs" in p.parts or p.parent == site.outside}


def active_checkpoint(site, api_auth) -> str:
    return httpx.get(site.url + API + "/options", auth=api_auth, timeout=30).json()["sd_model_checkpoint"]


def test_checkpoint_and_vae_names_are_looked_up_not_joined(site, api_auth):
    before = active_checkpoint(site, api_auth)
    for name in traversal_names(site, "outside/stray.safetensors"):
        for key in ("sd_model_checkpoint", "sd_vae"):
            answer = httpx.post(site.url + API + "/options", json={key: name}, auth=api_auth, timeout=60)
            assert answer.status_code == 404, (key, name, answer.status_code, answer.text)
            assert "No checkpoint named" in answer.json()["detail"] or "No VAE named" in answer.json()["detail"]
    assert active_checkpoint(site, api_auth) == before


def test_override_settings_cannot_name_a_path(site, api_auth):
    before = outputs_now(site)
    for name in traversal_names(site, "outside/stray.safetensors")[:4]:
        body = {**TINY, "prompt": "x", "override_settings": {"sd_model_checkpoint": name}}
        answer = httpx.post(site.url + API + "/txt2img", json=body, auth=api_auth, timeout=120)
        assert answer.status_code == 404, answer.text
    assert outputs_now(site) == before


def test_a_listed_symlink_in_models_is_usable_by_its_listed_name(site, api_auth):
    """The rule for links: the scan listed models/Stable-diffusion/linked.safetensors (a link to
    outside/stray.safetensors), so its listed name works; the target's own path does not."""
    names = [m["model_name"] for m in httpx.get(site.url + API + "/sd-models", auth=api_auth).json()]
    assert sorted(names) == ["alpha", "linked"]
    answer = httpx.post(site.url + API + "/options", json={"sd_model_checkpoint": "linked.safetensors"}, auth=api_auth, timeout=120)
    assert answer.status_code == 200, answer.text
    assert active_checkpoint(site, api_auth).startswith("linked")
    answer = httpx.post(site.url + API + "/options", json={"sd_model_checkpoint": "alpha.safetensors"}, auth=api_auth, timeout=120)
    assert answer.status_code == 200, answer.text


def test_image_fields_are_never_read_as_paths(site, api_auth):
    """png-info, extras and img2img take base64 only: a path or file:// URL is refused as not
    base64, and the file's content never comes back."""
    names = traversal_names(site, "outside/secret.txt") + ["/etc/passwd"]
    for name in names:
        answers = [
            httpx.post(site.url + API + "/png-info", json={"image": name}, auth=api_auth, timeout=30),
            httpx.post(site.url + API + "/extra-single-image", json={"image": name, "upscaling_resize": 1}, auth=api_auth, timeout=30),
            httpx.post(site.url + API + "/img2img", json={**TINY, "init_images": [name]}, auth=api_auth, timeout=30),
        ]
        for answer in answers:
            assert answer.status_code == 422, (name, answer.request.url, answer.text)
            assert SECRET not in answer.text and "root:" not in answer.text


def test_styles_and_extra_network_names_do_not_reach_files(site, api_auth):
    """A style named like a path is unknown (styles come from data/styles.csv only); a LoRA or
    embedding named like a path is unknown; a file name pattern with ../ stays in outputs/."""
    styles = [s["name"] for s in httpx.get(site.url + API + "/prompt-styles", auth=api_auth).json()]
    assert styles == ["vivid"]
    before = outputs_now(site)
    body = {**TINY, "prompt": "a cat <lora:../../outside/stray:1> ../../outside/secret",
            "styles": ["../outside/secret.csv", str(site.outside / "secret.csv"), "stolen"],
            "override_settings": {"samples_filename_pattern": "../../../outside/pwned-[seed]"}}
    answer = httpx.post(site.url + API + "/txt2img", json=body, auth=api_auth, timeout=300)
    assert answer.status_code in (200, 400, 404, 422), answer.text
    assert SECRET not in answer.text
    if answer.status_code == 200:
        info = json.loads(answer.json()["info"])
        assert "Lora hashes" not in info["infotexts"][0]
    written = outputs_now(site) - before
    assert answer.status_code != 200 or written, "the image was generated and saved somewhere under the test root"
    assert not any(name.startswith("outside") for name in written), written
    assert all(name.startswith("data/outputs/") for name in written), written


def raw_get(site, target: str, cookies: httpx.Cookies | None = None) -> tuple[int, bytes]:
    """GET with the request target sent exactly as written (no client-side normalisation of
    `..` or of percent-escapes)."""
    port = int(site.url.rsplit(":", 1)[1])
    cookie = "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture(scope="module")
def cookies(site):
    return site.login_cookies()


def test_gradio_serves_outputs_only(site, cookies):
    kept = site.data / "outputs" / "txt2img-images" / "kept.png"
    status, body = raw_get(site, "/gradio_api/file=" + str(kept), cookies)
    assert status == 200 and body.startswith(b"\x89PNG")  # the control: a real output is served
    config = (site.data / "config.json").read_bytes()
    outputs = site.data / "outputs"
    targets = [
        str(site.data / "config.json"), str(outputs) + "/../config.json", str(outputs / "txt2img-images") + "/../../config.json",
        str(outputs) + "/%2e%2e/config.json", str(outputs) + "%2f%2e%2e%2fconfig.json", str(outputs) + "/%252e%252e/config.json",
        str(outputs / "leak.png"),  # a symlink inside outputs/ to config.json
        str(site.outside / "secret.txt"), "../outside/secret.txt", "/etc/passwd",
        str(site.models / "Stable-diffusion" / "alpha.safetensors"), str(site.data / "styles.csv"),
        quote(str(site.outside / "secret.txt"), safe=""),
    ]
    for prefix in ("/gradio_api/file=", "/file=", "/gradio_api/file/"):
        for target in targets:
            status, body = raw_get(site, prefix + target, cookies)
            assert status in (400, 403, 404), (prefix + target, status, body[:200])
            assert SECRET.encode() not in body and config not in body and b"root:" not in body


def test_gradio_does_not_fetch_urls(site, cookies):
    for target in ("/gradio_api/file=http://127.0.0.1:1/x", "/gradio_api/file=https://example.com/a.png",
                   "/gradio_api/proxy=https://example.com/", "/gradio_api/file=HTTP://example.com/a.png"):
        status, body = raw_get(site, target, cookies)
        assert status == 403, (target, status, body[:200])
        assert b"does not fetch URLs" in body


def test_extension_routes_do_not_resolve_paths(site, api_auth):
    for target in (f"/ext/{EXTENSION}/..%2f..%2fconfig.json", f"/ext/{EXTENSION}/%2e%2e/%2e%2e/config.json",
                   f"/ext/{EXTENSION}/secret/../../../config.json"):
        answer = httpx.get(site.url + target, auth=api_auth, timeout=30)
        assert answer.status_code in (401, 404), (target, answer.status_code)
        assert "samples_format" not in answer.text
