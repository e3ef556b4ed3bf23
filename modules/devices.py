"""Choosing the device and dtype: CUDA (fp16, or bf16 where asked) when present, else CPU float32."""

from __future__ import annotations

import torch

from modules.errors import UserError

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


def choose_dtype(device: torch.device, preference: str = "auto") -> torch.dtype:
    """"auto": fp16 on CUDA and MPS, float32 on CPU; or "fp32", "fp16", "bf16"."""
    if preference == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if preference not in DTYPES:
        raise UserError(f"Unknown dtype '{preference}': use auto, fp32, fp16 or bf16.")
    return DTYPES[preference]
