"""Choosing the device and dtype: CUDA (fp16, or bf16 where asked) when present, else the CPU (bf16 on
AMX CPUs, float32 on the others: modules/performance.py decides)."""

from __future__ import annotations

from typing import Callable

import torch

from modules.errors import UserError
from modules.performance import auto_cpu_dtype, cpu_bf16_support

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
