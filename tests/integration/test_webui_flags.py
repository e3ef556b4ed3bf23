"""webui.py's command line, proved on real server processes.

Two servers are started once for the whole module (in parallel, since the gradio import is slow):
- "ui":  web UI + API, --port, --ckpt (outside models/), --data-dir, --gradio-auth, --api-auth;
- "api": --nowebui --listen, no auth, --skip-load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import psutil  # noqa: E402
import pytest  # noqa: E402

from modules.cmd_args import parse_args  # noqa: E402

from tests.webui_server import API, REPO, START_TIMEOUT, Server, child_env, free_port  # noqa: E402,F401

UI_USER, UI_PASSWORD = "painter", "palette-42"
API_USER, API_PASSWORD = "robot", "b33p"


@pytest.fixture(scope="module")
def setup_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tools.make_test_models import write_test_checkpoint

    root = tmp_path_factory.mktemp("webui")
    models = root / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    (root / "extra").mkdir()
    ckpt = elsewhere / "mine.safetensors"
    write_test_checkpoint(ckpt, seed=3)
    # listed first in models/, so loading it at start would be the default without --ckpt
    shutil.copy(ckpt, models / "Stable-diffusion" / "aaa-first.safetensors")
    return {"root": root, "models": models, "extra": root / "extra", "ckpt": ckpt, "data": root / "data", "api_data": root / "api-data", "logs": root}


@pytest.fixture(scope="module")
def servers(setup_dirs):
    d = setup_dirs
    ui = Server("ui", [
        "--api", "--models-dir", str(d["models"]), "--data-dir", str(d["data"]), "--ckpt", str(d["ckpt"]), "--ckpt-dir", str(d["extra"]),
        "--gradio-auth", f"{UI_USER}:{UI_PASSWORD}", "--api-auth", f"{API_USER}:{API_PASSWORD}",
    ], d["logs"])
    api = Server("api", ["--nowebui", "--listen", "--skip-load", "--models-dir", str(d["models"]), "--data-dir", str(d["api_data"])], d["logs"])
    try:
        ui.wait_ready()
        api.wait_ready()
        yield {"ui": ui, "api": api}
    finally:
        ui.stop()
        api.stop()


def test_default_bind_is_loopback_and_port_is_honoured(servers):
    ui = servers["ui"]
    assert ui.listening_addresses() == {("127.0.0.1", ui.port)}
    assert f"Uvicorn running on http://127.0.0.1:{ui.port}" in ui.output()
    assert "WARNING" not in ui.output()


def test_listen_binds_all_interfaces_and_warns(servers):
    api = servers["api"]
    assert api.listening_addresses() == {("0.0.0.0", api.port)}
    warning = api.stderr.read_text()
    assert "WARNING" in warning and "WITHOUT a password" in warning and "--api-auth" in warning


def test_nowebui_serves_the_api_and_not_the_page(servers, setup_dirs):
    api = servers["api"]
    response = httpx.get(api.url + API + "/sd-models")
    assert response.status_code == 200
    assert [row["model_name"] for row in response.json()] == ["aaa-first"]
    options = httpx.get(api.url + API + "/options").json()
    assert options["sd_checkpoint_hash"] is None  # --skip-load: nothing loaded
    page = httpx.get(api.url + "/")
    assert page.status_code == 404 and "<html" not in page.text.lower()
    assert httpx.get(api.url + "/config").status_code == 404


def test_api_auth(servers):
    ui = servers["ui"]
    denied = httpx.get(ui.url + API + "/options")
    assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Basic")
    assert denied.json()["error"] == "HTTPException"
    assert httpx.get(ui.url + API + "/options", auth=(API_USER, "wrong")).status_code == 401
    assert httpx.get(ui.url + API + "/options", auth=(UI_USER, UI_PASSWORD)).status_code == 401  # UI login is not API login
    assert httpx.get(ui.url + API + "/options", auth=(API_USER, API_PASSWORD)).status_code == 200


def loaded_options(server: Server, auth=None, timeout: float = 90.0) -> dict:
    """/options once the start-up checkpoint has loaded (it loads in the background after the
    server starts answering)."""
    deadline = time.monotonic() + timeout
    while True:
        options = httpx.get(server.url + API + "/options", auth=auth).json()
        if options.get("sd_checkpoint_hash") or time.monotonic() > deadline:
            return options
        time.sleep(0.1)


def test_ckpt_flag_loads_that_file(servers, setup_dirs):
    ui = servers["ui"]
    sha = hashlib.sha256(setup_dirs["ckpt"].read_bytes()).hexdigest()
    options = loaded_options(ui, auth=(API_USER, API_PASSWORD))
    assert options["sd_model_checkpoint"] == f"mine.safetensors [{sha[:10]}]"
    assert options["sd_checkpoint_hash"] == sha
    models = httpx.get(ui.url + API + "/sd-models", auth=(API_USER, API_PASSWORD)).json()
    assert {str(setup_dirs["ckpt"]), str(setup_dirs["models"] / "Stable-diffusion" / "aaa-first.safetensors")} <= {row["filename"] for row in models}


def test_data_dir_holds_config_and_hash_cache(servers, setup_dirs):
    data = setup_dirs["data"]
    loaded_options(servers["ui"], auth=(API_USER, API_PASSWORD))
    config = json.loads((data / "config.json").read_text())
    assert config["sd_vae"] == "Automatic"
    hashes = json.loads((data / "cache.json").read_text())["hashes"]
    sha = hashlib.sha256(setup_dirs["ckpt"].read_bytes()).hexdigest()
    assert hashes["checkpoint/mine.safetensors"]["sha256"] == sha
    assert (setup_dirs["api_data"] / "config.json").is_file()


def test_gradio_auth_protects_the_page(servers):
    ui = servers["ui"]
    with httpx.Client(base_url=ui.url) as browser:
        assert browser.get("/config").status_code == 401
        login_page = browser.get("/")
        assert login_page.status_code == 200 and "auth_required" in login_page.text
        assert "easel-checkpoint" not in login_page.text
        assert browser.post("/login", data={"username": UI_USER, "password": "nope"}).status_code == 400
        assert browser.post("/login", data={"username": API_USER, "password": API_PASSWORD}).status_code == 400
        assert browser.post("/login", data={"username": UI_USER, "password": UI_PASSWORD}).status_code == 200
        config = browser.get("/config")
        assert config.status_code == 200
        text = config.text
        assert '"title":"Easel"' in text.replace(" ", "") and "easel-checkpoint" in text
        assert "mine.safetensors" in text  # the dropdown shows the --ckpt file (built before it is hashed)


def test_bad_flags_exit_2_with_one_line(tmp_path):
    cases = {
        ("--port", "70000"): "--port",
        ("--api-auth", "no-colon"): "--api-auth",
        ("--ckpt", str(tmp_path / "missing.safetensors")): "--ckpt",
        ("--no-such-flag",): "unrecognized",
    }
    for argv, expected in cases.items():
        result = subprocess.run([sys.executable, str(REPO / "webui.py"), *argv], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (argv, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("webui.py: error:") and expected in lines[0], (argv, result.stderr)
        assert "no-colon" not in result.stderr  # a mistyped secret is not echoed


def test_parsed_defaults():
    args = parse_args([])
    assert (args.host, args.port, args.api, args.webui) == ("127.0.0.1", 7860, False, True)
    assert args.data_dir == REPO / "data" and args.models_dir == REPO / "models"
    api_only = parse_args(["--nowebui", "--listen"])
    assert (api_only.host, api_only.port, api_only.api, api_only.webui) == ("0.0.0.0", 7861, True, False)
    assert parse_args(["--gradio-auth", "a:b,c:d:e"]).gradio_auth == [("a", "b"), ("c", "d:e")]


def test_importing_webui_does_nothing():
    code = "import sys, webui; heavy = {'torch', 'gradio', 'diffusers', 'fastapi'} & set(sys.modules); assert not heavy, heavy"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def english_key(title: str) -> str:
    """A choice title as Gradio sends a translatable text: `__i18n__{"key": ...}`; plain titles pass through."""
    if title.startswith("__i18n__"):
        return json.loads(title.removeprefix("__i18n__"))["key"]
    return title


def test_ui_switches_models_and_reports_a_failed_switch(servers, setup_dirs):
    from gradio_client import Client

    ui = servers["ui"]
    extra = setup_dirs["extra"]
    shutil.copy(setup_dirs["ckpt"], extra / "copy.safetensors")
    (extra / "broken.safetensors").write_bytes(setup_dirs["ckpt"].read_bytes()[:4096])  # a truncated download
    client = Client(ui.url + "/", auth=(UI_USER, UI_PASSWORD), verbose=False)
    checkpoint, vae, status = client.predict(api_name="/on_refresh")
    titles = [choice[0] for choice in checkpoint["choices"]]
    assert {"copy.safetensors", "broken.safetensors"} <= set(titles)
    label = dict((value, title) for title, value in checkpoint["choices"])
    assert checkpoint["value"] == "mine.safetensors" and label["mine.safetensors"].startswith("mine.safetensors [") and "SD1.x" in status
    # the built-in choices travel as translation keys; the browser shows them in the reader's language
    assert [english_key(choice[0]) for choice in vae["choices"]] == ["Automatic", "None"]

    checkpoint, _, status = client.predict("copy.safetensors", api_name="/on_checkpoint")
    label = dict((value, title) for title, value in checkpoint["choices"])
    assert checkpoint["value"] == "copy.safetensors" and label["copy.safetensors"].startswith("copy.safetensors [")
    assert "copy.safetensors" in status
    options = httpx.get(ui.url + API + "/options", auth=(API_USER, API_PASSWORD)).json()
    assert options["sd_model_checkpoint"] == label["copy.safetensors"]

    checkpoint, _, status = client.predict("broken.safetensors", api_name="/on_checkpoint")
    assert checkpoint["value"] == "copy.safetensors"  # back on the model that is still active
    assert "broken.safetensors" in status and "**Error:**" in status
    options = httpx.get(ui.url + API + "/options", auth=(API_USER, API_PASSWORD)).json()
    assert options["sd_model_checkpoint"].startswith("copy.safetensors [")
