"""Fault tests: a real tiny model on the CPU behind the real job queue and generation service, with
an outputs folder and a history database in tmp_path. Faults are brought in from outside the
product code: a forward hook on the real UNet, a read-only or impossible outputs folder, a
truncated checkpoint file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness.rig import make_rig


@pytest.fixture
def rig(tmp_path: Path, tokenizer_cache: Path):
    rig = make_rig(tmp_path, tokenizer_cache)
    yield rig
    rig.queue.close()
    rig.history.close()
