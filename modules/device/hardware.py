"""The machine: the CPU's features and cores, and the device and dtype Easel runs on.

CUDA (fp16, or bf16 where asked) when present, else the CPU: bf16 on CPUs with AMX tiles (about 2.5x
float32 on a UNet: bench/bf16_cpu.py), float32 on the others. `EASEL_CPU_FLAGS` makes Easel choose
as on another CPU; `--dtype` overrides the dtype alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from modules.errors import UserError

CPU_FLAGS_ENV = "EASEL_CPU_FLAGS"


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (or of the text given), empty where unknown.

    `EASEL_CPU_FLAGS` (space-separated flags; empty for none), when set, replaces the host's flags:
    it makes Easel choose as on another CPU, e.g. `EASEL_CPU_FLAGS=avx2` runs the float32 path on an
    AMX machine (the test suite is run that way too). `--dtype` overrides only the dtype."""
    if cpuinfo is None:
        override = os.environ.get(CPU_FLAGS_ENV)
        if override is not None:
            return set(override.split())
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_support(flags: set[str] | None = None, capability: str | None = None) -> str:
    """How this CPU runs bf16 matrix products: "amx" (AMX tiles: the fast case, ~2.5x fp32 on a
    UNet), "avx512_bf16" (dot-product instructions only: about fp32 speed), or "none" (bf16 is
    emulated: slower than fp32). `capability` is torch.backends.cpu.get_cpu_capability()."""
    flags = cpu_flags() if flags is None else flags
    if capability is None:
        capability = torch.backends.cpu.get_cpu_capability()
    if "amx_bf16" in flags and "amx_tile" in flags and "AVX512" in capability.upper():
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return "none"


def auto_cpu_dtype(flags: set[str] | None = None, capability: str | None = None) -> torch.dtype:
    """bf16 on AMX CPUs, float32 on every other CPU (where bf16 measured slower: bench/bf16_cpu.py)."""
    return torch.bfloat16 if cpu_bf16_support(flags, capability) == "amx" else torch.float32


def physical_cores(cpuinfo: str | None = None, allowed: int | None = None) -> int:
    """Physical cores this process may use: distinct (physical id, core id) pairs of /proc/cpuinfo,
    at most the CPUs in the affinity mask (`allowed`)."""
    if allowed is None:
        allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    cores: set[tuple[str, str]] = set()
    package = core = None
    for line in cpuinfo.splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not line.strip():
            if core is not None:
                cores.add((package or "0", core))
            package = core = None
    found = len(cores) or allowed
    return max(1, min(found, allowed))


def choose_threads(override: int | None = None, cpuinfo: str | None = None, allowed: int | None = None) -> int:
    """Intra-op threads: `override` (--threads) when given, else one per physical core (hyper-threads
    slow the UNet's matrix products down)."""
    if override is not None and override > 0:
        return override
    return physical_cores(cpuinfo, allowed)


DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def choose_device(preference: str = "auto") -> torch.device:
    """"auto" picks CUDA, then Apple MPS, then CPU; "cpu", "cuda", "cuda:1", "mps" force one."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError as error:
        raise UserError(f"Unknown device '{preference}': use auto, cpu, cuda, cuda:N or mps.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was given but this PyTorch build sees no CUDA GPU.")
    return device


def choose_dtype(device: torch.device, preference: str = "auto", cpu_dtype: Callable[[], torch.dtype] = auto_cpu_dtype) -> torch.dtype:
    """"auto": fp16 on CUDA and MPS; on a CPU bf16 where it has AMX (measured faster), else float32
    (`cpu_dtype` decides; tests pass their own); or "fp32", "fp16", "bf16"."""
    if preference == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else cpu_dtype()
    if preference not in DTYPES:
        raise UserError(f"Unknown dtype '{preference}': use auto, fp32, fp16 or bf16.")
    return DTYPES[preference]


def explain_dtype(device: torch.device, preference: str, dtype: torch.dtype, bf16_support: Callable[[], str] = cpu_bf16_support) -> str:
    """Why `dtype` was chosen, for the start-up log: the rule "auto" applied, or that it was asked."""
    name = str(dtype).removeprefix("torch.")
    if preference != "auto":
        return f"{name} (asked: --dtype or the 'dtype' setting)"
    if device.type != "cpu":
        return f"{name} (auto on {device.type})"
    support = bf16_support()
    why = {"amx": "this CPU has AMX bf16 tiles, ~2.5x faster than float32",
           "avx512_bf16": "this CPU has bf16 dot products but no AMX, no faster than float32",
           "none": "this CPU has no bf16 instructions"}[support]
    return f"{name} (auto: {why}; --dtype fp32 or bf16 to choose)"
