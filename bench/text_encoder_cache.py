"""Benchmark: a job's prompt encoding with Easel's text-encoder cache hit against a miss.

    .venv/bin/python bench/text_encoder_cache.py --quick   # tiny SD1 model, seconds
    .venv/bin/python bench/text_encoder_cache.py           # + SD1.5-shaped random weights (run model_switch.py first)

What a txt2img job does before its first step (modules/generation/txt2img.py step 2): the prompt
and the negative prompt turned into per-step conditioning by the model's PromptEncoder. "miss": a
prompt never seen (a counter word makes each one new, so the text encoder runs for both prompts);
"hit": the same prompts again (what a second image, a new seed or an X/Y/Z cell costs). For scale,
"plain": the tokenizer + CLIPTextModel call diffusers' StableDiffusionPipeline.encode_prompt makes
on every call (prompt and negative). Alternating runs after one warm-up each, medians; the ratio
is hit / miss. Writes bench/results/text_encoder_cache[.quick].json.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402

from _common import alternate, machine_info, markdown_table, model_cases, side_by_side_arguments, write_json  # noqa: E402
from modules.checkpoints.hashing import HashCache  # noqa: E402
from modules.checkpoints.manager import ManagerOptions, ModelManager  # noqa: E402
from modules.checkpoints.registry import ModelRegistry  # noqa: E402
from modules.generation.text import build_prompt_encoder, step_conditions  # noqa: E402
from modules.device.hardware import physical_cores  # noqa: E402

PROMPT = "a red circle on a blue background, (highly detailed:1.2), sharp focus"
NEGATIVE = "blurry, lowres"


def load(path: Path, work: Path):
    registry = ModelRegistry([path.parent], [], HashCache(work / "cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, work / "tokenizers", ManagerOptions(checkpoint_cache_size=1))
    return manager.switch_checkpoint(registry.entry_for_path(path))


def measure(model, steps: int, repeats: int) -> dict[str, list[float]]:
    encoder = build_prompt_encoder(model, 1)
    counter = itertools.count()
    tokenizer, text_encoder = model.tokenizers["tokenizer"], model.modules["text_encoder"]

    def job(prompt: str, negative: str) -> None:
        step_conditions(encoder, prompt, steps, allow_and=True)
        step_conditions(encoder, negative, steps, allow_and=False)

    def miss() -> None:
        n = next(counter)
        job(f"{PROMPT}, variant {n}", f"{NEGATIVE}, variant {n}")

    def hit() -> None:
        job(PROMPT, NEGATIVE)

    def plain() -> None:
        with torch.no_grad():
            for text in (PROMPT, NEGATIVE):
                ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
                text_encoder(ids)

    return alternate({"miss": miss, "hit": hit, "plain": plain}, repeats)


def main() -> None:
    args = side_by_side_arguments(__doc__, repeats=9)
    torch.set_num_threads(physical_cores())
    work = args.cache_dir / "text_encoder_cache"
    work.mkdir(parents=True, exist_ok=True)
    rows, raw = [], {}
    for label, path, _size, steps, _repeats in model_cases(args, work):
        model = load(path, work)
        times = measure(model, args.steps, args.repeats)
        med = {name: statistics.median(values) for name, values in times.items()}
        ratio = med["hit"] / med["miss"]
        rows.append([label, f"prompt + negative, {args.steps} steps", f"{med['plain'] * 1000:.2f} ms", f"{med['miss'] * 1000:.2f} ms",
                     f"{med['hit'] * 1000:.3f} ms", f"{ratio:.4f}", f"{med['miss'] / med['plain']:.2f}"])
        raw[label] = {"times": times, "median": med, "hit_over_miss": ratio}
        del model
    table = markdown_table(
        ["model", "job's prompts", "plain CLIP calls", "Easel miss", "Easel hit", "ratio hit/miss", "miss / plain"], rows)
    print(table)
    print(f"\n- {machine_info()}\n- medians of {args.repeats} alternating runs after one warm-up each")
    path = write_json(ROOT / "bench" / "results" / ("text_encoder_cache.quick.json" if args.quick else "text_encoder_cache.json"),
                      {"benchmark": "text_encoder_cache", "machine": machine_info(), "results": raw, "table": table})
    print(f"JSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
