"""Benchmark: the UNet forward on the CPU in bf16 against float32, side by side in one run.

    .venv/bin/python bench/bf16_cpu.py --quick   # tiny SD1 UNet, 64x64, seconds
    .venv/bin/python bench/bf16_cpu.py           # SD1.5-shaped UNet (random weights, same compute), 256x256

One UNet call as a CFG step makes it (batch 2: conditional + unconditional, 77 tokens), float32
weights and a bf16 copy of the same weights, alternating runs after one warm-up each, medians. The
ratio is float32 time / bf16 time (> 1: bf16 is faster). It also reports what the CPU offers
(modules/device/hardware.py: "amx", "avx512_bf16" or "none") and what Easel's automatic dtype choice
picks on it, and how far the bf16 output is from float32's (relative RMS), so the speed is read
beside what it costs in precision. Writes bench/results/bf16_cpu[.quick].json.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402

from _common import alternate, machine_info, markdown_table, seeded_like_real, write_json  # noqa: E402
from modules.device.hardware import auto_cpu_dtype, cpu_bf16_support, physical_cores  # noqa: E402


def unet(quick: bool) -> torch.nn.Module:
    """The UNet with seeded N(0, 0.02) weights (norm weights around 1): the compute of real weights."""
    from modules.checkpoints.architecture import family_config
    from modules.checkpoints.weights import _instantiate
    from tools.make_test_models import tiny_spec

    config = tiny_spec("sd1", "small").components["unet"].config if quick else family_config("sd1", "unet")
    return seeded_like_real(_instantiate("UNet2DConditionModel", config).to_empty(device="cpu"))

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny UNet at 64x64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, help="picture size (default 256; 64 with --quick)")
    parser.add_argument("--threads", type=int, default=physical_cores())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = args.size or (64 if args.quick else 256)
    fp32 = unet(args.quick)
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, size // 8, size // 8, generator=generator)
    t = torch.tensor([500.0, 500.0])
    hidden = torch.randn(2, 77, fp32.config.cross_attention_dim, generator=generator)
    outputs: dict[str, torch.Tensor] = {}

    def run(model: torch.nn.Module, dtype: torch.dtype, name: str):
        def call() -> None:
            with torch.no_grad():
                outputs[name] = model(x.to(dtype), t, encoder_hidden_states=hidden.to(dtype)).sample.float()
        return call

    times = alternate({"float32": run(fp32, torch.float32, "float32"), "bf16": run(bf16, torch.bfloat16, "bf16")}, args.repeats)
    med = {name: statistics.median(values) for name, values in times.items()}
    ref, low = outputs["float32"], outputs["bf16"]
    rel_rms = float(((low - ref).pow(2).mean() / ref.pow(2).mean()).sqrt())
    support = cpu_bf16_support()
    auto = str(auto_cpu_dtype()).removeprefix("torch.")
    label = "tiny SD1 UNet (small test size)" if args.quick else "SD1.5-shaped UNet, random weights"
    ratio = med["float32"] / med["bf16"]
    table = markdown_table(
        ["model", "call", "float32", "bf16", "bf16 speed-up (float32 / bf16)", "bf16 output rel. RMS error", "CPU bf16", "Easel auto dtype"],
        [[label, f"{size}x{size}, batch 2 (CFG), {args.threads} threads", f"{med['float32']:.3f} s", f"{med['bf16']:.3f} s",
          f"{ratio:.2f}", f"{rel_rms:.4f}", support, auto]],
    )
    print(table)
    print(f"\n- {machine_info()}\n- medians of {args.repeats} alternating runs after one warm-up each")
    path = write_json(ROOT / "bench" / "results" / ("bf16_cpu.quick.json" if args.quick else "bf16_cpu.json"), {
        "benchmark": "bf16_cpu", "machine": machine_info(), "size": size, "threads": args.threads, "times": times, "median": med,
        "speedup_bf16": ratio, "bf16_rel_rms": rel_rms, "cpu_bf16": support, "auto_dtype": auto, "table": table,
    })
    print(f"JSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
