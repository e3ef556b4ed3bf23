"""Benchmark: what one ControlNet unit costs per sampling step, Easel against the plain diffusers way,
side by side in one run.

    .venv/bin/python bench/controlnet.py --quick   # tiny SD1 UNet, 64x64, seconds
    .venv/bin/python bench/controlnet.py           # SD1.5-shaped UNet + ControlNet (random weights, same compute), 256x256

One CFG step (batch 2: conditional + unconditional, 77 tokens), float32, alternating runs after one
warm-up each, medians:
- UNet alone (no unit): the floor;
- diffusers' way: `ControlNetModel(...)` then `UNet2DConditionModel(..., down_block_additional_residuals=...,
  mid_block_additional_residual=...)`, as StableDiffusionControlNetPipeline's step does;
- Easel: `UNetEps` with a one-unit `ControlPlan` (Balanced, weight 1): the extension's rules around
  the same two calls.
Ratios are each against the UNet alone and Easel against diffusers. Memory: resident set size after
the UNet is built, and after the ControlNet is built and held (what the ControlNet cache costs).
Writes bench/results/controlnet[.quick].json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402

from _common import alternate, machine_info, markdown_table, rss, seeded_like_real, write_json  # noqa: E402
from modules.device.hardware import physical_cores  # noqa: E402


def build(quick: bool) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, float]]:
    from diffusers import ControlNetModel

    from modules.checkpoints.architecture import family_config
    from modules.checkpoints.weights import _instantiate
    from tools.make_test_models import tiny_spec

    memory = {"start": rss() / 2**20}
    config = tiny_spec("sd1", "small").components["unet"].config if quick else family_config("sd1", "unet")
    unet = seeded_like_real(_instantiate("UNet2DConditionModel", config).to_empty(device="cpu"))
    memory["unet"] = rss() / 2**20
    control = seeded_like_real(ControlNetModel.from_unet(unet))
    memory["controlnet"] = rss() / 2**20
    return unet, control, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny UNet at 64x64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, help="picture size (default 256; 64 with --quick)")
    parser.add_argument("--threads", type=int, default=physical_cores())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = args.size or (64 if args.quick else 256)

    from modules.controlnet.apply import ControlPlan, PreparedUnit
    from modules.generation.guidance import UNetEps

    unet, control, memory = build(args.quick)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, size // 8, size // 8, generator=generator)
    t = torch.tensor([500.0, 500.0])
    hidden = torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator)
    hint = torch.rand(1, 3, size, size, generator=generator)
    easel = UNetEps(unet, control=ControlPlan([PreparedUnit(control, hint, 1.0, "Balanced", 0.0, 1.0)], 20, lambda: 0))
    plain = UNetEps(unet)
    outputs: dict[str, torch.Tensor] = {}

    def unet_alone() -> None:
        with torch.no_grad():
            outputs["unet"] = plain(x, t, hidden)

    def diffusers_way() -> None:
        with torch.no_grad():
            down, mid = control(x, t, encoder_hidden_states=hidden, controlnet_cond=hint.expand(2, -1, -1, -1), conditioning_scale=1.0,
                                return_dict=False)
            outputs["diffusers"] = unet(x, t, encoder_hidden_states=hidden, down_block_additional_residuals=down,
                                        mid_block_additional_residual=mid).sample

    def easel_way() -> None:
        with torch.no_grad():
            outputs["easel"] = easel(x, t, hidden, uncond_rows=torch.tensor([False, True]))

    times = alternate({"UNet alone": unet_alone, "diffusers + ControlNet": diffusers_way, "Easel + 1 unit": easel_way}, args.repeats)
    med = {name: statistics.median(values) for name, values in times.items()}
    same = float((outputs["easel"] - outputs["diffusers"]).abs().max())
    base = med["UNet alone"]
    label = "tiny SD1 UNet (small test size)" if args.quick else "SD1.5-shaped UNet + ControlNet, random weights"
    rows = [[name, f"{seconds:.3f} s", f"{seconds / base:.2f}", f"{seconds / med['diffusers + ControlNet']:.2f}"] for name, seconds in med.items()]
    table = markdown_table(["one CFG step", "median", "x UNet alone", "x diffusers + ControlNet"], rows)
    memory_table = markdown_table(
        ["resident memory", "MiB"],
        [["after building the UNet", f"{memory['unet']:.0f}"], ["after building and holding the ControlNet", f"{memory['controlnet']:.0f}"],
         ["the ControlNet held (difference)", f"{memory['controlnet'] - memory['unet']:.0f}"]],
    )
    print(f"{label}, {size}x{size}, batch 2 (CFG), float32, {args.threads} threads\n")
    print(table)
    print()
    print(memory_table)
    print(f"\n- Easel vs diffusers output max abs difference: {same:.2e} (the same two calls, Balanced weight 1)")
    print(f"- {machine_info()}\n- medians of {args.repeats} alternating runs after one warm-up each")
    path = write_json(ROOT / "bench" / "results" / ("controlnet.quick.json" if args.quick else "controlnet.json"), {
        "benchmark": "controlnet", "machine": machine_info(), "size": size, "threads": args.threads, "times": times, "median": med,
        "memory_mib": memory, "max_abs_difference": same, "table": table, "memory_table": memory_table,
    })
    print(f"JSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
