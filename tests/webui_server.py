"""A real `python webui.py` process for tests: free port, logs to files, wait until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
API = "/sdapi/v1"
START_TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}


class Server:
    def __init__(self, name: str, flags: list[str], log_dir: Path):
        self.port = free_port()
        self.log = log_dir / f"{name}.log"
        self.stderr = log_dir / f"{name}.stderr"
        self.url = f"http://127.0.0.1:{self.port}"
        with open(self.log, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "webui.py"), "--port", str(self.port), "--device", "cpu", *flags],
                cwd=REPO, env=child_env(), stdout=out, stderr=err,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def wait_ready(self, path: str = API + "/sd-models") -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                httpx.get(self.url + path, timeout=2)
                return  # any answer (401 included) means it serves
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail(f"server did not answer within {START_TIMEOUT}s:\n{self.output()}")

    def listening_addresses(self) -> set[tuple[str, int]]:
        connections = psutil.Process(self.process.pid).net_connections(kind="inet")
        return {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
