"""The /sdapi/v1 model and options routes, on real tiny checkpoints, through the real FastAPI app."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from modules.services import build_services  # noqa: E402
from modules.cmd_args import parse_args  # noqa: E402
from modules.config import Settings  # noqa: E402
from modules.generation.request import Img2ImgRequest  # noqa: E402
from tools.make_test_models import write_test_checkpoint, write_test_vae  # noqa: E402
from tests.dtypes import CPU_DTYPES  # noqa: E402
from webui import create_app  # noqa: E402

API = "/sdapi/v1"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """models/Stable-diffusion/{a, b, sub/c}.safetensors and models/VAE/v.safetensors (tiny SD1)."""
    root = tmp_path_factory.mktemp("models")
    sd = root / "Stable-diffusion"
    (sd / "sub").mkdir(parents=True)
    (root / "VAE").mkdir()
    _, weights_a = write_test_checkpoint(sd / "a.safetensors", seed=0)
    _, weights_b = write_test_checkpoint(sd / "b.safetensors", seed=1)
    shutil.copy(sd / "a.safetensors", sd / "sub" / "c.safetensors")
    vae = write_test_vae(root / "VAE" / "v.safetensors", "sd1", "tiny", seed=7)
    return {"root": root, "sd": sd, "a": weights_a, "b": weights_b, "vae": vae}


def make_client(models: dict, data_dir: Path, *flags: str) -> tuple[TestClient, object]:
    args = parse_args(["--nowebui", "--models-dir", str(models["root"]), "--data-dir", str(data_dir), "--device", "cpu", *flags])
    services = build_services(args)
    return TestClient(create_app(services, args), raise_server_exceptions=False), services


@pytest.fixture(scope="module")
def api(models: dict, tmp_path_factory: pytest.TempPathFactory, dtype_name: str):
    """The app in each CPU dtype: the weights it holds are the file's, cast to that dtype."""
    data_dir = tmp_path_factory.mktemp("data")
    client, services = make_client(models, data_dir, "--dtype", dtype_name)
    assert services.manager.dtype is CPU_DTYPES[dtype_name]
    with client:
        yield client, services, data_dir


def switch(client: TestClient, name: str) -> None:
    response = client.post(f"{API}/options", json={"sd_model_checkpoint": name})
    assert response.status_code == 200, response.text
    assert response.json() is None


def unet_conv_in(services) -> torch.Tensor:
    return services.manager.loaded.unet.state_dict()["conv_in.weight"]


def as_loaded(services, tensor: torch.Tensor) -> torch.Tensor:
    """A file's tensor as the manager holds it: cast to the app's dtype."""
    return tensor.to(services.manager.dtype)


def test_start_loads_first_listed_and_lists_models(api, models):
    client, services, _ = api
    sd = models["sd"]
    a_hash = sha256(sd / "a.safetensors")
    rows = client.get(f"{API}/sd-models").json()
    by_name = {row["model_name"]: row for row in rows}
    assert sorted(by_name) == ["a", "b", "sub_c"]
    assert set(rows[0]) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert by_name["a"]["sha256"] == a_hash  # loaded at start, so hashed
    assert by_name["a"]["hash"] == a_hash[:10]
    assert by_name["a"]["title"] == f"a.safetensors [{a_hash[:10]}]"
    assert by_name["a"]["filename"] == str(sd / "a.safetensors")
    assert by_name["a"]["config"] is None
    if services.registry.known_sha256(services.registry.find_checkpoint("b.safetensors")) is None:
        assert by_name["b"]["hash"] is None and by_name["b"]["title"] == "b.safetensors"
    assert by_name["sub_c"]["title"].startswith("sub/c.safetensors")
    vaes = client.get(f"{API}/sd-vae").json()
    assert vaes == [{"model_name": "v.safetensors", "filename": str(models["root"] / "VAE" / "v.safetensors")}]


def test_options_show_active_model_and_every_setting(api, models):
    client, _, _ = api
    switch(client, "a.safetensors")
    options = client.get(f"{API}/options").json()
    a_hash = sha256(models["sd"] / "a.safetensors")
    assert options["sd_model_checkpoint"] == f"a.safetensors [{a_hash[:10]}]"
    assert options["sd_checkpoint_hash"] == a_hash
    assert options["sd_vae"] == "Automatic"
    assert set(Settings.describe()) <= set(options)


def test_switch_between_checkpoints_changes_weights_and_is_remembered(api, models):
    client, services, data_dir = api
    switch(client, "a.safetensors")
    assert torch.equal(unet_conv_in(services), as_loaded(services, models["a"]["unet"]["conv_in.weight"]))
    switch(client, "b")  # by stem, as A1111 allows
    b_title = f"b.safetensors [{sha256(models['sd'] / 'b.safetensors')[:10]}]"
    assert client.get(f"{API}/options").json()["sd_model_checkpoint"] == b_title
    assert torch.equal(unet_conv_in(services), as_loaded(services, models["b"]["unet"]["conv_in.weight"]))
    assert json.loads((data_dir / "config.json").read_text())["sd_model_checkpoint"] == b_title
    switch(client, b_title)  # the title it shows is accepted back
    assert services.manager.loaded.checkpoint.name == "b.safetensors"


def test_unknown_checkpoint_is_404_json_and_keeps_the_model(api, models):
    client, services, _ = api
    switch(client, "a.safetensors")
    response = client.post(f"{API}/options", json={"sd_model_checkpoint": "no-such-model.safetensors"})
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "ModelNotFoundError"
    assert "no-such-model.safetensors" in body["detail"]
    assert body["body"] == "" and body["errors"] == ""
    assert client.get(f"{API}/options").json()["sd_model_checkpoint"].startswith("a.safetensors [")
    assert torch.equal(unet_conv_in(services), as_loaded(services, models["a"]["unet"]["conv_in.weight"]))


def test_vae_switch_by_name_and_back(api, models):
    client, services, _ = api
    switch(client, "a.safetensors")
    baked = services.manager.loaded.vae_module.state_dict()["decoder.conv_out.weight"].clone()
    assert client.post(f"{API}/options", json={"sd_vae": "v.safetensors"}).status_code == 200
    assert services.manager.loaded.vae.name == "v.safetensors"
    assert client.get(f"{API}/options").json()["sd_vae"] == "v.safetensors"
    decoder = services.manager.loaded.vae_module.state_dict()["decoder.conv_out.weight"]
    assert torch.equal(decoder, as_loaded(services, models["vae"]["decoder.conv_out.weight"]))
    missing = client.post(f"{API}/options", json={"sd_vae": "nope.pt"})
    assert missing.status_code == 404 and missing.json()["error"] == "ModelNotFoundError"
    assert services.manager.loaded.vae.name == "v.safetensors"
    assert client.post(f"{API}/options", json={"sd_vae": "None"}).status_code == 200
    assert services.manager.loaded.vae is None
    assert torch.equal(services.manager.loaded.vae_module.state_dict()["decoder.conv_out.weight"], baked)
    assert client.post(f"{API}/options", json={"sd_vae": "Automatic"}).status_code == 200


def test_other_settings_are_validated_and_saved(api):
    client, services, data_dir = api
    bad = client.post(f"{API}/options", json={"sd_checkpoint_cache": "lots", "sd2_prediction": "epsilon"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "UserError" and "sd_checkpoint_cache" in bad.json()["detail"]
    assert services.settings.sd2_prediction == "auto"  # nothing applied when one value is bad
    out_of_range = client.post(f"{API}/options", json={"sd_checkpoint_cache": 99})
    assert out_of_range.status_code == 400 and "between" in out_of_range.json()["detail"]
    ok = client.post(f"{API}/options", json={"sd_checkpoint_cache": 3, "samples_format": "png"})  # unknown keys ignored
    assert ok.status_code == 200 and ok.json() is None
    assert json.loads((data_dir / "config.json").read_text())["sd_checkpoint_cache"] == 3
    assert services.manager.options.checkpoint_cache_size == 3
    assert client.get(f"{API}/options").json()["sd_checkpoint_cache"] == 3


def test_refresh_finds_new_files(api, models):
    client, _, _ = api
    sd = models["sd"]
    shutil.copy(sd / "b.safetensors", sd / "new.safetensors")
    shutil.copy(models["root"] / "VAE" / "v.safetensors", models["root"] / "VAE" / "w.safetensors")
    try:
        assert "new" not in [row["model_name"] for row in client.get(f"{API}/sd-models").json()]
        response = client.post(f"{API}/refresh-checkpoints")
        assert response.status_code == 200 and response.json() is None
        assert "new" in [row["model_name"] for row in client.get(f"{API}/sd-models").json()]
        assert client.post(f"{API}/refresh-vae").json() is None
        assert "w.safetensors" in [row["model_name"] for row in client.get(f"{API}/sd-vae").json()]
    finally:
        (sd / "new.safetensors").unlink()
        (models["root"] / "VAE" / "w.safetensors").unlink()
        client.post(f"{API}/refresh-checkpoints")


def test_unload_and_reload(api, models):
    client, services, _ = api
    switch(client, "b.safetensors")
    response = client.post(f"{API}/unload-checkpoint")
    assert response.status_code == 200 and response.json() is None
    assert services.manager.loaded is None
    assert client.get(f"{API}/options").json()["sd_checkpoint_hash"] is None
    assert client.post(f"{API}/reload-checkpoint").json() is None
    assert services.manager.loaded.checkpoint.name == "b.safetensors"
    assert torch.equal(unet_conv_in(services), as_loaded(services, models["b"]["unet"]["conv_in.weight"]))
    assert client.post(f"{API}/reload-checkpoint").status_code == 200  # reload while loaded re-reads it


def test_api_auth_guards_every_route(models, tmp_path):
    client, services = make_client(models, tmp_path / "data", "--skip-load", "--api-auth", "alice:s3cret,bob:hunter2")
    with client:
        assert client.get("/openapi.json").status_code == 401  # the route list is behind the password too
        schema = client.get("/openapi.json", auth=("alice", "s3cret")).json()
        routes = [(path, method.upper()) for path, ops in schema["paths"].items() if path.startswith(API) for method in ops]
        assert len(routes) >= 8
        for path, method in routes:
            response = client.request(method, path, json={"sd_model_checkpoint": "a.safetensors"})
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"].startswith("Basic")
            assert response.json()["error"] == "HTTPException"
        assert services.manager.loaded is None  # the unauthenticated POST switched nothing
        assert client.get(f"{API}/sd-models", auth=("alice", "wrong")).status_code == 401
        assert client.get(f"{API}/sd-models", auth=("mallory", "s3cret")).status_code == 401
        assert client.get(f"{API}/sd-models", headers={"Authorization": "Basic !!notbase64"}).status_code == 401
        assert client.get(f"{API}/sd-models/", auth=("alice", "wrong")).status_code in (401, 404)
        ok = client.get(f"{API}/sd-models", auth=("bob", "hunter2"))
        assert ok.status_code == 200 and len(ok.json()) == 3


EVERY_FIELD = {f.name for f in dataclasses.fields(Img2ImgRequest)}


def test_a_pictures_checkpoint_and_vae_are_found_here_or_named(api, models):
    """Restoring a picture looks its checkpoint up by hash, then by name, and its VAE by file name;
    what is not here is named in the "not applied" list (modules/picture_restore.py)."""
    client, services, _ = api
    switch(client, "a.safetensors")
    restorer = services.models.picture_restorer()
    a_hash = sha256(models["sd"] / "a.safetensors")
    v_hash = sha256(models["root"] / "VAE" / "v.safetensors")
    line = "p\nSteps: 2, Sampler: Euler, Seed: 1, Size: 64x64"
    by_hash = restorer.restore(f"{line}, Model hash: {a_hash[:10]}, Model: renamed-on-their-disk", EVERY_FIELD)
    assert by_hash.checkpoint.name == "a.safetensors" and by_hash.not_applied == []
    by_name = restorer.restore(f"{line}, Model hash: 0123456789, Model: a", EVERY_FIELD)
    assert by_name.checkpoint.name == "a.safetensors"
    assert [str(item) for item in by_name.not_applied] == [
        f"Model: a [0123456789] (using a.safetensors, same name but its hash {a_hash[:10]} differs)"]
    services.registry.sha256(services.registry.find_vae("v.safetensors"))  # hashed, as after its first use
    vae = restorer.restore(f"{line}, VAE hash: {v_hash[:10]}, VAE: v.safetensors", EVERY_FIELD)
    assert vae.vae == "v.safetensors" and vae.not_applied == []
    missing = restorer.restore(f"{line}, Model hash: 0123456789, Model: sdxl-unicorn, VAE: sdxl_vae.safetensors", EVERY_FIELD)
    assert (missing.checkpoint, missing.vae) == (None, None)
    assert [str(item) for item in missing.not_applied] == ["Model: sdxl-unicorn [0123456789] (not among your checkpoints)",
                                                           "VAE: sdxl_vae.safetensors (not among your VAEs)"]
