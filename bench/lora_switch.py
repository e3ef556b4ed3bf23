"""Benchmark: applying and removing a LoRA against reloading the checkpoint from disk.

    .venv/bin/python bench/lora_switch.py --quick   # the "medium" test size, about a minute
    .venv/bin/python bench/lora_switch.py           # SD1.5-shaped random checkpoint (bench/model_switch.py's)

A kohya-format LoRA (rank 32, or 16 with --quick; every attention projection, proj_in/out and
feed-forward layer of the UNet, every q/k/v/out_proj and fc1/fc2 of the text encoder) is written for
the model. In one process, alternating so drift on a shared machine hits all alike:

- reload: `ModelManager.reload()`, reading the checkpoint again from disk (page cache warm: the file
  is read once before timing), which is what undoing a patch costs without a patcher;
- apply + remove, cold: `LoraPatcher.apply` with an empty delta cache (read the LoRA file, compute
  up @ down, patch) then `restore()`;
- apply + remove, cached: the same with the deltas cached (the usual case: the same LoRA again).

After the runs every weight is compared with a copy taken before: removal must be bitwise exact.
Goal: apply + remove under 10% of a reload. Writes bench/results/lora_switch[.quick].json.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402

from _common import SD15_SHAPED, alternate, machine_info, markdown_table, write_json  # noqa: E402
from modules.checkpoints.hashing import HashCache  # noqa: E402
from modules.checkpoints.manager import ManagerOptions, ModelManager  # noqa: E402
from modules.checkpoints.registry import ModelRegistry  # noqa: E402
from modules.checkpoints.tensor_files import write_safetensors  # noqa: E402
from modules.lora.files import LoraLibrary  # noqa: E402
from modules.lora.patch import LoraPatcher, LoraUse  # noqa: E402
from tools.make_test_loras import UNET_MLP_TARGETS, UNET_TARGETS, make_lora_tensors  # noqa: E402

GOAL = 0.10


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the small 'medium' test model instead of SD1.5-shaped")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rank", type=int, help="LoRA rank (default 32; 16 with --quick)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16"], help="model dtype (default: fp16 on GPU, fp32 on CPU)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch CPU threads (1 is steadier on a machine shared with other work)")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    return parser.parse_args()


def checkpoint(args: argparse.Namespace) -> tuple[Path, object]:
    """The checkpoint to load and its spec: written on first use (--quick), else bench/model_switch.py's."""
    if args.quick:
        from tools.make_test_models import tiny_spec, write_test_checkpoint

        path = args.cache_dir / "lora" / "models" / "medium-sd1.safetensors"
        if not path.exists():
            write_test_checkpoint(path, "sd1", "medium", seed=0, dtype=torch.float16)
        return path, tiny_spec("sd1", "medium")
    from model_switch import random_fp16_weights, sd15_spec

    from modules.checkpoints.weights import write_ldm_checkpoint

    path = args.cache_dir / SD15_SHAPED
    if not path.exists():  # bench/model_switch.py writes it (with a twin); one is enough here
        print(f"writing {path} (about 2 GB) ...", file=sys.stderr, flush=True)
        write_ldm_checkpoint(path, sd15_spec(), random_fp16_weights(sd15_spec(), 1), dtype=torch.float16)
    return path, sd15_spec()


def write_lora(folder: Path, spec, rank: int) -> Path:
    path = folder / f"bench-rank{rank}.safetensors"
    if not path.exists():
        tensors, _ = make_lora_tensors(spec, seed=0, rank=rank, alpha=rank, components=("unet", "text_encoder"),
                                       unet_targets=UNET_TARGETS + UNET_MLP_TARGETS, scale=0.02, with_expected=False)
        write_safetensors(path, sorted(tensors.items()), {"ss_network_dim": str(rank)})
    return path


def fingerprint(modules: dict[str, torch.nn.Module]) -> dict[str, str]:
    """sha256 of every parameter's bytes: equal fingerprints mean bitwise-equal weights, without
    holding a second copy of a full-size model in memory."""
    return {f"{c}.{k}": hashlib.sha256(v.detach().reshape(-1).cpu().view(torch.uint8).numpy()).hexdigest()
            for c, m in modules.items() for k, v in m.named_parameters()}


def main() -> None:
    args = arguments()
    torch.set_num_threads(args.threads)
    rank = args.rank or (16 if args.quick else 32)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[args.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    path, spec = checkpoint(args)
    lora_dir = args.cache_dir / "lora" / ("loras-quick" if args.quick else "loras")
    lora_path = write_lora(lora_dir, spec, rank)

    registry = ModelRegistry([path.parent], [], HashCache(args.cache_dir / "lora" / "hashes.json"))
    manager = ModelManager(registry, device, dtype, args.cache_dir / "tokenizers", ManagerOptions(checkpoint_cache_size=1))
    path.read_bytes()  # page cache warm for every reload alike
    manager.switch_checkpoint(path.stem)
    library = LoraLibrary(lora_dir)
    library.refresh()
    use = [LoraUse(library.find(lora_path.stem), 0.8)]
    patcher = LoraPatcher()
    before = fingerprint(manager.loaded.modules)
    parameters = {"n": 0}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def reload() -> None:
        manager.reload()
        sync()

    def cold() -> None:
        patcher.cache.clear()
        parameters["n"] = patcher.apply(manager.loaded, use).parameters
        patcher.restore(manager.loaded)
        sync()

    def cached() -> None:
        patcher.apply(manager.loaded, use)
        patcher.restore(manager.loaded)
        sync()

    times = alternate({"reload": reload, "apply + remove, cold": cold, "apply + remove, cached": cached}, args.repeats)
    # Split the cached case into its halves (apply; remove) for the table.
    halves: dict[str, list[float]] = {"apply (cached)": [], "remove": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        patcher.apply(manager.loaded, use)
        sync()
        halves["apply (cached)"].append(time.perf_counter() - start)
        start = time.perf_counter()
        patcher.restore(manager.loaded)
        sync()
        halves["remove"].append(time.perf_counter() - start)
    times.update(halves)
    exact = fingerprint(manager.loaded.modules) == before

    med = {name: statistics.median(values) for name, values in times.items()}
    base = med["reload"]
    rows = []
    for name, seconds in med.items():
        ratio = seconds / base
        verdict = "" if name == "reload" else ("yes" if ratio < GOAL else "no")
        rows.append([name, f"{seconds * 1000:.1f} ms", f"{ratio:.3f}", verdict])
    label = "medium test SD1 (quick)" if args.quick else "SD1.5-shaped random weights"
    table = markdown_table(["case", "median", "ratio to reload", f"under {GOAL:.0%} of a reload"], rows)
    lora_mb = lora_path.stat().st_size / 1e6
    notes = (f"- {label}, {device.type} {str(dtype).replace('torch.', '')}; LoRA rank {rank}, {lora_mb:.1f} MB, "
             f"{parameters['n']} weights patched; {args.threads} CPU threads; delta cache {patcher.cache.nbytes / 1e6:.0f} MB; "
             f"weights bitwise equal after all removals: {'yes' if exact else 'NO'}\n"
             f"- {machine_info()}\n- medians of {args.repeats} alternating runs after one warm-up each")
    print(table)
    print("\n" + notes)
    out = write_json(ROOT / "bench" / "results" / ("lora_switch.quick.json" if args.quick else "lora_switch.json"), {
        "benchmark": "lora_switch", "machine": machine_info(), "model": label, "device": str(device), "dtype": str(dtype),
        "rank": rank, "lora_bytes": lora_path.stat().st_size, "weights_patched": parameters["n"], "exact": exact,
        "times": times, "median": med, "table": table,
    })
    print(f"JSON: {out.relative_to(ROOT)}")
    if not exact:
        raise SystemExit("weights differ after removal")


if __name__ == "__main__":
    main()
