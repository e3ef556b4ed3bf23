"""Killing Easel while it saves loses at most the image being written: every file under a real name
is whole, and every history row points at a file that exists.

A child process saves images (OutputWriter, then HistoryStore.record, the order the generation
service uses) as fast as it can; the test SIGKILLs it at several moments, then checks the folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from PIL import Image

from modules.history import HistoryStore

SAVER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pathlib import Path
    from PIL import Image
    from modules.history import HistoryEntry, HistoryStore
    from modules.outputs import OutputWriter

    root = Path(sys.argv[1])
    writer = OutputWriter(root / "outputs")
    history = HistoryStore(root / "history.sqlite3", outputs_root=root / "outputs")
    rng = np.random.default_rng(int(sys.argv[2]))
    for i in range(100000):
        image = Image.fromarray(rng.integers(0, 256, (384, 384, 3), dtype=np.uint8))  # noise: slow to encode
        text = f"kill test {i}\\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: {i}, Size: 384x384"
        path = writer.save(image, text, seed=i, prompt="kill test", model_name="m")
        history.record(HistoryEntry("txt2img", time.time(), 0.1, "kill test", "", text, i, "m", None, str(path), 384, 384, "Euler"))
        print(i, flush=True)
    """
)


def test_sigkill_during_saves_leaves_whole_files_and_no_dangling_rows(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    kills = 0
    for round_number, wait_lines in enumerate((3, 7, 12, 5)):
        child = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(tmp_path), str(round_number)], cwd=repo, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )
        try:
            for _ in range(wait_lines):
                assert child.stdout.readline(), "the saver died on its own"
            time.sleep(0.003 * round_number)  # land the kill at different points of a save
            child.send_signal(signal.SIGKILL)
            kills += 1
        finally:
            child.wait(timeout=30)
            child.stdout.close()

    files = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    images = [p for p in files if p.suffix == ".png"]
    assert len(images) >= 3 + 7 + 12 + 5
    for path in images:  # whole files only under real names: every one decodes completely
        with Image.open(path) as image:
            image.load()
            assert image.size == (384, 384) and image.info["parameters"].startswith("kill test")
    leftovers = [p for p in files if p.suffix != ".png"]
    assert all(p.suffix == ".tmp" for p in leftovers)  # at most the claimed temp names of the killed saves
    assert len(leftovers) <= kills

    history = HistoryStore(tmp_path / "history.sqlite3", outputs_root=tmp_path / "outputs")
    rows = history.search(limit=10_000)
    assert len(rows) >= 3 + 7 + 12 + 5 - kills
    assert all(Path(row.path).is_file() for row in rows)
    history.close()
