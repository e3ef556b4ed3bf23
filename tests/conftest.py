"""Shared test set-up: offline, repo root importable, tiny real checkpoints built on demand."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.dtypes import CPU_DTYPES  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tokenizer_cache(tmp_path_factory) -> Path:
    """One built tokenizer for the whole session (building it takes a second)."""
    return tmp_path_factory.mktemp("tokenizers")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails the test: Easel must never reach out."""
    import ipaddress
    import socket

    real_connect = socket.socket.connect

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise AssertionError(f"test tried to connect to {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="module", params=sorted(CPU_DTYPES))
def dtype_name(request) -> str:
    """"bf16" and "fp32" in turn (tests/dtypes.py): the `--dtype` spelling of the dtype a module's
    models run in; `CPU_DTYPES[dtype_name]` is the torch dtype."""
    return request.param
