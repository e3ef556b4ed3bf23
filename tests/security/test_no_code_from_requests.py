"""Extension code is never loaded from a request: `script_name`, `alwayson_scripts` and options
name scripts and extensions that were discovered at start-up; a path in them finds nothing and
imports nothing. outside/evil.py writes outside/IMPORTED when it is imported."""

from __future__ import annotations

import sys

import httpx

from tests.security.conftest import API

TINY = {"prompt": "x", "width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "seed": 1}


def evil_names(site) -> list[str]:
    evil = site.outside / "evil.py"
    return ["../../evil", "../../outside/evil", "../outside/evil.py", str(evil), str(evil.with_suffix("")), "evil",
            "outside.evil", "file://" + str(evil), "%2e%2e%2f%2e%2e%2foutside%2fevil"]


def assert_not_imported(site) -> None:
    assert not (site.outside / "IMPORTED").exists(), "evil.py was imported"
    assert not any("evil" in name for name in sys.modules), [name for name in sys.modules if "evil" in name]


def test_script_name_is_looked_up_not_imported(site, api_auth):
    for name in evil_names(site):
        for route, body in (("/txt2img", TINY), ("/img2img", {**TINY, "init_images": []})):
            answer = httpx.post(site.url + API + route, json={**body, "script_name": name, "script_args": []}, auth=api_auth, timeout=60)
            assert answer.status_code in (404, 422), (route, name, answer.status_code, answer.text[:200])
    assert_not_imported(site)


def test_alwayson_scripts_with_paths_run_nothing(site, api_auth):
    scripts = {name: {"args": [1]} for name in evil_names(site)}
    answer = httpx.post(site.url + API + "/txt2img", json={**TINY, "alwayson_scripts": scripts}, auth=api_auth, timeout=300)
    assert answer.status_code in (200, 404, 422), answer.text[:300]
    assert_not_imported(site)


def test_options_cannot_enable_an_extension_by_path(site, api_auth):
    enabled = {name: True for name in evil_names(site)}
    answer = httpx.post(site.url + API + "/options", json={"extensions_enabled": enabled, "disable_all_extensions": "none"},
                        auth=api_auth, timeout=60)
    assert answer.status_code in (200, 400, 422), answer.text[:300]
    listed = [e["name"] for e in httpx.get(site.url + API + "/scripts", auth=api_auth).json().get("txt2img", [])]
    assert not any("evil" in str(name) for name in listed)
    assert_not_imported(site)


def test_the_listen_warning_names_what_is_open(capsys):
    """--listen without auth serves (it is allowed) but prints a loud warning naming each open
    surface; with both passwords there is nothing to warn about; the default binds 127.0.0.1."""
    from modules.cmd_args import parse_args
    from webui import _warn_if_exposed

    assert parse_args([]).host == "127.0.0.1" and parse_args(["--api"]).host == "127.0.0.1"
    _warn_if_exposed(parse_args(["--listen", "--api"]))
    warning = capsys.readouterr().err
    assert "WARNING" in warning and "0.0.0.0" in warning and "WITHOUT a password" in warning
    assert "--gradio-auth" in warning and "--api-auth" in warning and "!" * 40 in warning
    _warn_if_exposed(parse_args(["--listen", "--api", "--gradio-auth", "a:b"]))
    warning = capsys.readouterr().err
    assert "--api-auth" in warning and "--gradio-auth" not in warning
    _warn_if_exposed(parse_args(["--listen", "--api", "--gradio-auth", "a:b", "--api-auth", "c:d"]))
    _warn_if_exposed(parse_args(["--api"]))
    assert capsys.readouterr().err == ""
