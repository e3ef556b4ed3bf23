"""Benchmark: merging two checkpoints, Easel's streaming merger against the plain way (load both
state dicts, merge in memory, save: what A1111's Checkpoint Merger does), side by side.

    .venv/bin/python bench/merge.py            # two full-size SD1.5-shaped fp16 files (~2.1 GB each)
    .venv/bin/python bench/merge.py --quick    # the tiny "medium" test size, seconds

The checkpoints are bench/model_switch.py's (written once with Easel's LDM writer, reused). Each
merge (weighted sum, M = 0.5, fp16 output) runs in a fresh subprocess; its peak RSS (the kernel's
VmHWM after a reset, minus the RSS before the merge) is divided by one checkpoint's file size. The
issue's goal: at most 1.5x one model. The outputs of both are compared tensor for tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _common import GB, PeakMemory, machine_info, markdown_table, write_json  # noqa: E402

RESULT_MARK = "@@RESULT "
GOAL = 1.5


def run_easel(a: Path, b: Path, out: Path) -> None:
    from modules.merger.merge import MergeInput, merge_checkpoints
    from modules.merger.recipe import MergeRecipe

    merge_checkpoints(MergeRecipe("a", "b", multiplier=0.5, save_as_half=True), [MergeInput(a, "a"), MergeInput(b, "b")], out)


def run_plain(a: Path, b: Path, out: Path) -> None:
    from safetensors.torch import load_file, save_file

    theta_a, theta_b = load_file(str(a)), load_file(str(b))
    for key in theta_a:
        if key in theta_b and theta_a[key].is_floating_point():
            theta_a[key] = ((1 - 0.5) * theta_a[key].float() + 0.5 * theta_b[key].float()).half()
    save_file(theta_a, str(out), metadata={"format": "pt"})


def worker(job: dict[str, Any]) -> None:
    import safetensors.torch  # noqa: F401
    import torch

    import modules.merger.merge  # noqa: F401

    (torch.ones(256, 256) * 0.5 + torch.ones(256, 256)).half().float()  # torch's one-time set-up, outside the measurement
    a, b, out = Path(job["a"]), Path(job["b"]), Path(job["out"])
    started = time.perf_counter()
    with PeakMemory() as memory:
        (run_easel if job["mode"] == "easel" else run_plain)(a, b, out)
    print(RESULT_MARK + json.dumps({"seconds": time.perf_counter() - started, "peak_bytes": memory.peak - memory.before, **memory.report()}), flush=True)


def measure(mode: str, a: Path, b: Path, out: Path) -> dict[str, Any]:
    job = json.dumps({"mode": mode, "a": str(a), "b": str(b), "out": str(out)})
    done = subprocess.run([sys.executable, __file__, "--worker", job], capture_output=True, text=True, timeout=3600)
    line = next((line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)), None)
    if line is None:
        raise RuntimeError(f"{mode} failed: {done.stderr[-2000:]}")
    return json.loads(line[len(RESULT_MARK):])


def same_tensors(first: Path, second: Path) -> bool:
    from modules.checkpoints.tensor_files import SafetensorsFile

    x, y = SafetensorsFile(first), SafetensorsFile(second)
    try:
        import torch

        return x.shapes().keys() == y.shapes().keys() and all(torch.equal(x.read(k), y.read(k)) for k in x.shapes())
    finally:
        x.close()
        y.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "easel-bench")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    from model_switch import ensure_models

    a, b = ensure_models(args.cache_dir, args.quick)
    size = a.stat().st_size
    rows, report = [], {"machine": machine_info(), "model_bytes": size, "runs": {}}
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as work:
        outputs = {}
        for mode, label in (("plain", "plain: load both, merge in memory, save"), ("easel", "Easel: streamed tensor by tensor")):
            outputs[mode] = Path(work) / f"{mode}.safetensors"
            result = measure(mode, a, b, outputs[mode])
            report["runs"][mode] = result
            rows.append([label, f"{result['seconds']:.1f} s", f"{result['peak_bytes'] / GB:.2f} GB", f"{result['peak_bytes'] / size:.2f}"])
        report["identical"] = same_tensors(outputs["plain"], outputs["easel"])
    print(f"Merging two checkpoints ({size / GB:.2f} GB each, weighted sum 0.5, fp16 out)\n")
    print(markdown_table(["contender", "time", "peak RSS over start", "x one model"], rows))
    print(f"\n- outputs identical tensor for tensor: {report['identical']}\n- goal: Easel at most {GOAL}x one model\n- {report['machine']}")
    path = write_json(ROOT / "bench" / "results" / ("merge.quick.json" if args.quick else "merge.json"), report)
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
