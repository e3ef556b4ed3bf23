"""Helpers shared by the benchmarks in bench/: machine facts, peak memory, page cache, tables, JSON.

Benchmarks are scripts, not tests: they print a markdown table and write JSON under bench/results/
(git-ignored). Nothing here runs at import.
"""

from __future__ import annotations

import ctypes
import gc
import json
import mmap
import os
import platform
import struct
import threading
import time
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GB = 1e9


# machine ----------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare runs: CPU, cores, RAM, library versions (read without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    try:
        import psutil

        ram = psutil.virtual_memory().total
    except ImportError:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": round(ram / GB, 1),
        "python": platform.python_version(),
        "torch": installed("torch"),
        "diffusers": installed("diffusers"),
        "transformers": installed("transformers"),
    }


def git_state(paths: tuple[str, ...] = ("modules", "tools", "webui.py")) -> dict[str, Any]:
    """The commit measured and any uncommitted changes to the code under test."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    import hashlib

    changed = [line[3:] for line in git("status", "--porcelain", "--", *paths).splitlines()]
    diff = hashlib.sha1(git("diff", "HEAD", "--", *paths).encode()).hexdigest()[:12] if changed else None
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown", "uncommitted": changed, "diff_sha1": diff}


def describe_code(state: dict[str, Any]) -> str:
    changed = state["uncommitted"]
    return f"commit {state['commit']}" + (f" plus uncommitted changes in {', '.join(changed)}" if changed else ", clean tree")


# memory ------------------------------------------------------------------------------------------


def _statm() -> tuple[int, int]:
    """(resident, resident anonymous) bytes of this process, from /proc/self/statm."""
    page = os.sysconf("SC_PAGE_SIZE")
    fields = Path("/proc/self/statm").read_text().split()
    resident, shared = int(fields[1]) * page, int(fields[2]) * page
    return resident, resident - shared


def _status_kb(field: str) -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def _reset_hwm() -> bool:
    """Resets the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak RSS while a block runs, minus the RSS before it.

    The exact peak comes from the kernel: VmHWM after resetting it through /proc/self/clear_refs. A
    thread samples RSS (and its anonymous part: RSS minus file-backed pages, e.g. an mmap-ed checkpoint)
    every 10 ms beside it, as a cross-check and as the fallback where the reset is not allowed.
    """

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.before = self.before_anon = 0
        self.peak = self.sampled_peak = self.sampled_peak_anon = 0
        self.kernel_peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            resident, anon = _statm()
            self.sampled_peak = max(self.sampled_peak, resident)
            self.sampled_peak_anon = max(self.sampled_peak_anon, anon)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        self.before, self.before_anon = _statm()
        self._exact = _reset_hwm()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        resident, anon = _statm()
        self.sampled_peak = max(self.sampled_peak, resident)
        self.sampled_peak_anon = max(self.sampled_peak_anon, anon)
        self.kernel_peak = _status_kb("VmHWM") if self._exact else None
        self.peak = max(self.kernel_peak or 0, self.sampled_peak)

    def report(self) -> dict[str, Any]:
        return {
            "rss_before": self.before,
            "peak_rss": self.peak,
            "peak_added": self.peak - self.before,
            "peak_source": "VmHWM after clear_refs" if self.kernel_peak else "10 ms sampler",
            "sampled_peak_added": self.sampled_peak - self.before,
            "sampled_peak_anon_added": self.sampled_peak_anon - self.before_anon,
        }


def tensor_bytes(modules: Iterable[Any]) -> int:
    """Bytes of the distinct storages behind the parameters and buffers of torch modules."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        for t in list(module.parameters()) + list(module.buffers()):
            storage = t.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


def rss() -> int:
    gc.collect()
    return _statm()[0]


def rss_parts() -> tuple[int, int]:
    """(resident, resident anonymous) bytes of this process now."""
    return _statm()


# files -------------------------------------------------------------------------------------------


def safetensors_tensor_bytes(path: Path) -> int:
    """Bytes of tensor data in a .safetensors file (the file minus its header)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    header.pop("__metadata__", None)
    return sum(entry["data_offsets"][1] - entry["data_offsets"][0] for entry in header.values())


def page_cache_fraction(path: Path) -> float:
    """Share of a file's pages that are in the page cache now (mincore on a read-only mapping)."""
    size = os.path.getsize(path)
    if size == 0:
        return 1.0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    page = os.sysconf("SC_PAGE_SIZE")
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            raise OSError(ctypes.get_errno(), "mmap failed")
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
            resident = sum(b & 1 for b in bytes(vec))
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return resident / pages


def read_through(path: Path) -> float:
    """Reads a file once (into the page cache); returns the seconds it took."""
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        buffer = bytearray(16 * 1024 * 1024)
        while f.readinto(buffer):
            pass
    return time.perf_counter() - start


# output ------------------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path




# the side-by-side benchmarks (engine, img2img, X/Y/Z plot) ---------------------------------------

SD15_SHAPED = Path("sd15") / "models" / "bench-sd15-a.safetensors"  # written by bench/model_switch.py


def side_by_side_arguments(description: str, repeats: int) -> Any:
    """The command line the side-by-side benchmarks share: --quick, --repeats, --steps, --cache-dir."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model only")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "bench" / ".cache")
    parser.add_argument("--full-repeats", type=int, default=None,
                        help="timed runs on the SD1.5-shaped model (default: half of --repeats; bench/run_all.py sets it)")
    return parser.parse_args()


def model_cases(args: Any, work: Path, full_repeats_floor: int = 2) -> list[tuple[str, Path, int, int, int]]:
    """(label, checkpoint, size, steps, repeats): a small test model at 64x64 (written on first use),
    and unless --quick the SD1.5-shaped random checkpoint at 256x256 (exits when it is missing)."""
    from tools.make_test_models import write_test_checkpoint

    tiny = work / "models" / "tiny-sd1.safetensors"
    if not tiny.exists():
        write_test_checkpoint(tiny, "sd1", "small", seed=0)
    cases = [("tiny SD1 (small test size)", tiny, 64, args.steps, args.repeats)]
    full = args.cache_dir / SD15_SHAPED
    if not args.quick:
        if not full.exists():
            raise SystemExit("Run bench/model_switch.py once first: it writes the SD1.5-shaped checkpoint this uses.")
        repeats = getattr(args, "full_repeats", None) or max(full_repeats_floor, args.repeats // 2)
        cases.append(("SD1.5-shaped random weights", full, 256, min(args.steps, 10), repeats))
    return cases


def alternate(contenders: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    """Runs each contender once to warm up, then `repeats` rounds of all of them in turn (so drift
    on a shared machine hits them alike); the seconds of every timed run by name."""
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def seeded_like_real(model: Any) -> Any:
    """`model` with seeded N(0, 0.02) weights (norm weights around 1): the compute of real weights,
    for benchmarks at real size without real files. Eval mode, no gradients."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
            if param.dim() == 1 and "norm" in name and name.endswith("weight"):
                param.add_(1.0)
    return model.eval().requires_grad_(False)
