"""Benchmark: loading and switching checkpoints, Easel's ModelManager against plain diffusers.

    .venv/bin/python bench/model_switch.py            # two full-size SD1.5-shaped files (~2.1 GB each)
    .venv/bin/python bench/model_switch.py --quick    # the tiny "medium" test size, under a minute

Two SD1.5-shaped checkpoints with random fp16 weights are written as real A1111 single files with
Easel's own LDM writer (kept in --cache-dir and reused). Every load then runs in a fresh subprocess,
so the page cache is the only state runs share; each file is read once before timing and its page-cache
residency is recorded before every run, so both contenders start equally warm.

- diffusers: `StableDiffusionPipeline.from_single_file(path, config=<shipped sd1 config folder>,
  local_files_only=True, torch_dtype=...)`. The shipped folder has no tokenizer vocabulary, so the
  tokenizer is passed in (`load_clip_tokenizer`, timed in both contenders: Easel loads it inside
  `switch_checkpoint` too) and `safety_checker=None`. If that call fails offline, the error is reported
  and the closest plain-diffusers equivalent runs instead: `UNet2DConditionModel.from_single_file`,
  `AutoencoderKL.from_single_file` (config folder + subfolder) and `CLIPTextModel` through
  `create_diffusers_clip_model_from_ldm` (`--diffusers components` forces that path).
- Easel: `ModelManager.switch_checkpoint` on CPU, first with an empty hash cache (sha256 computed),
  then in a new process with the hash cached; then float16; then in one process A, B and 10 switches
  A<->B served from the RAM cache.
- Memory: peak RSS during the load minus RSS before it (the kernel's VmHWM after a reset, with a
  10 ms sampler beside it), divided by the file's tensor bytes and by the loaded model's tensor bytes.
- After each cold load, one pass over every weight (as a first generation would read them) is timed:
  diffusers leaves an fp16 file's tensors memory-mapped and unread, so its load defers that reading.
Library imports happen before any clock starts. Writes bench/results/model_switch.json and records the
commit measured (the working tree may hold uncommitted changes: the notes say so).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _common import (  # noqa: E402
    GB, RESULTS, PeakMemory, describe_code, git_state, machine_info, markdown_table, page_cache_fraction,
    read_through, rss, rss_parts, safetensors_tensor_bytes, tensor_bytes, write_json,
)

SHIPPED_SD1_CONFIG = ROOT / "modules/checkpoints/family_configs/sd1"
RESULT_MARK = "@@RESULT "
SWITCH_GOAL_S = 0.5
PEAK_GOAL = 1.3


def log(message: str) -> None:
    print(f"[model_switch] {message}", file=sys.stderr, flush=True)


# 1. checkpoints ---------------------------------------------------------------------------------


def sd15_spec():
    """The SD1.5 architecture, from the shipped SD1 family configs."""
    from modules.checkpoints.architecture import FAMILIES, ComponentSpec, ModelSpec, family_config
    from modules.checkpoints.ldm_keys import TEXT_ENCODER_PREFIXES
    from modules.checkpoints.weights import normalize_spec

    components = {
        "unet": ComponentSpec("UNet2DConditionModel", family_config("sd1", "unet")),
        "text_encoder": ComponentSpec("CLIPTextModel", family_config("sd1", "text_encoder")),
        "vae": ComponentSpec("AutoencoderKL", family_config("sd1", "vae")),
    }
    scheduler = family_config("sd1", "scheduler")
    return normalize_spec(ModelSpec(
        family=FAMILIES["sd1"], components=components, prediction_type=scheduler["prediction_type"],
        scheduler_config=scheduler, text_sources=dict(TEXT_ENCODER_PREFIXES["sd1"]),
    ))


def random_fp16_weights(spec, seed: int) -> dict[str, dict[str, Any]]:
    """Seeded N(0, 0.02) fp16 tensors for every parameter; norm weights around 1."""
    import torch

    from modules.checkpoints.weights import _instantiate

    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, component in spec.components.items():
        shapes = {k: tuple(v.shape) for k, v in _instantiate(component.class_name, component.config).state_dict().items()}
        tensors = {}
        for key, shape in shapes.items():
            t = torch.randn(shape, generator=generator, dtype=torch.float16).mul_(0.02)
            if len(shape) == 1 and "norm" in key and key.endswith("weight"):
                t.add_(1.0)
            tensors[key] = t
        out[name] = tensors
    return out


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".bench.json")


def _identity(path: Path, kind: str) -> dict[str, Any]:
    stat = path.stat()
    return {"kind": kind, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _reusable(path: Path, kind: str) -> bool:
    """True if `path` is the file an earlier run wrote (its sidecar matches): no torch import needed."""
    try:
        return json.loads(_sidecar(path).read_text()) == _identity(path, kind)
    except (OSError, ValueError):
        return False


def ensure_models(folder: Path, quick: bool) -> list[Path]:
    """Two checkpoints (seeds 1 and 2) and, for --quick, their diffusers config folder; reused if present."""
    stem = "bench-sd1-medium" if quick else "bench-sd15"
    paths = [folder / "models" / f"{stem}-{letter}.safetensors" for letter in "ab"]
    config = folder / "diffusers-config"
    kinds = [f"{stem} seed {seed} fp16" for seed in (1, 2)]
    missing = [(seed, p, k) for seed, (p, k) in enumerate(zip(paths, kinds), start=1) if not _reusable(p, k)]
    if not missing and (not quick or (config / "model_index.json").is_file()):
        log(f"reusing {', '.join(str(p) for p in paths)}")
        return paths
    import torch

    from modules.checkpoints.weights import write_ldm_checkpoint
    from tools.make_test_models import tiny_spec, write_test_checkpoint

    spec = tiny_spec("sd1", "medium") if quick else sd15_spec()
    for seed, path, kind in missing:
        log(f"writing {path} ...")
        start = time.perf_counter()
        _sidecar(path).unlink(missing_ok=True)
        if quick:
            write_test_checkpoint(path, "sd1", "medium", seed=seed, dtype=torch.float16)
        else:
            weights = random_fp16_weights(spec, seed)
            write_ldm_checkpoint(path, spec, weights, dtype=torch.float16)
            del weights
        _sidecar(path).write_text(json.dumps(_identity(path, kind)))
        log(f"  {path.stat().st_size / GB:.2f} GB in {time.perf_counter() - start:.1f} s")
    if quick:
        write_config_folder(config, spec)
    return paths


def write_config_folder(target: Path, spec) -> None:
    """A weightless diffusers config folder for the tiny model (the shipped one describes full SD1.5)."""
    staging = target.with_name(target.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(SHIPPED_SD1_CONFIG, staging)
    for name, component in spec.components.items():
        config = dict(component.config)
        if component.class_name.startswith("CLIP"):
            config.update(architectures=[component.class_name], model_type="clip_text_model")
        else:
            config["_class_name"] = component.class_name
        (staging / name / "config.json").write_text(json.dumps(config, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


# 2. one measurement per subprocess --------------------------------------------------------------


def fingerprint(modules: dict[str, Any]) -> dict[str, float]:
    """A cheap checksum per component (five tensors), to show both contenders loaded the same weights."""
    out = {}
    for name in sorted(modules):
        state = modules[name].state_dict()
        keys = sorted(state)
        picked = keys[:2] + [keys[len(keys) // 2]] + keys[-2:]
        out[name] = round(sum(state[k].double().sum().item() for k in picked), 6)
    return out


def first_pass(modules: dict[str, Any], memory: PeakMemory) -> dict[str, Any]:
    """Reads every weight once after the load (what the first generation does), timed; RSS after it.

    A loader may leave tensors memory-mapped and unread (diffusers with a file of the model's dtype):
    this pass is where such a load pays for reading, and where the file's pages enter its RSS.
    """
    import torch

    start = time.perf_counter()
    with torch.no_grad():
        for module in modules.values():
            for t in list(module.parameters()) + list(module.buffers()):
                t.sum()
    seconds = time.perf_counter() - start
    resident, anon = rss_parts()
    return {"first_pass_s": seconds, "rss_added_after_pass": resident - memory.before,
            "anon_added_after_pass": anon - memory.before_anon}


def _diffusers_components(job: dict[str, Any], dtype) -> dict[str, Any]:
    """Plain diffusers without the pipeline class: one from_single_file per component."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm, load_single_file_checkpoint
    from transformers import CLIPTextModel

    common = dict(config=job["config"], local_files_only=True, torch_dtype=dtype)
    unet = UNet2DConditionModel.from_single_file(job["path"], subfolder="unet", **common)
    vae = AutoencoderKL.from_single_file(job["path"], subfolder="vae", **common)
    checkpoint = load_single_file_checkpoint(job["path"], local_files_only=True)
    text_encoder = create_diffusers_clip_model_from_ldm(CLIPTextModel, checkpoint, subfolder="text_encoder", **common)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder}


def run_diffusers(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    from diffusers import StableDiffusionPipeline

    from modules.checkpoints.tokenizer import load_clip_tokenizer

    dtype = {"fp32": torch.float32, "fp16": torch.float16}[job["dtype"]]
    with PeakMemory() as memory:
        start = time.perf_counter()
        tokenizer = load_clip_tokenizer(Path(job["tokenizer_cache"]))
        if job["method"] == "pipeline":
            pipe = StableDiffusionPipeline.from_single_file(
                job["path"], config=job["config"], local_files_only=True, torch_dtype=dtype,
                tokenizer=tokenizer, safety_checker=None,
            )
            modules = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder}
        else:
            modules = _diffusers_components(job, dtype)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "memory": memory.report(), "model_bytes": tensor_bytes(modules.values()),
            **first_pass(modules, memory), "fingerprint": fingerprint(modules), "tokenizer": type(tokenizer).__name__}


def _manager(job: dict[str, Any]):
    import torch

    from modules.checkpoints.hashing import HashCache
    from modules.checkpoints.manager import ManagerOptions, ModelManager
    from modules.checkpoints.registry import ModelRegistry

    registry = ModelRegistry([Path(job["models_dir"])], [], HashCache(Path(job["hash_cache"])))
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[job["dtype"]]
    options = ManagerOptions(checkpoint_cache_size=2)
    return ModelManager(registry, torch.device("cpu"), dtype, Path(job["tokenizer_cache"]), options)


def _easel_load(manager, name: str, then_first_pass: bool = False) -> tuple[Any, dict[str, Any]]:
    with PeakMemory() as memory:
        start = time.perf_counter()
        loaded = manager.switch_checkpoint(name)
        seconds = time.perf_counter() - start
    result = {"seconds": seconds, "timings": dict(loaded.timings), "memory": memory.report(),
              "model_bytes": tensor_bytes(loaded.modules.values()), "weightset_bytes": loaded.weights.nbytes}
    if then_first_pass:
        result.update(first_pass(loaded.modules, memory))
    return loaded, {**result, "fingerprint": fingerprint(loaded.modules)}


def run_easel(job: dict[str, Any]) -> dict[str, Any]:
    return _easel_load(_manager(job), job["names"][0], then_first_pass=True)[1]


def run_easel_switch(job: dict[str, Any]) -> dict[str, Any]:
    manager = _manager(job)
    a, b = job["names"]
    loaded, load_a = _easel_load(manager, a)
    unet = loaded.unet
    loaded, load_b = _easel_load(manager, b)
    expected = {a: load_a["fingerprint"], b: load_b["fingerprint"]}
    holding_both = rss()
    switches = []
    with PeakMemory() as memory:
        for i in range(job["switches"]):
            name = a if i % 2 == 0 else b
            start = time.perf_counter()
            loaded = manager.switch_checkpoint(name)
            seconds = time.perf_counter() - start
            switches.append({"to": name, "seconds": seconds, "from_ram_cache": "read" not in loaded.timings})
    return {
        "loads": [load_a, load_b], "switches": switches, "switch_memory": memory.report(),
        "rss_holding_both": holding_both, "modules_reused": loaded.unet is unet,
        "weights_after_switches_correct": fingerprint(loaded.modules) == expected[loaded.checkpoint.stem],
        "cached": manager.cached_checkpoints(),
    }


WORKERS = {"diffusers": run_diffusers, "easel": run_easel, "easel-switch": run_easel_switch}


def worker(job: dict[str, Any]) -> None:
    """Runs one measurement in this (fresh) process and prints its result as one JSON line."""
    import torch

    torch.set_num_threads(job["threads"])
    # Imports happen before any clock starts; each contender imports the classes it builds.
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401

    if job["mode"] == "diffusers":
        from diffusers import StableDiffusionPipeline  # noqa: F401
        from diffusers.loaders import single_file_utils  # noqa: F401
    else:
        import modules.checkpoints.manager  # noqa: F401

    diffusers_logging.disable_progress_bar()
    result = {"rss_at_start": rss(), "torch_threads": torch.get_num_threads()}
    try:
        result.update(WORKERS[job["mode"]](job))
    except Exception as error:  # a benchmark reports a failed contender instead of dying
        result["error"] = f"{type(error).__name__}: {error}"
    print(RESULT_MARK + json.dumps(result), flush=True)


# 3. orchestration -------------------------------------------------------------------------------


class Runner:
    """Starts one fresh subprocess per measurement, each after checking the files are in the page cache."""

    def __init__(self, threads: int, timeout: float):
        self.threads = threads
        self.timeout = timeout

    @staticmethod
    def warm(path: Path) -> dict[str, float]:
        before = page_cache_fraction(path)
        seconds = read_through(path)
        return {"cached_before": before, "read_s": seconds, "cached_after": page_cache_fraction(path)}

    def run(self, label: str, job: dict[str, Any], files: list[Path]) -> dict[str, Any]:
        residency = {p.name: page_cache_fraction(p) for p in files}
        rewarmed = [p.name for p in files if residency[p.name] < 0.99]
        for path in files:
            if path.name in rewarmed:  # evicted since the warm-up (memory pressure): read it again
                self.warm(path)
                residency[path.name] = page_cache_fraction(path)
        job = {**job, "threads": self.threads}
        log(f"{label} ...")
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
                capture_output=True, text=True, cwd=ROOT, timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            proc = None
        lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)] if proc else []
        if lines:
            result = json.loads(lines[-1][len(RESULT_MARK):])
        elif proc is None:
            result = {"error": f"no result within --timeout {self.timeout:.0f} s"}
        else:  # e.g. killed for memory (-9): the tail of its stderr says what happened
            result = {"error": f"worker exited with {proc.returncode}: {proc.stderr.strip()[-1500:]}"}
        result.update(label=label, page_cache_before=residency, rewarmed=rewarmed,
                      process_wall_s=time.perf_counter() - start)
        if "error" in result:
            log(f"  FAILED: {result['error'][:500]}")
        elif "seconds" in result:
            log(f"  {result['seconds']:.2f} s, peak +{result['memory']['peak_added'] / GB:.2f} GB")
        return result


def measure(args: argparse.Namespace, paths: list[Path], config: Path, tokenizer_cache: Path, work: Path) -> dict[str, Any]:
    """Every measurement, in fresh subprocesses; returns the raw results."""
    from modules.checkpoints.hashing import HashCache, sha256_of_file
    from modules.checkpoints.registry import ModelRegistry

    runner = Runner(args.threads, args.timeout)
    a, b = paths
    stems = [p.stem for p in paths]
    base = {"tokenizer_cache": str(tokenizer_cache)}
    easel = {**base, "mode": "easel", "models_dir": str(a.parent), "names": stems[:1]}
    method = args.diffusers
    out: dict[str, Any] = {"warm_up": {p.name: runner.warm(p) for p in paths}, "pipeline_error": None}
    start = time.perf_counter()
    sha256_of_file(a)  # for scale: what a first load's hash costs on its own
    out["sha256_alone_s"] = time.perf_counter() - start
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "diffusers_fp32", "easel_fp32_hash_first", "easel_fp32_hash_cached", "diffusers_fp16", "easel_fp16")}

    def diffusers(dtype: str) -> None:
        nonlocal method
        job = {**base, "mode": "diffusers", "dtype": dtype, "path": str(a), "config": str(config)}
        result = runner.run(f"diffusers {dtype} ({method})", {**job, "method": method}, [a])
        if "error" in result and method == "pipeline":
            out["pipeline_error"] = result["error"]
            method = "components"
            result = runner.run(f"diffusers {dtype} (components)", {**job, "method": method}, [a])
        result["method"] = method
        runs[f"diffusers_{dtype}"].append(result)

    for repeat in range(args.repeats):
        hash_file = work / f"hash-cache-{repeat}.json"  # a new, empty hash cache per repeat

        def easel_fp32() -> None:
            job = {**easel, "dtype": "fp32", "hash_cache": str(hash_file)}
            runs["easel_fp32_hash_first"].append(runner.run("Easel fp32, sha256 not cached", job, [a]))
            runs["easel_fp32_hash_cached"].append(runner.run("Easel fp32, sha256 cached", job, [a]))

        def easel_fp16() -> None:
            job = {**easel, "dtype": "fp16", "hash_cache": str(hash_file)}
            runs["easel_fp16"].append(runner.run("Easel fp16, sha256 cached", job, [a]))

        blocks = [lambda: diffusers("fp32"), easel_fp32, lambda: diffusers("fp16"), easel_fp16]
        if repeat % 2:  # alternate who goes first
            blocks = [blocks[1], blocks[0], blocks[3], blocks[2]]
        for block in blocks:
            block()

    switch_hashes = work / "hash-cache-switch.json"
    registry = ModelRegistry([a.parent], [], HashCache(switch_hashes))
    for stem in stems:  # hash both beforehand: the switch run measures loading, not hashing
        registry.sha256(registry.find_checkpoint(stem))
    job = {**easel, "mode": "easel-switch", "dtype": "fp32", "names": stems, "switches": args.switches,
           "hash_cache": str(switch_hashes)}
    out["switch"] = runner.run(f"Easel: load A, load B, {args.switches} switches from the RAM cache", job, [a, b])
    out["runs"] = runs
    return out


# 4. report --------------------------------------------------------------------------------------


def _ok(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if "error" not in r]


def _median(results: list[dict[str, Any]], get) -> float | None:
    values = [get(r) for r in _ok(results)]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _max(results: list[dict[str, Any]], get) -> float | None:
    values = [get(r) for r in _ok(results)]
    return max(values) if values else None


def _s(value: float | None, digits: int = 2) -> str:
    return "error" if value is None else f"{value:.{digits}f} s"


def _ratio(top: float | None, bottom: float | None) -> str:
    return "—" if not top or not bottom else f"{top / bottom:.2f}×"


def _faster(diffusers: float | None, easel: float | None) -> str:
    if not diffusers or not easel:
        return "—"
    return "no goal; Easel faster" if easel < diffusers else "no goal; diffusers faster"


def _yes(value: object) -> str:
    return "yes" if value else "NO"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


_TIMING_LABELS = {
    "read": "read (file → {dtype} tensors)",
    "hash": "sha256 of the file",
    "hash_wait": "wait for the sha256 thread after the read",
}


def _median_timings(results: list[dict[str, Any]]) -> dict[str, float]:
    """Median of each of Easel's `LoadedModel.timings` keys (whatever keys this version reports)."""
    keys = [k for r in _ok(results) for k in r["timings"] if k != "total"]
    return {k: _median(results, lambda r: r["timings"].get(k)) for k in dict.fromkeys(keys)}


def _timing_rows(results: list[dict[str, Any]], dtype: str, sha256_alone: float | None = None) -> list[list[str]]:
    rows = [[f"  Easel: {_TIMING_LABELS.get(k, k).format(dtype=dtype)}", "—", _s(v, 3), "", ""]
            for k, v in _median_timings(results).items()]
    if not any("hash" in row[0] for row in rows) and sha256_alone is None:
        rows.append(["  Easel: sha256", "—", "cached (not recomputed)", "", ""])
    if sha256_alone is not None:
        rows.append(["  sha256 of the file alone, one thread (for scale)", "— (diffusers does not hash)", _s(sha256_alone), "", ""])
    return rows


def _first_pass_row(d_runs: list[dict[str, Any]], e_runs: list[dict[str, Any]], dtype: str) -> list[str]:
    total = lambda r: r["seconds"] + r["first_pass_s"]  # noqa: E731
    cells = []
    for runs in (d_runs, e_runs):
        value, first = _median(runs, total), _median(runs, lambda r: r["first_pass_s"])
        cells.append("error" if value is None else f"{_s(value)} (pass {_s(first)})")
    return [f"  … load + one pass over every weight ({dtype}, as a first use would)", *cells,
            _ratio(_median(d_runs, total), _median(e_runs, total)), ""]


def _after_pass_row(d_runs: list[dict[str, Any]], e_runs: list[dict[str, Any]], dtype: str) -> list[str]:
    cells = []
    for runs in (d_runs, e_runs):
        added, anon = _max(runs, lambda r: r["rss_added_after_pass"]), _max(runs, lambda r: r["anon_added_after_pass"])
        cells.append("error" if added is None else f"{added / GB:.2f} GB, {anon / GB:.2f} GB of it anonymous")
    return [f"RSS added after that pass ({dtype})", *cells, "", "the rest is file pages mapped from the page cache"]


def _peak_cell(results: list[dict[str, Any]], file_bytes: int) -> tuple[str, float | None, float | None]:
    peak = _max(results, lambda r: r["memory"]["peak_added"])
    model = _median(results, lambda r: r["model_bytes"])
    if peak is None or model is None:
        return "error", None, None
    return f"{peak / GB:.2f} GB = {peak / file_bytes:.2f}× file, {peak / model:.2f}× model", peak, model


def report(raw: dict[str, Any], sizes: dict[str, int], machine: dict[str, Any], args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The markdown table (with notes) and the summary numbers that go into the JSON."""
    runs, switch = raw["runs"], raw["switch"]
    file_bytes = sizes["file_tensor_bytes"]
    seconds = lambda r: r["seconds"]  # noqa: E731
    d32, d16 = _median(runs["diffusers_fp32"], seconds), _median(runs["diffusers_fp16"], seconds)
    e32_first = _median(runs["easel_fp32_hash_first"], seconds)
    e32 = _median(runs["easel_fp32_hash_cached"], seconds)
    e16 = _median(runs["easel_fp16"], seconds)
    switch_times = [s["seconds"] for s in switch.get("switches", [])]
    sw_median = statistics.median(switch_times) if switch_times else None
    sw_max = max(switch_times) if switch_times else None

    d32_cell, d32_peak, d32_model = _peak_cell(runs["diffusers_fp32"], file_bytes)
    e32_cell, e32_peak, e32_model = _peak_cell(runs["easel_fp32_hash_first"] + runs["easel_fp32_hash_cached"], file_bytes)
    d16_cell, _, _ = _peak_cell(runs["diffusers_fp16"], file_bytes)
    e16_cell, e16_peak, e16_model = _peak_cell(runs["easel_fp16"], file_bytes)
    fingerprints = {k: {json.dumps(r["fingerprint"], sort_keys=True) for r in _ok(v)} for k, v in runs.items()}
    same32 = len(fingerprints["diffusers_fp32"] | fingerprints["easel_fp32_hash_first"] | fingerprints["easel_fp32_hash_cached"]) == 1
    same16 = len(fingerprints["diffusers_fp16"] | fingerprints["easel_fp16"]) == 1
    same_cell = f"fp32 {_yes(same32)}, fp16 {_yes(same16)}"
    all_runs = [r for v in runs.values() for r in v] + [switch]
    diff_cache = min((min(r["page_cache_before"].values()) for r in all_runs if r["label"].startswith("diffusers")), default=0)
    easel_cache = min((min(r["page_cache_before"].values()) for r in all_runs if not r["label"].startswith("diffusers")), default=0)
    rewarmed = sum(bool(r["rewarmed"]) for r in all_runs)
    switch_peak = switch.get("switch_memory", {}).get("peak_added")
    holding = switch.get("rss_holding_both")
    loads = switch.get("loads", [])
    switch_ok = sw_max is not None and sw_max < SWITCH_GOAL_S and all(s["from_ram_cache"] for s in switch.get("switches", []))
    peak32_ok = e32_peak is not None and e32_peak < PEAK_GOAL * e32_model
    peak16_ok = e16_peak is not None and e16_peak < PEAK_GOAL * e16_model
    switch_goal = f"< {SWITCH_GOAL_S} s: " + _verdict(switch_ok)

    rows = [
        ["Cold load fp32, sha256 not cached yet: total", _s(d32), _s(e32_first), _ratio(d32, e32_first), _faster(d32, e32_first)],
        *_timing_rows(runs["easel_fp32_hash_first"], "fp32", raw.get("sha256_alone_s")),
        ["Cold load fp32, sha256 cached: total", _s(d32), _s(e32), _ratio(d32, e32), _faster(d32, e32)],
        *_timing_rows(runs["easel_fp32_hash_cached"], "fp32"),
        _first_pass_row(runs["diffusers_fp32"], runs["easel_fp32_hash_cached"], "fp32"),
        ["Cold load fp16 (file dtype = model dtype): total", _s(d16), _s(e16), _ratio(d16, e16), _faster(d16, e16)],
        *_timing_rows(runs["easel_fp16"], "fp16"),
        _first_pass_row(runs["diffusers_fp16"], runs["easel_fp16"], "fp16"),
        [f"Switch A↔B from Easel's RAM cache: median of {len(switch_times)}", f"{_s(d32)} (reload; no RAM cache)",
         _s(sw_median, 3), _ratio(d32, sw_median), switch_goal],
        [f"Switch A↔B from Easel's RAM cache: max of {len(switch_times)}", "—", _s(sw_max, 3), "", switch_goal],
        ["Peak RSS added by a fp32 load", d32_cell, e32_cell,
         f"Easel ÷ file {_ratio(e32_peak, file_bytes)}, ÷ model {_ratio(e32_peak, e32_model)}",
         f"< {PEAK_GOAL}× loaded tensors: " + _verdict(peak32_ok)],
        _after_pass_row(runs["diffusers_fp32"], runs["easel_fp32_hash_cached"], "fp32"),
        ["Peak RSS added by a fp16 load", d16_cell, e16_cell, f"Easel ÷ file {_ratio(e16_peak, file_bytes)}",
         f"< {PEAK_GOAL}× loaded tensors: " + _verdict(peak16_ok)],
        _after_pass_row(runs["diffusers_fp16"], runs["easel_fp16"], "fp16"),
        [f"Peak RSS added during the {len(switch_times)} switches", "—",
         "error" if switch_peak is None else f"{switch_peak / GB:.3f} GB", "",
         "≈ 0 (no copies): " + _verdict(switch_peak is not None and switch_peak < 0.05 * file_bytes)],
        ["RSS added holding A and B (fp32) in the RAM cache", "—",
         "error" if holding is None else f"{(holding - switch['rss_at_start']) / GB:.2f} GB",
         "" if not loads else f"÷ 2 models {_ratio(holding - switch['rss_at_start'], sum(l['model_bytes'] for l in loads))}", ""],
        ["Same weights as the other contender (5-tensor checksums)", same_cell, same_cell,
         "", f"switches keep modules: {_yes(switch.get('modules_reused'))}, "
         f"weights right: {_yes(switch.get('weights_after_switches_correct'))}"],
        ["File in page cache before each run (min)", f"{diff_cache:.0%}", f"{easel_cache:.0%}", "", f"re-read before {rewarmed} run(s)"],
    ]
    header = ["Measurement", "diffusers", "Easel", "Ratio (times: diffusers ÷ Easel)", "Goal / verdict"]
    method = (runs["diffusers_fp32"] or [{}])[-1].get("method", args.diffusers)
    kind = 'tiny SD1 "medium" test size' if args.quick else "SD1.5-shaped"
    config_name = "<generated config folder for the tiny model>" if args.quick else "<shipped sd1 folder>"
    notes = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gb']} GB RAM; Python {machine['python']}, "
        f"torch {machine['torch']} ({args.threads} threads), diffusers {machine['diffusers']}, transformers {machine['transformers']}.",
        f"Easel code measured: {describe_code(machine['code'])}.",
        f"Checkpoints: {kind}, random fp16 weights, A1111 single-file "
        f".safetensors: {sizes['file_size'] / GB:.3f} GB on disk, {file_bytes / GB:.3f} GB of tensors; loaded fp32 model "
        f"{(e32_model or 0) / GB:.3f} GB of tensors.",
        "diffusers: " + (f"`StableDiffusionPipeline.from_single_file(config={config_name}, local_files_only=True)`"
                         if method == "pipeline" else "per component (`UNet2DConditionModel`/`AutoencoderKL.from_single_file`, "
                         "`create_diffusers_clip_model_from_ldm`)") + "; tokenizer from `load_clip_tokenizer` (timed, as in Easel).",
        f"Each load ran in a fresh process after the file was read once (page cache warm); times are medians of {args.repeats} "
        "run(s) per contender, peaks the maxima. Peak RSS = kernel VmHWM (reset before the load) minus RSS before it.",
        "Memory goal: peak < 1.3× the loaded model's tensor bytes. Easel ÷ file bytes cannot meet it for fp32 from an fp16 "
        "file (the model is 2× the file); the fp16 row shows the ratio where file dtype = model dtype.",
    ]
    if args.quick:
        notes.append("--quick: tiny models, where fixed costs dominate; the memory verdicts mean something only at full size.")
    if raw.get("pipeline_error"):
        notes.append(f"`StableDiffusionPipeline.from_single_file` failed offline: {raw['pipeline_error']}")
    anon = _max(runs["diffusers_fp32"], lambda r: r["memory"]["sampled_peak_anon_added"])
    if anon is not None:
        notes.append(f"diffusers' fp32 peak without file-backed pages (its mmap of the checkpoint): {anon / GB:.2f} GB (10 ms sampler).")
    if raw.get("code_changed_during_run"):
        notes.append(f"WARNING: the code changed during the run; at the end: {describe_code(raw['code_changed_during_run'])}.")
    errors = [f"{r['label']}: {r['error']}" for r in all_runs if "error" in r]
    notes += [f"ERROR {e}" for e in errors]
    summary = {
        "diffusers_fp32_s": d32, "easel_fp32_hash_first_s": e32_first, "easel_fp32_hash_cached_s": e32,
        "easel_timings_fp32_hash_first": _median_timings(runs["easel_fp32_hash_first"]),
        "easel_timings_fp32_hash_cached": _median_timings(runs["easel_fp32_hash_cached"]),
        "easel_timings_fp16": _median_timings(runs["easel_fp16"]), "sha256_alone_s": raw.get("sha256_alone_s"),
        "diffusers_fp16_s": d16, "easel_fp16_s": e16,
        "switch_median_s": sw_median, "switch_max_s": sw_max, "switch_goal_met": switch_ok,
        "diffusers_fp32_peak_added": d32_peak, "easel_fp32_peak_added": e32_peak, "easel_fp16_peak_added": e16_peak,
        "easel_fp32_peak_per_file_byte": e32_peak / file_bytes if e32_peak else None,
        "easel_fp32_peak_per_model_byte": e32_peak / e32_model if e32_peak and e32_model else None,
        "easel_fp16_peak_per_file_byte": e16_peak / file_bytes if e16_peak else None,
        "peak_goal_met_fp32": peak32_ok, "peak_goal_met_fp16": peak16_ok, "same_weights_fp32": same32, "same_weights_fp16": same16,
        "diffusers_method": method,
    }
    return markdown_table(header, rows) + "\n\n" + "\n".join(f"- {n}" for n in notes), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny SD1 'medium' test models: a smoke run in under a minute")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache", help="where the generated checkpoints are kept")
    parser.add_argument("--json", type=Path, help="result file (default bench/results/model_switch[.quick].json)")
    parser.add_argument("--repeats", type=int, help="fresh-process runs per cold-load measurement (default 3; 1 with --quick)")
    parser.add_argument("--switches", type=int, default=10, help="A<->B switches from the RAM cache")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads in each run")
    parser.add_argument("--diffusers", choices=("pipeline", "components"), default="pipeline", help="how plain diffusers loads")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run is abandoned")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    args.repeats = args.repeats or (1 if args.quick else 3)

    cache = args.cache_dir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / ".gitignore").exists():  # gigabytes of generated weights never belong in git
        (cache / ".gitignore").write_text("*\n")
    folder = cache / ("sd1-medium" if args.quick else "sd15")
    paths = ensure_models(folder, args.quick)
    config = folder / "diffusers-config" if args.quick else SHIPPED_SD1_CONFIG
    tokenizer_cache = cache / "tokenizers"
    from modules.checkpoints.tokenizer import SD1_PAD_TOKEN, ensure_tokenizer_files

    ensure_tokenizer_files(tokenizer_cache, SD1_PAD_TOKEN)  # built once here, so no run pays for writing it
    sizes = {"file_size": paths[0].stat().st_size, "file_tensor_bytes": safetensors_tensor_bytes(paths[0])}
    machine = {**machine_info(), "torch_threads": args.threads, "code": git_state()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hashes-", dir=cache) as work:
        raw = measure(args, paths, config, tokenizer_cache, Path(work))
    code_after = git_state()
    if code_after != machine["code"]:  # someone edited the code under test while it was measured
        raw["code_changed_during_run"] = code_after
    table, summary = report(raw, sizes, machine, args)
    print(table)
    out = args.json or RESULTS / ("model_switch.quick.json" if args.quick else "model_switch.json")
    write_json(out, {
        "benchmark": "model_switch", "quick": args.quick, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine, "files": [str(p) for p in paths], "sizes": sizes, "config_folder": str(config),
        "args": {k: str(v) for k, v in vars(args).items() if k != "worker"}, "summary": summary, "raw": raw,
        "table": table, "wall_s": time.perf_counter() - started,
    })
    print(f"\nJSON: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
