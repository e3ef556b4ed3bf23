"""Start-up time: from `python webui.py` to the page answering, and to the model being loaded.

    .venv/bin/python bench/startup.py [--runs 3] [--size tiny|medium]

Each run starts a fresh `webui.py` process (bytecode caching ON, as a user has it; one warm-up run
first writes the .pyc files) on a temporary models dir holding one test checkpoint, and polls:
- "page": GET / answers 200 (the Gradio page, served before any checkpoint is loaded);
- "model": GET /sdapi/v1/options reports a checkpoint hash (the background load finished).
For scale, the same table shows what the unavoidable imports alone cost in a fresh interpreter
(`import gradio`, `import torch`, `import diffusers`): ratio = Easel time / that floor.
Goal (issue 4): page under 5 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, RESULTS, machine_info, markdown_table, write_json  # noqa: E402
from tests.webui_server import free_port  # noqa: E402


def env() -> dict[str, str]:
    out = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    out.pop("PYTHONDONTWRITEBYTECODE", None)  # users have bytecode caching; the shell here turns it off
    return out


def import_time(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], env=env(), check=True, cwd=ROOT)
    return time.perf_counter() - started


def one_start(models: Path, data: Path, timeout: float = 180.0) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "webui.py", "--api", "--port", str(port), "--device", "cpu", "--models-dir", str(models), "--data-dir", str(data)],
        cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    times: dict[str, float] = {}
    try:
        with httpx.Client(timeout=2) as client:
            while time.perf_counter() - started < timeout and "model" not in times:
                if process.poll() is not None:
                    raise SystemExit(f"webui.py exited with {process.returncode}")
                try:
                    if "page" not in times and client.get(url + "/").status_code == 200:
                        times["page"] = time.perf_counter() - started
                    if "page" in times and client.get(url + "/sdapi/v1/options").json().get("sd_checkpoint_hash"):
                        times["model"] = time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
    finally:
        process.terminate()
        process.wait(timeout=20)
    if "model" not in times:
        raise SystemExit(f"webui.py did not finish starting within {timeout} s: {times}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="tiny", choices=("tiny", "small", "medium"))
    args = parser.parse_args()
    from tools.make_test_models import write_test_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        (models / "Stable-diffusion").mkdir(parents=True)
        write_test_checkpoint(models / "Stable-diffusion" / "bench.safetensors", "sd1", args.size, seed=0)
        one_start(models, Path(tmp) / "data-warmup")  # writes .pyc files and the tokenizer cache
        runs = [one_start(models, Path(tmp) / f"data-{i}") for i in range(args.runs)]
        floors = {
            "import gradio": import_time("import gradio"),
            "import torch": import_time("import torch"),
            "import gradio, torch, diffusers": import_time("import gradio, torch, diffusers; diffusers.UNet2DConditionModel"),
        }
    page = statistics.median(r["page"] for r in runs)
    model = statistics.median(r["model"] for r in runs)
    floor = floors["import gradio, torch, diffusers"]
    rows = [
        ["webui.py → page answers (median)", f"{page:.2f}", f"{page / floor:.2f}", "goal < 5 s"],
        ["webui.py → model loaded (median)", f"{model:.2f}", f"{model / floor:.2f}", "loads in the background"],
        *[[name + " (fresh interpreter)", f"{t:.2f}", f"{t / floor:.2f}", "the floor"] for name, t in floors.items()],
    ]
    print(markdown_table(["what", "seconds", "× imports floor", "note"], rows))
    print("runs:", ", ".join(f"page {r['page']:.2f} s / model {r['model']:.2f} s" for r in runs))
    path = write_json(RESULTS / "startup.json", {"machine": machine_info(), "runs": runs, "floors": floors, "size": args.size})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
