"""Killing the server (SIGKILL) in the middle of a job and starting it again on the same data
folder: the images saved before are whole and untouched, the history points only at files that
exist (and holds nothing of the killed job), a temporary file a killed save left behind is cleaned
up (one young enough to be another process's save in progress is not), and the next job saves under
a new number. tests/integration/test_kill_while_saving.py kills during the save itself."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.webui_server import API, Server
from tools.make_test_models import write_test_checkpoint

JOB = {"steps": 3, "width": 64, "height": 64, "sampler_name": "Euler"}


def start(root: Path, name: str) -> Server:
    server = Server(name, ["--nowebui", "--models-dir", str(root / "models"), "--data-dir", str(root / "data"),
                           "--ckpt", str(root / "models" / "Stable-diffusion" / "m.safetensors")], root)
    server.wait_ready()
    wait_for(lambda: httpx.get(server.url + API + "/options", timeout=10).json().get("sd_checkpoint_hash"), 180, server)
    return server


def wait_for(condition, timeout: float, server: Server | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail("timed out" + (f":\n{server.output()[-3000:]}" if server else ""))


def rows(data: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(f"file:{data / 'history.sqlite3'}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        return db.execute("SELECT prompt, seed, path FROM history ORDER BY id").fetchall()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(420)
def test_sigkill_during_sampling_then_restart_leaves_history_and_outputs_consistent(tmp_path: Path):
    (tmp_path / "models" / "Stable-diffusion").mkdir(parents=True)
    write_test_checkpoint(tmp_path / "models" / "Stable-diffusion" / "m.safetensors", seed=1)
    data = tmp_path / "data"

    server = start(tmp_path, "before-kill")
    try:
        for seed in (1, 2):
            assert httpx.post(server.url + API + "/txt2img", json={**JOB, "prompt": "kept", "seed": seed}, timeout=120).status_code == 200
        saved = {Path(path): digest(Path(path)) for _, _, path in rows(data)}
        assert len(saved) == 2

        answer: dict = {}
        long_job = threading.Thread(target=lambda: answer.update(r=_post_quietly(server.url, {**JOB, "steps": 400, "prompt": "killed", "seed": 3})))
        long_job.start()
        wait_for(lambda: httpx.get(server.url + API + "/progress", timeout=10).json()["state"]["sampling_step"] >= 2, 120, server)
        server.process.kill()  # SIGKILL: no clean-up of any kind runs
        server.process.wait(timeout=30)
        long_job.join(timeout=60)
        assert isinstance(answer["r"], httpx.TransportError)
    finally:
        if server.process.poll() is None:
            server.stop()

    folder = next(iter(saved)).parent
    stale, fresh = folder / "00007.tmp", folder / "00008.tmp"
    half_png = next(iter(saved)).read_bytes()
    stale.write_bytes(half_png[: len(half_png) // 2])  # what a kill during a save leaves (test_kill_while_saving)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh.write_bytes(b"a save in progress in another Easel on this folder")

    server = start(tmp_path, "after-kill")
    try:
        wait_for(lambda: not stale.exists(), 60, server)  # removed by the start-up clean-up
        assert fresh.exists()
        history = rows(data)
        assert [(prompt, seed) for prompt, seed, _ in history] == [("kept", 1), ("kept", 2)]  # nothing of the killed job
        for path, sha in saved.items():  # whole and untouched
            assert digest(path) == sha
            with Image.open(path) as image:
                image.load()
                assert "Seed: " in image.info["parameters"]
        pngs = sorted(p for p in (data / "outputs").rglob("*.png"))
        assert set(pngs) == set(saved)  # every image file has its row, every row its file

        response = httpx.post(server.url + API + "/txt2img", json={**JOB, "prompt": "after restart", "seed": 4}, timeout=120)
        assert response.status_code == 200
        newest = Path(rows(data)[-1][2])
        assert newest.is_file() and newest not in saved and int(newest.name[:5]) > 8  # a new number, nothing overwritten
        assert all(digest(path) == sha for path, sha in saved.items())
    finally:
        server.stop()


def _post_quietly(url: str, body: dict):
    try:
        return httpx.post(url + API + "/txt2img", json=body, timeout=300)
    except httpx.TransportError as error:
        return error
