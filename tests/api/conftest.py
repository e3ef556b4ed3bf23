"""API test set-up: tiny checkpoints, an in-process app for the per-route tests (fast, and the
services can be inspected) and one real `python webui.py --api` for the client and concurrency
tests (the way tools meet Easel: HTTP on a port, UI beside it).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.api.api_helpers import STYLES_CSV, make_client
from tests.webui_server import API, START_TIMEOUT, Server

CHECKPOINTS = {"alpha": 1, "beta": 2}  # name -> seed of its random weights
INPAINT = "inpaint"  # a 9-channel inpainting checkpoint


@pytest.fixture(scope="session")
def api_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ with Stable-diffusion/{alpha, beta, inpaint}.safetensors and VAE/v.safetensors."""
    from tools.make_test_models import write_test_checkpoint, write_test_vae

    root = tmp_path_factory.mktemp("api-models")
    sd = root / "Stable-diffusion"
    sd.mkdir(parents=True)
    (root / "VAE").mkdir()
    for name, seed in CHECKPOINTS.items():
        write_test_checkpoint(sd / f"{name}.safetensors", seed=seed)
    write_test_checkpoint(sd / f"{INPAINT}.safetensors", seed=3, in_channels=9)
    write_test_vae(root / "VAE" / "v.safetensors", seed=7)
    return root


@pytest.fixture(scope="session")
def api(api_models: Path, tmp_path_factory: pytest.TempPathFactory):
    """(client, services) of an in-process API app on the tiny models, alpha loaded. Shared by
    the test modules: a test that changes a setting puts it back."""
    client, services = make_client(api_models, tmp_path_factory.mktemp("api-data"))
    with client:
        yield client, services
    services.close()


@pytest.fixture(scope="session")
def live_server(api_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Server:
    """A real `python webui.py --api` (UI and API on one port) on the tiny models."""
    root = tmp_path_factory.mktemp("api-live")
    (root / "data").mkdir()
    (root / "data" / "styles.csv").write_text(STYLES_CSV)
    server = Server("api-live", ["--api", "--models-dir", str(api_models), "--data-dir", str(root / "data"),
                                 "--ckpt", str(api_models / "Stable-diffusion" / "alpha.safetensors")], root)
    server.data_dir = root / "data"
    try:
        server.wait_ready("/")
        wait_for_model(server)
        yield server
    finally:
        server.stop()


def wait_for_model(server: Server, timeout: float = START_TIMEOUT) -> None:
    """The page answers before the start-up checkpoint is loaded; tests want it loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(server.url + API + "/options", timeout=10).json().get("sd_checkpoint_hash"):
            return
        time.sleep(0.2)
    pytest.fail(f"the start-up checkpoint did not load within {timeout}s:\n{server.output()}")
