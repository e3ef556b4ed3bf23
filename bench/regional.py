"""Benchmark: what regional prompts (Attention mode) cost per UNet step against the plain prompt, side
by side in one run.

    .venv/bin/python bench/regional.py --quick   # tiny SD1 UNet, seconds
    .venv/bin/python bench/regional.py           # SD1.5-shaped UNet (random weights, same compute), 32x32 and 64x64 latents

One CFG step (batch 2): the plain prompt's 77 tokens on both rows, against two columns ("a BREAK b",
154 tokens on the conditional row; the unconditional row plain), where every cross-attention layer
runs once per region and combines the outputs by the region masks (modules/regions/attention.py).
Alternating runs after a warm-up, medians; float32. The goal in issue 30: at most 1.3x.

Prompt mode (two regions found by attention to a word): the regional step plus reading the base
prompt's attention on the target words at every layer (its masks here: random halves).

Latent calc mode, for comparison: a UNet row per region plus the unconditional one (batch 3 for two
regions), mixed afterwards by the region maps; with a LoRA in a region the rows run one at a time
and the LoRA weights are switched between them (not measured here: that cost depends on the LoRA).
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
from _common import alternate, machine_info, markdown_table, write_json  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

from modules.checkpoints.architecture import family_config  # noqa: E402
from modules.device.hardware import physical_cores  # noqa: E402
from modules.regions.args import RegionalRequest  # noqa: E402
from modules.regions.attention import RegionPlan, regional_attention  # noqa: E402
from modules.regions.prompt_mode import PromptRegionPlan, prompt_layout  # noqa: E402
from modules.regions.setup import prepare_regions  # noqa: E402


def build(quick: bool) -> UNet2DConditionModel:
    if quick:
        from tools.make_test_models import tiny_spec

        config = tiny_spec("sd1", "tiny").components["unet"].config
        return UNet2DConditionModel.from_config(config).eval()
    return UNet2DConditionModel(**family_config("sd1", "unet")).eval()


def measure(unet: UNet2DConditionModel, latent: int, repeats: int) -> dict[str, list[float]]:
    torch.manual_seed(0)
    width = unet.config.cross_attention_dim
    x, t = torch.randn(2, unet.config.in_channels, latent, latent), torch.full((2,), 500.0)
    plain = torch.randn(2, 77, width)
    regional = torch.cat([torch.randn(1, 154, width), torch.cat([torch.randn(1, 77, width)] * 2, 1)])
    prepared = prepare_regions(RegionalRequest(active=True), "a BREAK b", "")
    assert prepared is not None
    plan = RegionPlan(prepared.layout)

    def plain_step() -> None:
        with torch.no_grad():
            unet(x, t, encoder_hidden_states=plain)

    def regional_step() -> None:
        with torch.no_grad(), regional_attention(unet, plan), plan.bound((latent, latent), [((0, 77), (77, 154)), None]):
            unet(x, t, encoder_hidden_states=regional)

    rows3 = torch.randn(3, 77, width)
    x3, t3 = torch.cat([x, x[:1]]), torch.full((3,), 500.0)

    def latent_step() -> None:  # Latent mode: a row per region and the negative's (the maps' mixing is negligible)
        with torch.no_grad():
            unet(x3, t3, encoder_hidden_states=rows3)

    three = torch.cat([torch.randn(1, 231, width), torch.cat([torch.randn(1, 77, width)] * 3, 1)])
    found = PromptRegionPlan(prompt_layout(2, "0", False), targets=[[3], [6]], thresholds=[0.5, 0.5], exclusive=False, sdxl=False)
    found.start()
    found.masks, found.phase, found.calls = (torch.rand(1, 2, latent, latent) > 0.5).float(), "ready", 3
    spans = ((0, 77), (77, 154), (154, 231))

    def prompt_mode_step() -> None:
        with torch.no_grad(), regional_attention(unet, found), RegionPlan.bound(found, (latent, latent), [spans, None], [0, 0], [True, False]):
            unet(x, t, encoder_hidden_states=three)

    return alternate({"plain prompt": plain_step, "two regions (columns)": regional_step, "two regions, Latent mode": latent_step,
                      "two regions, Prompt mode": prompt_mode_step}, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny UNet")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=physical_cores())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    unet = build(args.quick)
    rows, report = [], {"machine": machine_info(), "threads": args.threads, "cases": {}}
    for latent in ((8, 16) if args.quick else (32, 64)):
        times = measure(unet, latent, args.repeats)
        medians = {name: statistics.median(values) for name, values in times.items()}
        floor = medians["plain prompt"]
        for name, value in medians.items():
            rows.append([f"{latent * 8}x{latent * 8}", name, f"{value:.3f} s", f"{value / floor:.2f}"])
        report["cases"][str(latent)] = {"medians_s": medians, "runs_s": times}
    label = "tiny SD1 UNet" if args.quick else "SD1.5-shaped UNet (random weights)"
    print(f"Regional prompts, one CFG step (batch 2), {label}, float32, {args.threads} threads\n")
    print(markdown_table(["picture", "contender", "median", "x plain"], rows))
    print(f"\n- {report['machine']}\n- medians of {args.repeats} alternating runs after one warm-up each")
    path = write_json(ROOT / "bench" / "results" / ("regional.quick.json" if args.quick else "regional.json"), report)
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
