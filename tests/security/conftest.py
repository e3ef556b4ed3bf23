"""Security test set-up: the real app (`webui.create_app`, UI + API, both auths, a test extension
with an API route) served by uvicorn on a free loopback port in this process, so the tests can
both enumerate `app.routes` and talk HTTP to it.

Files around it, for the path tests:
- models/Stable-diffusion/alpha.safetensors (tiny), models/VAE/v.safetensors
- models/Stable-diffusion/linked.safetensors -> a checkpoint OUTSIDE models/ (a symlink)
- data/outputs/txt2img-images/kept.png (a file Gradio may serve), data/config.json (it may not)
- data/outputs/leak.png -> data/config.json (a symlink inside outputs pointing out of it)
- outside/secret.txt (never served), outside/evil.py (writes a marker if ever imported)
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

UI_USER, UI_PASSWORD = "painter", "ui-secret-1"
API_USER, API_PASSWORD = "robot", "api-secret-2"
API = "/sdapi/v1"
SECRET = "TOP-SECRET-CONTENT-7f3a"
EXTENSION = "probe"
EXTENSION_SECRET = "extension-data-5c1d"

PROBE_EXTENSION = f'''
def setup(api):
    def secret():
        return {{"secret": "{EXTENSION_SECRET}"}}

    api.add_api_route("/secret", secret, methods=["GET"])
'''

EVIL = '''
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("evil.py was imported")
'''


@dataclass
class Site:
    url: str
    app: object
    services: object
    root: Path
    models: Path
    data: Path
    outside: Path

    def login_cookies(self) -> httpx.Cookies:
        with httpx.Client(base_url=self.url) as client:
            answer = client.post("/login", data={"username": UI_USER, "password": UI_PASSWORD})
            assert answer.status_code == 200, answer.text
            return client.cookies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_tree(root: Path) -> dict[str, Path]:
    from tools.make_test_models import write_test_checkpoint, write_test_vae

    models, data, outside, extensions = root / "models", root / "data", root / "outside", root / "extensions"
    (models / "Stable-diffusion").mkdir(parents=True)
    (models / "VAE").mkdir()
    outside.mkdir()
    write_test_checkpoint(models / "Stable-diffusion" / "alpha.safetensors", seed=1)
    write_test_vae(models / "VAE" / "v.safetensors", seed=7)
    write_test_checkpoint(outside / "stray.safetensors", seed=2)
    (models / "Stable-diffusion" / "linked.safetensors").symlink_to(outside / "stray.safetensors")
    (outside / "secret.txt").write_text(SECRET)
    (outside / "evil.py").write_text(EVIL)
    (outside / "secret.csv").write_text(f"name,prompt,negative_prompt\nstolen,{SECRET},\n")
    kept = data / "outputs" / "txt2img-images"
    kept.mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(kept / "kept.png")
    (data / "styles.csv").write_text("name,prompt,negative_prompt\nvivid,\"{prompt}, vivid\",dull\n")
    (data / "outputs" / "leak.png").symlink_to(data / "config.json")
    probe = extensions / EXTENSION
    probe.mkdir(parents=True)
    (probe / "extension.json").write_text(f'{{"name": "{EXTENSION}", "version": "1", "api_version": 1, "enabled": true}}')
    (probe / "extension.py").write_text(PROBE_EXTENSION)
    return {"models": models, "data": data, "outside": outside, "extensions": extensions}


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory):
    """The app with --api, --gradio-auth and --api-auth, serving on 127.0.0.1 (uvicorn thread)."""
    import uvicorn

    from modules.services import build_services
    from modules.cmd_args import parse_args
    from webui import create_app

    root = tmp_path_factory.mktemp("security")
    tree = build_tree(root)
    port = _free_port()
    args = parse_args([
        "--api", "--port", str(port), "--device", "cpu", "--skip-load", "--no-demo-model",
        "--models-dir", str(tree["models"]), "--data-dir", str(tree["data"]), "--extensions-dir", str(tree["extensions"]),
        "--gradio-auth", f"{UI_USER}:{UI_PASSWORD}", "--api-auth", f"{API_USER}:{API_PASSWORD}",
    ])
    services = build_services(args, load_now=False)
    if not (tree["data"] / "config.json").exists():
        (tree["data"] / "config.json").write_text('{"samples_format": "png"}')
    app = create_app(services, args)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="security-site", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the app did not start")
        time.sleep(0.05)
    try:
        yield Site(url=f"http://127.0.0.1:{port}", app=app, services=services, root=root, models=tree["models"],
                   data=tree["data"], outside=tree["outside"])
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        services.close()


@pytest.fixture(scope="session")
def api_auth() -> tuple[str, str]:
    return (API_USER, API_PASSWORD)
